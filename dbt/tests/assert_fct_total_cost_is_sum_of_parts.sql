-- Every fact row: total_cost = gpu_cost + cpu_cost + memory_cost, and idle_gpu_cost is the
-- idle share of gpu_cost at the same price. Only the days of the run's window.
{{ config(meta={'dagster': {'ref': {'name': 'fct_workload_usage_daily'}}}) }}
{%- set tolerance = var('test_tolerance') %}

select
    usage_date,
    workload_id,
    gpu_cost,
    cpu_cost,
    memory_cost,
    total_cost,
    idle_gpu_cost
from {{ ref('fct_workload_usage_daily') }}
where {{ usage_window_filter('usage_date') }}
  and (total_cost is null
    or gpu_cost is null
    or cpu_cost is null
    or memory_cost is null
    or abs(total_cost - (gpu_cost + cpu_cost + memory_cost))
        > {{ tolerance }} * greatest(1, abs(total_cost))
    or abs(idle_gpu_cost - idle_gpu_hours * price_per_gpu_hour)
        > {{ tolerance }} * greatest(1, abs(idle_gpu_cost)))
