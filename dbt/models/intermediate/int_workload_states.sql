{{ config(**incremental_by_day('snapshot_date', on_schema_change='sync_all_columns')) }}

with

snapshots as (

    select * from {{ ref('stg_runai__workload_snapshots') }}
    where {{ usage_window_predicate('snapshot_date') }}

),

deleted as (

    select * from {{ ref('stg_runai__deleted_workloads') }}
    where {{ usage_window_predicate('snapshot_date') }}

),

unioned as (

    -- both lists have the columns of workload_state_columns(), in its order
    select * from snapshots
    {{ union_all_by_name() }}
    select * from deleted

),

-- One state per workload and fetch: a workload found in both lists of the same fetch keeps
-- the deleted-list row (it carries deleted_at). A fetch belongs to one day (snapshot_date),
-- so every day's states are made from that day's lists alone and an incremental run
-- rebuilds its window's days only.
deduplicated as (

    select *
    from unioned
    qualify row_number() over (
        partition by workload_id, snapshot_date, snapshot_at
        order by case state_source when 'deleted_list' then 0 else 1 end,
            updated_at desc nulls last
    ) = 1

),

-- Stored in day order: the models reading a window of days skip the rest of the table.
final as (

    select * from deduplicated
    order by snapshot_date

)

select * from final
