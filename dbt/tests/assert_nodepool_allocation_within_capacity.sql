-- No bill allocates more GPUs to a node pool in an hour than the pool has: an hour above the
-- capacity of the nodepool_capacity seed (beyond capacity_overrun_tolerance) means the seed
-- is out of date or the control plane reported GPUs that do not exist. Each record may be
-- possible on its own (the normaliser bounds a workload by the GPU ceiling); together they
-- are not, so the build fails and nothing is published until the seed or the data is fixed.
-- Only the hours of the run's window.
{{ config(meta={'dagster': {'ref': {'name': 'rpt_nodepool_allocation_hourly'}}}) }}

with

hours as (

    select * from {{ ref('rpt_nodepool_allocation_hourly') }}
    where capacity_gpus is not null
      and {{ usage_window_filter('usage_date') }}

),

final as (

    select
        hour_start,
        cluster_id,
        nodepool,
        capacity_gpus,
        allocated_gpus
    from hours
    where allocated_gpus
        > capacity_gpus * (1 + {{ var('capacity_overrun_tolerance') }}) + {{ var('test_tolerance') }}

)

select * from final
