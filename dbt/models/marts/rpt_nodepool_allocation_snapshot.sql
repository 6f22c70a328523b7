{{ config(**incremental_by_day('snapshot_date')) }}

{#- Incremental: a run replaces the fetches of its window's day partitions (snapshot_date). -#}

with

telemetry as (

    select * from {{ ref('int_telemetry_gpu_allocation') }}
    where {{ usage_window_predicate('snapshot_date') }}

),

snapshots as (

    select * from {{ ref('stg_runai__workload_snapshots') }}
    where {{ usage_window_predicate('snapshot_date') }}

),

capacity as (

    select * from {{ ref('nodepool_capacity') }}

),

fetches as (

    select distinct run_id, snapshot_date, fetched_at
    from telemetry

),

-- The workload snapshot each run took next to its telemetry fetch, per day partition (a
-- backfill run fetches both once for each of its days).
run_snapshots as (

    select run_id, snapshot_date, max(snapshot_at) as snapshot_at
    from snapshots
    where run_id in (select run_id from fetches)
    group by run_id, snapshot_date

),

-- A workload counts in every node pool it currently runs in (like the telemetry grouping).
placements as (

    select
        run_id,
        snapshot_date,
        cluster_id,
        workload_id,
        allocated_gpu,
        {{ unnest_distinct('current_node_pools') }} as nodepool
    from snapshots
    where run_id in (select run_id from fetches)

),

snapshot_pools as (

    select
        run_id,
        snapshot_date,
        cluster_id,
        nodepool,
        {{ exact_sum('coalesce(allocated_gpu, 0)') }} as snapshot_allocated_gpus,
        count(distinct workload_id) filter (where allocated_gpu > 0)
            as snapshot_workloads_with_allocation
    from placements
    where nodepool is not null and nodepool <> '' and cluster_id is not null
    group by run_id, snapshot_date, cluster_id, nodepool

),

pools as (

    select run_id, snapshot_date, fetched_at, cluster_id, nodepool from telemetry
    union
    select fetches.run_id, fetches.snapshot_date, fetches.fetched_at, cluster_id, nodepool
    from snapshot_pools
    inner join fetches using (run_id, snapshot_date)

),

final as (

    select
        pools.fetched_at,
        pools.snapshot_date,
        pools.run_id,
        run_snapshots.snapshot_at,
        pools.cluster_id,
        capacity.cluster_name,
        pools.nodepool,
        capacity.gpu_type,
        capacity.gpu_count as capacity_gpus,
        coalesce(telemetry.telemetry_allocated_gpus, 0) as telemetry_allocated_gpus,
        case
            when run_snapshots.run_id is not null
                then coalesce(snapshot_pools.snapshot_allocated_gpus, 0)
        end as snapshot_allocated_gpus,
        coalesce(snapshot_pools.snapshot_workloads_with_allocation, 0)
            as snapshot_workloads_with_allocation,
        coalesce(telemetry.telemetry_allocated_gpus, 0)
            - case
                when run_snapshots.run_id is not null
                    then coalesce(snapshot_pools.snapshot_allocated_gpus, 0)
            end as telemetry_minus_snapshot_gpus,
        case
            when capacity.gpu_count > 0
                then coalesce(telemetry.telemetry_allocated_gpus, 0) / capacity.gpu_count * 100
        end as telemetry_pct_of_capacity
    from pools
    left join telemetry
        on telemetry.fetched_at = pools.fetched_at
        and telemetry.run_id = pools.run_id
        and telemetry.snapshot_date = pools.snapshot_date
        and telemetry.cluster_id = pools.cluster_id
        and telemetry.nodepool = pools.nodepool
    left join run_snapshots
        on run_snapshots.run_id = pools.run_id
        and run_snapshots.snapshot_date = pools.snapshot_date
    left join snapshot_pools
        on snapshot_pools.run_id = pools.run_id
        and snapshot_pools.snapshot_date = pools.snapshot_date
        and snapshot_pools.cluster_id = pools.cluster_id
        and snapshot_pools.nodepool = pools.nodepool
    left join capacity
        on capacity.cluster_id = pools.cluster_id and capacity.nodepool = pools.nodepool

)

select * from final
