with

states as (

    select * from {{ ref('int_workload_states') }}

),

latest as (

    select *
    from states
    qualify row_number() over (
        partition by workload_id
        order by snapshot_at desc,
            updated_at desc nulls last,
            case state_source when 'deleted_list' then 0 else 1 end
    ) = 1

),

-- Where the workload last ran: the latest state that listed a current node pool.
last_placement as (

    select workload_id, current_node_pool
    from states
    where current_node_pool is not null
    qualify row_number() over (
        partition by workload_id
        order by snapshot_at desc,
            updated_at desc nulls last,
            case state_source when 'deleted_list' then 0 else 1 end
    ) = 1

),

lifetime as (

    select
        workload_id,
        min(snapshot_at) as first_seen_at,
        max(snapshot_at) as last_seen_at,
        max(deleted_at) as deleted_at,
        bool_or(state_source = 'deleted_list') as seen_in_deleted_list,
        count(*) as n_states
    from states
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
            last_placement.current_node_pool, latest.requested_node_pool, 'unknown'
        ) as nodepool,
        case
            when last_placement.current_node_pool is not null then 'current_node_pools'
            when latest.requested_node_pool is not null then 'requested_node_pools'
            else 'unknown'
        end as nodepool_source,
        latest.requested_node_pools,
        latest.current_node_pools,
        latest.created_at,
        latest.updated_at,
        latest.phase_updated_at,
        latest.completed_at,
        coalesce(latest.deleted_at, lifetime.deleted_at) as deleted_at,
        lifetime.seen_in_deleted_list
            or coalesce(latest.deleted_at, lifetime.deleted_at) is not null as is_deleted,
        lifetime.first_seen_at,
        lifetime.last_seen_at,
        lifetime.n_states,
        latest.snapshot_at as latest_state_at,
        latest.state_source as latest_state_source,
        latest.total_pending_time_seconds,
        latest.total_running_time_seconds,
        latest.requested_pods_number,
        latest.requested_gpu_request_type,
        latest.requested_gpu_request as requested_gpu,
        latest.requested_gpu_memory_request_bytes as requested_gpu_memory_bytes,
        latest.requested_cpu_request_cores as requested_cpu_cores,
        latest.requested_cpu_memory_request_bytes as requested_cpu_memory_bytes,
        latest.allocated_gpu,
        latest.allocated_cpu_cores,
        latest.allocated_cpu_memory_bytes
    from latest
    inner join lifetime using (workload_id)
    left join last_placement using (workload_id)

)

select * from final
