with

states as (

    select * from {{ ref('int_workload_states') }}

),

-- The attributes whose changes open a new version, fingerprinted per state.
fingerprinted as (

    select
        *,
        {%- set fields = [] %}
        {%- for column in [
            'workload_name', 'workload_type', 'category', 'phase', 'cluster_id', 'project_id',
            'project_name', 'department_id', 'department_name', 'submitted_by',
            'current_node_pool', 'requested_node_pool', 'requested_gpu_request',
        ] %}
        {%- do fields.append((column, column)) %}
        {%- endfor %}
        {%- do fields.append(
            ('is_deleted', "deleted_at is not null or state_source = 'deleted_list'")
        ) %}
        {{ md5_of_struct(fields) }} as attributes_hash
    from states

),

flagged as (

    select
        *,
        case
            when attributes_hash is not distinct from lag(attributes_hash) over (
                partition by workload_id order by snapshot_at
            ) then 0
            else 1
        end as is_change
    from fingerprinted

),

numbered as (

    select
        *,
        sum(is_change) over (
            partition by workload_id order by snapshot_at
            rows between unbounded preceding and current row
        ) as version
    from flagged

),

-- Consecutive states with the same attributes form one version.
versions as (

    select
        workload_id,
        version,
        min(snapshot_at) as valid_from,
        max(snapshot_at) as last_seen_at,
        count(*) as n_states,
        {{ arg_min('workload_name', 'snapshot_at') }} as workload_name,
        {{ arg_min('workload_type', 'snapshot_at') }} as workload_type,
        {{ arg_min('category', 'snapshot_at') }} as category,
        {{ arg_min('phase', 'snapshot_at') }} as phase,
        {{ arg_min('cluster_id', 'snapshot_at') }} as cluster_id,
        {{ arg_min('project_id', 'snapshot_at') }} as project_id,
        {{ arg_min('project_name', 'snapshot_at') }} as project_name,
        {{ arg_min('department_id', 'snapshot_at') }} as department_id,
        {{ arg_min('department_name', 'snapshot_at') }} as department_name,
        {{ arg_min('submitted_by', 'snapshot_at') }} as submitted_by,
        {{ arg_min('current_node_pool', 'snapshot_at') }} as current_node_pool,
        {{ arg_min('requested_node_pool', 'snapshot_at') }} as requested_node_pool,
        {{ arg_min('requested_gpu_request', 'snapshot_at') }} as requested_gpu,
        bool_or(deleted_at is not null or state_source = 'deleted_list') as is_deleted
    from numbered
    group by workload_id, version

),

final as (

    select
        workload_id || ':' || cast(version as {{ text_type() }}) as workload_version_key,
        workload_id,
        cast(version as integer) as version,
        valid_from,
        lead(valid_from) over (partition by workload_id order by version) as valid_to,
        lead(valid_from) over (partition by workload_id order by version) is null
            as is_current,
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
