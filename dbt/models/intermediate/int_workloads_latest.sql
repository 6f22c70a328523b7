{{ config(**incremental_by_key('workload_id')) }}

{#- Incremental: a nightly run folds the states of its window into the rows of the workloads
    it lists (macros/fold.sql). Every row carries what the fold needs besides its answer:
    the order of its latest state (latest_state_at, updated_at, latest_state_source), the
    state it last ran in (placement_*), and its lifetime so far. -#}
{%- set folding = folds_window([ref('int_workload_states')]) %}

with

states as (

    select * from {{ ref('int_workload_states') }}
    where {{ states_to_fold(folding) }}

),

-- Each state as a row of this model's shape: a workload of one state.
state_rows as (

    select
        workload_id,
        workload_name,
        workload_type,
        category,
        phase,
        k8s_phase,
        cluster_id,
        project_id,
        project_name,
        department_id,
        department_name,
        namespace,
        submitted_by,
        priority,
        preemptible,
        distributed_framework,
        requested_node_pool,
        requested_node_pools,
        current_node_pools,
        created_at,
        updated_at,
        phase_updated_at,
        completed_at,
        deleted_at as latest_deleted_at,
        snapshot_at as latest_state_at,
        state_source as latest_state_source,
        total_pending_time_seconds,
        total_running_time_seconds,
        requested_pods_number,
        requested_gpu_request_type,
        requested_gpu_request as requested_gpu,
        requested_gpu_memory_request_bytes as requested_gpu_memory_bytes,
        requested_cpu_request_cores as requested_cpu_cores,
        requested_cpu_memory_request_bytes as requested_cpu_memory_bytes,
        allocated_gpu,
        allocated_cpu_cores,
        allocated_cpu_memory_bytes,
        current_node_pool as placement_node_pool,
        case when current_node_pool is not null then snapshot_at end as placement_at,
        case when current_node_pool is not null then updated_at end as placement_updated_at,
        case when current_node_pool is not null then state_source end as placement_state_source,
        snapshot_at as first_seen_at,
        snapshot_at as last_seen_at,
        snapshot_date as last_snapshot_date,
        deleted_at as lifetime_deleted_at,
        state_source = 'deleted_list' as seen_in_deleted_list,
        cast(1 as bigint) as n_states
    from states

),

-- What to fold: the states, and when the run folds its window, the rows already held for
-- the window's workloads.
rows_to_fold as (

    select * from state_rows
    {%- if folding %}
    {{ union_all_by_name() }}
    -- the rows held, less the columns final derives from the others
    select * exclude (nodepool, nodepool_source, deleted_at, is_deleted)
    from {{ this }}
    where workload_id in (select workload_id from state_rows)
    {%- endif %}

),

latest as (

    select *
    from rows_to_fold
    qualify row_number() over (
        partition by workload_id
        order by latest_state_at desc,
            updated_at desc nulls last,
            case latest_state_source when 'deleted_list' then 0 else 1 end
    ) = 1

),

-- Where the workload last ran: the latest state that listed a current node pool.
last_placement as (

    select workload_id, placement_node_pool, placement_at, placement_updated_at,
        placement_state_source
    from rows_to_fold
    where placement_node_pool is not null
    qualify row_number() over (
        partition by workload_id
        order by placement_at desc,
            placement_updated_at desc nulls last,
            case placement_state_source when 'deleted_list' then 0 else 1 end
    ) = 1

),

lifetime as (

    select
        workload_id,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        max(last_snapshot_date) as last_snapshot_date,
        max(lifetime_deleted_at) as lifetime_deleted_at,
        bool_or(seen_in_deleted_list) as seen_in_deleted_list,
        cast(sum(n_states) as bigint) as n_states
    from rows_to_fold
    group by workload_id

),

final as (

    select
        latest.workload_id,
        latest.workload_name,
        latest.workload_type,
        latest.category,
        latest.phase,
        latest.k8s_phase,
        latest.cluster_id,
        latest.project_id,
        latest.project_name,
        latest.department_id,
        latest.department_name,
        latest.namespace,
        latest.submitted_by,
        latest.priority,
        latest.preemptible,
        latest.distributed_framework,
        coalesce(
            last_placement.placement_node_pool, latest.requested_node_pool, 'unknown'
        ) as nodepool,
        case
            when last_placement.placement_node_pool is not null then 'current_node_pools'
            when latest.requested_node_pool is not null then 'requested_node_pools'
            else 'unknown'
        end as nodepool_source,
        latest.requested_node_pools,
        latest.current_node_pools,
        latest.created_at,
        latest.updated_at,
        latest.phase_updated_at,
        latest.completed_at,
        coalesce(latest.latest_deleted_at, lifetime.lifetime_deleted_at) as deleted_at,
        lifetime.seen_in_deleted_list
            or coalesce(latest.latest_deleted_at, lifetime.lifetime_deleted_at) is not null
            as is_deleted,
        lifetime.first_seen_at,
        lifetime.last_seen_at,
        lifetime.n_states,
        latest.latest_state_at,
        latest.latest_state_source,
        latest.total_pending_time_seconds,
        latest.total_running_time_seconds,
        latest.requested_pods_number,
        latest.requested_gpu_request_type,
        latest.requested_gpu,
        latest.requested_gpu_memory_bytes,
        latest.requested_cpu_cores,
        latest.requested_cpu_memory_bytes,
        latest.allocated_gpu,
        latest.allocated_cpu_cores,
        latest.allocated_cpu_memory_bytes,
        -- what the next run's fold needs
        latest.requested_node_pool,
        latest.latest_deleted_at,
        last_placement.placement_node_pool,
        last_placement.placement_at,
        last_placement.placement_updated_at,
        last_placement.placement_state_source,
        lifetime.last_snapshot_date,
        lifetime.lifetime_deleted_at,
        lifetime.seen_in_deleted_list
    from latest
    inner join lifetime using (workload_id)
    left join last_placement using (workload_id)

)

select * from final
