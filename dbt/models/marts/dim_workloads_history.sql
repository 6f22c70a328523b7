with

versions as (

    select * from {{ ref('int_workload_versions') }}

),

final as (

    select
        workload_version_key,
        workload_id,
        version,
        valid_from,
        valid_to,
        is_current,
        last_seen_at,
        n_states,
        workload_name,
        workload_type,
        category,
        phase,
        cluster_id,
        project_id,
        project_name,
        department_id,
        department_name,
        submitted_by,
        current_node_pool,
        requested_node_pool,
        requested_gpu,
        is_deleted
    from versions

)

select * from final
