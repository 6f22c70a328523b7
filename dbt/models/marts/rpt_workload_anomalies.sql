{{ config(**incremental_by_day('usage_date')) }}

{#- One row per workload-day and flag. The thresholds are dbt vars (anomaly_*); every row
    carries its evidence (the measured value, the threshold and the unit) and the cost at
    stake: what the day cost that the flagged waste accounts for. -#}

with

usage as (

    select * from {{ ref('fct_workload_usage_daily') }}
    where {{ usage_window_predicate('usage_date') }}

),

flags as (

    -- GPUs held without being used for hours: the idle GPU-hours and their cost.
    select
        *,
        'idle_gpus' as flag,
        idle_gpu_hours as evidence_value,
        cast({{ var('anomaly_idle_gpu_hours') }} as double) as threshold,
        'GPU-hours idle' as evidence_unit,
        idle_gpu_cost as cost_at_stake
    from usage
    where idle_gpu_hours >= {{ var('anomaly_idle_gpu_hours') }}

    union all

    -- A long run at low utilisation: the GPU cost not matched by use.
    select
        *,
        'long_low_utilisation',
        gpu_utilisation_pct,
        cast({{ var('anomaly_low_utilisation_pct') }} as double),
        'GPU utilisation %',
        gpu_cost * (1 - gpu_utilisation_pct / 100)
    from usage
    where allocated_gpu_hours >= {{ var('anomaly_low_utilisation_min_gpu_hours') }}
      and gpu_utilisation_pct < {{ var('anomaly_low_utilisation_pct') }}

    union all

    -- GPU memory requested far above the day's peak use: the share of the GPU cost paid
    -- for memory never touched.
    select
        *,
        'gpu_memory_over_requested',
        gpu_memory_request_bytes / peak_gpu_memory_usage_bytes,
        cast({{ var('anomaly_gpu_memory_ratio') }} as double),
        'GPU memory requested / peak used',
        gpu_cost * (1 - peak_gpu_memory_usage_bytes / gpu_memory_request_bytes)
    from usage
    where allocated_gpu_hours > 0
      and peak_gpu_memory_usage_bytes > 0
      and gpu_memory_request_bytes
        >= {{ var('anomaly_gpu_memory_ratio') }} * peak_gpu_memory_usage_bytes

    union all

    -- CPU requested far above use: the CPU cost of the cores never used.
    select
        *,
        'cpu_over_requested',
        requested_cpu_core_hours / nullif(used_cpu_core_hours, 0),
        cast({{ var('anomaly_cpu_ratio') }} as double),
        'CPU core-hours requested / used',
        cpu_cost * (1 - coalesce(used_cpu_core_hours, 0) / requested_cpu_core_hours)
    from usage
    where requested_cpu_core_hours >= {{ var('anomaly_cpu_min_core_hours') }}
      and coalesce(used_cpu_core_hours, 0) * {{ var('anomaly_cpu_ratio') }}
        <= requested_cpu_core_hours

    union all

    -- Pending for hours: nothing is charged while pending, so no cost is at stake; the
    -- evidence is the waiting time.
    select
        *,
        'long_pending',
        pending_hours,
        cast({{ var('anomaly_pending_hours') }} as double),
        'hours pending',
        0.0
    from usage
    where pending_hours >= {{ var('anomaly_pending_hours') }}

),

final as (

    select
        usage_date,
        workload_id,
        flag,
        evidence_value,
        threshold,
        evidence_unit,
        cost_at_stake,
        currency,
        cluster_id,
        department_id,
        department_name,
        project_id,
        project_name,
        nodepool,
        submitted_by,
        workload_type,
        allocated_gpu_hours,
        gpu_utilisation_pct,
        total_cost
    from flags

)

select * from final
