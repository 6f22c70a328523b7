{{ config(**incremental_by_key('workload_id')) }}

{#- The versions of dim_workloads_history. Incremental: a nightly run folds the states of its
    window into the versions of the workloads it lists (macros/fold.sql): the workload's
    current version goes first, as one state standing for all of its states, and the
    window's states follow; the earlier versions stay as they are. -#}
{%- set folding = folds_window([ref('int_workload_states')]) %}
{%- set attributes = [
    'workload_name', 'workload_type', 'category', 'phase', 'cluster_id', 'project_id',
    'project_name', 'department_id', 'department_name', 'submitted_by',
    'current_node_pool', 'requested_node_pool', 'requested_gpu', 'is_deleted',
] %}

with

states as (

    select * from {{ ref('int_workload_states') }}
    where {{ states_to_fold(folding) }}

),

-- Each state as a version of one state.
state_rows as (

    select
        workload_id,
        snapshot_at as valid_from,
        snapshot_at as last_seen_at,
        snapshot_date as last_snapshot_date,
        cast(1 as bigint) as n_states,
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
        requested_gpu_request as requested_gpu,
        deleted_at is not null or state_source = 'deleted_list' as is_deleted,
        cast(0 as bigint) as version_base
    from states

),

{%- if folding %}

-- The versions held for the window's workloads.
held as (

    select *
    from {{ this }}
    where workload_id in (select workload_id from state_rows)

),

-- The current version continues with the window's states: the versions before it stay.
rows_to_fold as (

    select * from state_rows
    {{ union_all_by_name() }}
    select
        workload_id, valid_from, last_seen_at, last_snapshot_date, n_states,
        {{ attributes | join(', ') }},
        cast(version - 1 as bigint) as version_base
    from held
    where is_current

),

{%- else %}

rows_to_fold as (

    select * from state_rows

),

{%- endif %}

-- The attributes whose changes open a new version, fingerprinted per state.
fingerprinted as (

    select
        *,
        {%- set fields = [] %}
        {%- for column in attributes %}
        {%- do fields.append((column, column)) %}
        {%- endfor %}
        {{ md5_of_struct(fields) }} as attributes_hash
    from rows_to_fold

),

flagged as (

    select
        *,
        case
            when attributes_hash is not distinct from lag(attributes_hash) over (
                partition by workload_id order by valid_from
            ) then 0
            else 1
        end as is_change
    from fingerprinted

),

numbered as (

    select
        *,
        max(version_base) over (partition by workload_id) + sum(is_change) over (
            partition by workload_id order by valid_from
            rows between unbounded preceding and current row
        ) as version
    from flagged

),

-- Consecutive states with the same attributes form one version.
versions as (

    select
        workload_id,
        cast(version as integer) as version,
        min(valid_from) as valid_from,
        max(last_seen_at) as last_seen_at,
        max(last_snapshot_date) as last_snapshot_date,
        cast(sum(n_states) as bigint) as n_states,
        {%- for column in attributes %}
        {{ arg_min(column, 'valid_from') }} as {{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    from numbered
    group by workload_id, version

),

all_versions as (

    select * from versions
    {%- if folding %}
    {{ union_all_by_name() }}
    select
        workload_id, version, valid_from, last_seen_at, last_snapshot_date, n_states,
        {{ attributes | join(', ') }}
    from held
    where not is_current
    {%- endif %}

),

final as (

    select
        workload_id || ':' || cast(version as {{ text_type() }}) as workload_version_key,
        workload_id,
        version,
        valid_from,
        lead(valid_from) over (partition by workload_id order by version) as valid_to,
        lead(valid_from) over (partition by workload_id order by version) is null
            as is_current,
        last_seen_at,
        last_snapshot_date,
        n_states,
        {{ attributes | join(',\n        ') }}
    from all_versions

)

select * from final
