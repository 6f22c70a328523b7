with

workloads as (

    select * from {{ ref('int_workloads_latest') }}

),

final as (

    select
        workload_id,
        workload_name,
        workload_type,
        category,
        phase,
        cluster_id,
        department_id,
        department_name,
        project_id,
        project_name,
        namespace,
        submitted_by,
        nodepool,
        nodepool_source,
        priority,
        preemptible,
        distributed_framework,
        created_at,
        completed_at,
        deleted_at,
        is_deleted,
        first_seen_at,
        last_seen_at,
        latest_state_at,
        latest_state_source,
        total_pending_time_seconds,
        total_running_time_seconds,
        requested_pods_number,
        requested_gpu_request_type,
        requested_gpu,
        requested_gpu_memory_bytes,
        requested_cpu_cores,
        requested_cpu_memory_bytes,
        allocated_gpu,
        allocated_cpu_cores,
        allocated_cpu_memory_bytes
    from workloads

)

select * from final
