{{ config(**incremental_by_day('usage_date', on_schema_change='sync_all_columns')) }}

{%- set idle_pct = var('idle_gpu_utilisation_pct') %}

with

samples as (

    select * from {{ ref('int_workload_metric_samples') }}
    where {{ usage_window_predicate('usage_date') }}

),

-- Whether the workload holds its CPU and memory at the sample: while at least one of its
-- pods runs (RUNNING_POD_COUNT > 0). A pending workload holds nothing. Where the control
-- plane sends no pod count the sample counts as held, as it did before pod counts were
-- read; the var charge_pending_requests charges every sample (a contract that bills
-- reservations, pending or not).
held as (

    select
        *,
        {%- if var('charge_pending_requests') %}
        true as holds_resources,
        {%- else %}
        coalesce(running_pod_count > 0, true) as holds_resources,
        {%- endif %}
        coalesce(pod_count > 0, true) and running_pod_count = 0 as is_pending
    from samples

),

-- Each sample stands for [sampled_at, sampled_at + step): value * step is its contribution
-- in unit-seconds (GPU-seconds, core-seconds, GiB-seconds).
sample_seconds as (

    select
        usage_date,
        workload_id,
        gpu_allocation,
        gpu_utilisation_pct,
        gpu_allocation * gpu_allocation_step_seconds as allocated_gpu_seconds,
        gpu_allocation * gpu_utilisation_pct / 100.0 * gpu_allocation_step_seconds
            as used_gpu_seconds,
        case
            when gpu_utilisation_pct < {{ idle_pct }}
                then gpu_allocation * gpu_allocation_step_seconds
            else 0
        end as idle_gpu_seconds,
        case
            when gpu_utilisation_pct is not null
                then gpu_allocation * gpu_allocation_step_seconds
        end as allocated_gpu_seconds_with_utilisation,
        case
            when holds_resources then cpu_request_cores * cpu_request_cores_step_seconds
            else 0
        end as requested_cpu_core_seconds,
        cpu_usage_cores * cpu_usage_cores_step_seconds as used_cpu_core_seconds,
        case
            when holds_resources
                then cpu_memory_request_bytes / 1073741824.0
                    * cpu_memory_request_bytes_step_seconds
            else 0
        end as requested_memory_gib_seconds,
        cpu_memory_usage_bytes / 1073741824.0 * cpu_memory_usage_bytes_step_seconds
            as used_memory_gib_seconds,
        case
            when holds_resources
                then coalesce(running_pod_count_step_seconds, gpu_allocation_step_seconds)
        end as held_seconds,
        case when is_pending then running_pod_count_step_seconds end as pending_seconds,
        gpu_memory_usage_bytes,
        gpu_memory_request_bytes
    from held

),

-- Unit-seconds are summed exactly (DECIMAL(38, 9), see the exact_sum macro) and converted
-- to unit-hours once, so the same samples always give bit-identical hours whatever the
-- order DuckDB's threads add them in.
aggregated as (

    select
        usage_date,
        workload_id,
        count(gpu_allocation) as gpu_allocation_samples,
        count(*) filter (where gpu_allocation > 0) as allocated_samples,
        count(*) filter (
            where gpu_allocation > 0 and gpu_utilisation_pct is not null
        ) as allocated_samples_with_utilisation,
        {%- for seconds, hours in [
            ('allocated_gpu_seconds', 'allocated_gpu_hours'),
            ('used_gpu_seconds', 'used_gpu_hours'),
            ('idle_gpu_seconds', 'idle_gpu_hours'),
            ('allocated_gpu_seconds_with_utilisation', 'allocated_gpu_hours_with_utilisation'),
            ('requested_cpu_core_seconds', 'requested_cpu_core_hours'),
            ('used_cpu_core_seconds', 'used_cpu_core_hours'),
            ('requested_memory_gib_seconds', 'requested_memory_gib_hours'),
            ('used_memory_gib_seconds', 'used_memory_gib_hours'),
            ('held_seconds', 'held_hours'),
            ('pending_seconds', 'pending_hours'),
        ] %}
        coalesce({{ exact_sum(seconds) }}, 0) / 3600.0 as {{ hours }},
        {%- endfor %}
        max(gpu_memory_usage_bytes) as peak_gpu_memory_usage_bytes,
        max(gpu_memory_request_bytes) as gpu_memory_request_bytes
    from sample_seconds
    group by usage_date, workload_id

),

final as (

    select
        *,
        case
            when allocated_gpu_hours > 0
                then allocated_gpu_hours_with_utilisation / allocated_gpu_hours
        end as utilisation_sample_coverage
    from aggregated

)

select * from final
