with

snapshots as (

    select * from {{ ref('stg_runai__workload_snapshots') }}

),

deleted as (

    select * from {{ ref('stg_runai__deleted_workloads') }}

),

unioned as (

    -- both lists have the columns of workload_state_columns(), in its order
    select * from snapshots
    {{ union_all_by_name() }}
    select * from deleted

),

-- One state per workload and fetch: a workload found in both lists of the same fetch keeps
-- the deleted-list row (it carries deleted_at).
final as (

    select *
    from unioned
    qualify row_number() over (
        partition by workload_id, snapshot_at
        order by case state_source when 'deleted_list' then 0 else 1 end,
            updated_at desc nulls last,
            snapshot_date desc
    ) = 1

)

select * from final
