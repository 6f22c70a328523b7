{{ config(**incremental_by_day('usage_date')) }}

with

usage as (

    select * from {{ ref('int_workload_usage_daily') }}
    where {{ usage_window_predicate('usage_date') }}

),

-- The states of the workloads with usage in the run (of every day: a usage day without a
-- state of its own takes the nearest one).
states as (

    select * from {{ ref('int_workload_states') }}
    where workload_id in (select workload_id from usage)

),

gpu_prices as (

    select * from {{ ref('int_gpu_prices') }}

),

resource_prices as (

    select * from {{ ref('int_resource_prices') }}

),

-- One state per workload and day: the latest fetch of that day's partitions (the list and
-- the deleted list of the run that covered the day; the deleted-list row on a tie).
day_states as (

    select * from (
        select
            *,
            row_number() over (
                partition by workload_id, snapshot_date
                order by snapshot_at desc,
                    case state_source when 'deleted_list' then 0 else 1 end
            ) as day_rank
        from states
    ) as ranked
    where day_rank = 1

),

-- Usage days without a state of their own (rare: a listing that missed the workload) take
-- the nearest state in time, the earlier one on a tie.
unmatched as (

    select usage.usage_date, usage.workload_id
    from usage
    left join day_states
        on day_states.workload_id = usage.workload_id
        and day_states.snapshot_date = usage.usage_date
    where day_states.workload_id is null

),

nearest_states as (

    select * from (
        select
            unmatched.usage_date,
            day_states.*,
            row_number() over (
                partition by unmatched.workload_id, unmatched.usage_date
                order by abs({{ dbt.datediff('unmatched.usage_date', 'day_states.snapshot_date', 'day') }}),
                    day_states.snapshot_date
            ) as nearest_rank
        from unmatched
        inner join day_states on day_states.workload_id = unmatched.workload_id
    ) as ranked
    where nearest_rank = 1

),

attributed_states as (

    select
        usage.usage_date,
        usage.workload_id,
        coalesce(same_day.snapshot_date, nearest.snapshot_date) as attribution_state_date,
        coalesce(same_day.snapshot_at, nearest.snapshot_at) as attribution_state_fetched_at,
        case
            when same_day.state_source = 'deleted_list' then 'same_day_deleted_list'
            when same_day.state_source is not null then 'same_day_snapshot'
            when nearest.snapshot_date < usage.usage_date then 'nearest_earlier_state'
            when nearest.snapshot_date > usage.usage_date then 'nearest_later_state'
            else 'no_state'
        end as attribution_source,
        coalesce(same_day.cluster_id, nearest.cluster_id) as cluster_id,
        coalesce(same_day.department_id, nearest.department_id) as department_id,
        coalesce(same_day.department_name, nearest.department_name) as department_name,
        coalesce(same_day.project_id, nearest.project_id) as project_id,
        coalesce(same_day.project_name, nearest.project_name) as project_name,
        coalesce(same_day.submitted_by, nearest.submitted_by) as submitted_by,
        coalesce(same_day.workload_type, nearest.workload_type) as workload_type,
        coalesce(same_day.category, nearest.category) as category,
        coalesce(same_day.current_node_pool, nearest.current_node_pool) as current_node_pool,
        coalesce(same_day.requested_node_pool, nearest.requested_node_pool)
            as requested_node_pool
    from usage
    left join day_states as same_day
        on same_day.workload_id = usage.workload_id
        and same_day.snapshot_date = usage.usage_date
    left join nearest_states as nearest
        on nearest.workload_id = usage.workload_id
        and nearest.usage_date = usage.usage_date

),

-- Where the workload ran when its day's state shows no current node pool (it had stopped
-- by the fetch): the nearest state in time that saw it running, the earlier on a tie.
nearest_placements as (

    select * from (
        select
            attributed_states.usage_date,
            attributed_states.workload_id,
            day_states.current_node_pool as nodepool,
            row_number() over (
                partition by attributed_states.workload_id, attributed_states.usage_date
                order by abs({{ dbt.datediff('attributed_states.usage_date', 'day_states.snapshot_date', 'day') }}),
                    day_states.snapshot_date
            ) as nearest_rank
        from attributed_states
        inner join day_states
            on day_states.workload_id = attributed_states.workload_id
            and day_states.current_node_pool is not null
        where attributed_states.current_node_pool is null
    ) as ranked
    where nearest_rank = 1

),

attributed as (

    select
        usage.*,
        -- the keys the reports group by are never null: a workload never seen in a
        -- snapshot, or whose record lacks a department or project, is 'unknown'
        coalesce(attributed_states.cluster_id, 'unknown') as cluster_id,
        coalesce(attributed_states.department_id, 'unknown') as department_id,
        attributed_states.department_name,
        coalesce(attributed_states.project_id, 'unknown') as project_id,
        attributed_states.project_name,
        coalesce(
            attributed_states.current_node_pool,
            nearest_placements.nodepool,
            attributed_states.requested_node_pool,
            'unknown'
        ) as nodepool,
        case
            when attributed_states.current_node_pool is not null then 'current_node_pools'
            when nearest_placements.nodepool is not null then 'nearest_current_node_pools'
            when attributed_states.requested_node_pool is not null
                then 'requested_node_pools'
            else 'unknown'
        end as nodepool_source,
        attributed_states.submitted_by,
        attributed_states.workload_type,
        attributed_states.category,
        attributed_states.attribution_source,
        attributed_states.attribution_state_date,
        attributed_states.attribution_state_fetched_at
    from usage
    left join attributed_states
        on attributed_states.workload_id = usage.workload_id
        and attributed_states.usage_date = usage.usage_date
    left join nearest_placements
        on nearest_placements.workload_id = usage.workload_id
        and nearest_placements.usage_date = usage.usage_date

),

-- The GPU price valid on the usage date: the row of the workload's cluster and node pool;
-- failing that, the node pool's row for any cluster ('*'); failing that, the default row.
priced as (

    select
        attributed.*,
        coalesce(exact_price.price_id, pool_price.price_id, default_price.price_id)
            as gpu_price_id,
        case
            when exact_price.price_id is not null then 'cluster_and_nodepool'
            when pool_price.price_id is not null then 'nodepool_any_cluster'
            when default_price.price_id is not null then 'default'
        end as gpu_price_match,
        coalesce(
            exact_price.price_per_gpu_hour,
            pool_price.price_per_gpu_hour,
            default_price.price_per_gpu_hour
        ) as price_per_gpu_hour,
        coalesce(exact_price.currency, pool_price.currency, default_price.currency)
            as currency,
        cpu_price.price_id as cpu_price_id,
        cpu_price.price_per_unit_hour as price_per_cpu_core_hour,
        memory_price.price_id as memory_price_id,
        memory_price.price_per_unit_hour as price_per_memory_gib_hour
    from attributed
    {%- for alias, cluster, pool in [
        ('exact_price', 'attributed.cluster_id', 'attributed.nodepool'),
        ('pool_price', "'*'", 'attributed.nodepool'),
        ('default_price', "'*'", "'*'"),
    ] %}
    left join gpu_prices as {{ alias }}
        on {{ alias }}.cluster_id = {{ cluster }}
        and {{ alias }}.nodepool = {{ pool }}
        and attributed.usage_date >= {{ alias }}.valid_from
        and ({{ alias }}.valid_to is null or attributed.usage_date < {{ alias }}.valid_to)
    {%- endfor %}
    {%- for alias, resource in [('cpu_price', 'cpu_core'), ('memory_price', 'memory_gib')] %}
    left join resource_prices as {{ alias }}
        on {{ alias }}.resource = '{{ resource }}'
        and attributed.usage_date >= {{ alias }}.valid_from
        and ({{ alias }}.valid_to is null or attributed.usage_date < {{ alias }}.valid_to)
    {%- endfor %}

),

-- Costs in DECIMAL: the hours (quantised to DECIMAL(38, 9)) times the DECIMAL prices of the
-- seeds, and the total as the exact sum of the three parts; converted to DOUBLE at the end.
costed as (

    select
        priced.*,
        cast(allocated_gpu_hours as {{ hours_decimal_type() }}) * price_per_gpu_hour as gpu_cost_exact,
        cast(requested_cpu_core_hours as {{ hours_decimal_type() }}) * price_per_cpu_core_hour
            as cpu_cost_exact,
        cast(requested_memory_gib_hours as {{ hours_decimal_type() }}) * price_per_memory_gib_hour
            as memory_cost_exact,
        cast(idle_gpu_hours as {{ hours_decimal_type() }}) * price_per_gpu_hour as idle_gpu_cost_exact
    from priced

),

final as (

    select
        usage_date,
        workload_id,
        cluster_id,
        department_id,
        department_name,
        project_id,
        project_name,
        nodepool,
        submitted_by,
        workload_type,
        category,
        allocated_gpu_hours,
        used_gpu_hours,
        idle_gpu_hours,
        case
            when allocated_gpu_hours > 0 then used_gpu_hours / allocated_gpu_hours * 100
        end as gpu_utilisation_pct,
        utilisation_sample_coverage,
        requested_cpu_core_hours,
        used_cpu_core_hours,
        requested_memory_gib_hours,
        cast(gpu_cost_exact as double) as gpu_cost,
        cast(cpu_cost_exact as double) as cpu_cost,
        cast(memory_cost_exact as double) as memory_cost,
        cast(gpu_cost_exact + cpu_cost_exact + memory_cost_exact as double) as total_cost,
        cast(idle_gpu_cost_exact as double) as idle_gpu_cost,
        cast(price_per_gpu_hour as double) as price_per_gpu_hour,
        currency,
        used_memory_gib_hours,
        case
            when requested_cpu_core_hours > 0
                then used_cpu_core_hours / requested_cpu_core_hours * 100
        end as cpu_utilisation_pct,
        case
            when requested_memory_gib_hours > 0
                then used_memory_gib_hours / requested_memory_gib_hours * 100
        end as memory_utilisation_pct,
        held_hours,
        pending_hours,
        peak_gpu_memory_usage_bytes,
        gpu_memory_request_bytes,
        nodepool_source,
        attribution_source,
        attribution_state_date,
        attribution_state_fetched_at,
        gpu_price_id,
        gpu_price_match,
        cpu_price_id,
        cast(price_per_cpu_core_hour as double) as price_per_cpu_core_hour,
        memory_price_id,
        cast(price_per_memory_gib_hour as double) as price_per_memory_gib_hour
    from costed

)

select * from final
