{{ config(**incremental_by_key(
    ['workload_id', 'snapshot_at'],
    states=['stg_runai__workload_snapshots', 'stg_runai__deleted_workloads'],
    folded_date='snapshot_date',
    folded_at='snapshot_at',
)) }}

{#- Incremental: a nightly run, whose lists were fetched after every state held, adds the
    states of its window; any other run (a past day, a day run again, lists fetched at the
    same time as held ones) rebuilds from every list (macros/fold.sql). -#}
{%- set folding = folds_window(
    [ref('stg_runai__workload_snapshots'), ref('stg_runai__deleted_workloads')],
    folded_date='snapshot_date',
    folded_at='snapshot_at',
) %}

with

snapshots as (

    select * from {{ ref('stg_runai__workload_snapshots') }}
    where {{ states_to_fold(folding) }}

),

deleted as (

    select * from {{ ref('stg_runai__deleted_workloads') }}
    where {{ states_to_fold(folding) }}

),

unioned as (

    -- both lists have the columns of workload_state_columns(), in its order
    select * from snapshots
    {{ union_all_by_name() }}
    select * from deleted

),

-- One state per workload and fetch: a workload found in both lists of the same fetch keeps
-- the deleted-list row (it carries deleted_at). Lists fetched at the same time (a backfill
-- fetching several days' lists at once) are one fetch: its state belongs to the latest day.
deduplicated as (

    select *
    from unioned
    qualify row_number() over (
        partition by workload_id, snapshot_at
        order by case state_source when 'deleted_list' then 0 else 1 end,
            updated_at desc nulls last,
            snapshot_date desc
    ) = 1

),

-- Stored in day order: the models reading a window of days skip the rest of the table.
final as (

    select * from deduplicated
    order by snapshot_date

)

select * from final
