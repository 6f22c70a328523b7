with

telemetry as (

    select * from {{ ref('stg_runai__telemetry_values') }}
    where telemetry_type = 'GPU_ALLOCATION'

),

-- The GPU_ALLOCATION values grouped by ClusterId and CurrentNodepools (in either group
-- position), one row per fetch, cluster and node pool.
keyed as (

    select
        run_id,
        snapshot_date,
        fetched_at,
        coalesce(measured_at, fetched_at) as measured_at,
        case
            when group1_key = 'ClusterId' then group1_value
            when group2_key = 'ClusterId' then group2_value
        end as cluster_id,
        case
            when group1_key = 'CurrentNodepools' then group1_value
            when group2_key = 'CurrentNodepools' then group2_value
        end as nodepool,
        telemetry_value
    from telemetry
    where 'ClusterId' in (group1_key, group2_key)
      and 'CurrentNodepools' in (group1_key, group2_key)

),

final as (

    select
        run_id,
        snapshot_date,
        fetched_at,
        max(measured_at) as measured_at,
        cluster_id,
        nodepool,
        {{ exact_sum('telemetry_value') }} as telemetry_allocated_gpus
    from keyed
    where cluster_id is not null and nodepool is not null and nodepool <> ''
    group by run_id, snapshot_date, fetched_at, cluster_id, nodepool

)

select * from final
