{{ config(**incremental_by_day('usage_date')) }}

{#- Incremental: a run replaces the hours of its window's days. Its hours run, as on a full
    build, from the first to the last sampled hour of the whole report (those of the days
    kept from earlier runs included), and its pools are the capacity seed's, the pools of
    earlier runs and those of the window. -#}

with

samples as (

    select * from {{ ref('int_workload_metric_samples') }}
    where {{ usage_window_predicate('usage_date') }}

),

-- The cluster and node pool each workload-day is attributed to (as of the usage date).
attribution as (

    select usage_date, workload_id, cluster_id, nodepool
    from {{ ref('fct_workload_usage_daily') }}
    where {{ usage_window_predicate('usage_date') }}

),

capacity as (

    select * from {{ ref('nodepool_capacity') }}

),

telemetry as (

    select * from {{ ref('int_telemetry_gpu_allocation') }}
    where {{ usage_window_predicate('cast(fetched_at as date)') }}

),

-- Sum of allocation * step over the hour / 3600 s = average GPUs allocated in that hour.
allocated as (

    select
        coalesce(attribution.cluster_id, 'unknown') as cluster_id,
        coalesce(attribution.nodepool, 'unknown') as nodepool,
        date_trunc('hour', samples.sampled_at) as hour_start,
        {{ exact_sum('samples.gpu_allocation * samples.gpu_allocation_step_seconds') }} / 3600.0
            as allocated_gpus,
        count(distinct samples.workload_id) filter (where samples.gpu_allocation > 0)
            as workloads_with_allocation
    from samples
    left join attribution using (usage_date, workload_id)
    where samples.gpu_allocation is not null
    group by all

),

{%- if is_incremental() %}

-- The rows of the days outside the window, kept from earlier runs (the pre-hook deleted the
-- window's).
kept as (

    select * from {{ this }}
    where not {{ usage_window_filter('usage_date') }}

),
{%- endif %}

hours as (

    {%- if is_incremental() %}
    select {{ unnest_hours(
        'least((select min(hour_start) from allocated), (select min(hour_start) from kept))',
        'greatest((select max(hour_start) from allocated), (select max(hour_start) from kept))',
    ) }} as hour_start
    {%- else %}
    select {{ unnest_hours(
        '(select min(hour_start) from allocated)', '(select max(hour_start) from allocated)'
    ) }} as hour_start
    {%- endif %}

),

window_hours as (

    select hour_start from hours
    where {{ usage_window_predicate('cast(hour_start as date)') }}

),

pools as (

    select cluster_id, nodepool from capacity
    union
    select cluster_id, nodepool from allocated
    {%- if is_incremental() %}
    union
    select distinct cluster_id, nodepool from kept
    {%- endif %}

),

-- Telemetry GPU_ALLOCATION of the (cluster, node pool), averaged over the fetches made in
-- the hour. Only fetches inside the hours of this report (between the first and the last
-- sampled hour) show up; the nightly fetch, made after the last loaded day, is compared with
-- the workload snapshot of its run in rpt_nodepool_allocation_snapshot instead.
telemetry_hourly as (

    select
        date_trunc('hour', fetched_at) as hour_start,
        cluster_id,
        nodepool,
        {{ exact_avg('telemetry_allocated_gpus') }} as telemetry_allocated_gpus,
        count(*) as telemetry_fetches
    from telemetry
    group by all

),

final as (

    select
        hours.hour_start,
        cast(hours.hour_start as date) as usage_date,
        pools.cluster_id,
        capacity.cluster_name,
        pools.nodepool,
        capacity.gpu_type,
        capacity.gpu_count as capacity_gpus,
        coalesce(allocated.allocated_gpus, 0) as allocated_gpus,
        coalesce(allocated.workloads_with_allocation, 0) as workloads_with_allocation,
        case
            when capacity.gpu_count > 0
                then coalesce(allocated.allocated_gpus, 0) / capacity.gpu_count * 100
        end as allocation_pct_of_capacity,
        telemetry_hourly.telemetry_allocated_gpus,
        telemetry_hourly.telemetry_fetches,
        telemetry_hourly.telemetry_allocated_gpus - coalesce(allocated.allocated_gpus, 0)
            as telemetry_minus_allocated_gpus
    from window_hours as hours
    cross join pools
    left join capacity
        on capacity.cluster_id = pools.cluster_id and capacity.nodepool = pools.nodepool
    left join allocated
        on allocated.cluster_id = pools.cluster_id
        and allocated.nodepool = pools.nodepool
        and allocated.hour_start = hours.hour_start
    left join telemetry_hourly
        on telemetry_hourly.cluster_id = pools.cluster_id
        and telemetry_hourly.nodepool = pools.nodepool
        and telemetry_hourly.hour_start = hours.hour_start

)

select * from final
