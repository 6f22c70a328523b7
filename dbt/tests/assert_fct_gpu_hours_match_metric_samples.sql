-- Conservation per day along an independent path: allocated, used and idle GPU-hours of the
-- fact table equal the same quantities computed straight from the staged metric samples
-- (unlabelled GPU_ALLOCATION joined to GPU_UTILIZATION at the same time), without the
-- intermediate models. Only the days of the run's window (macros/usage_window.sql) are
-- compared: other days of the incremental fact keep what earlier runs built.
{{ config(meta={'dagster': {'ref': {'name': 'fct_workload_usage_daily'}}}) }}
{%- set tolerance = var('test_tolerance') %}
{%- set idle_pct = var('idle_gpu_utilisation_pct') %}

with

metrics as (

    select * from {{ ref('stg_runai__workload_metrics') }}
    where labels_json is null
      and metric_type in ('GPU_ALLOCATION', 'GPU_UTILIZATION')
      and {{ usage_window_filter('usage_date') }}

),

allocation as (

    select usage_date, workload_id, sampled_at, metric_value as gpus, step_seconds
    from metrics
    where metric_type = 'GPU_ALLOCATION'

),

utilisation as (

    select usage_date, workload_id, sampled_at, metric_value as pct
    from metrics
    where metric_type = 'GPU_UTILIZATION'

),

expected as (

    select
        allocation.usage_date,
        sum(allocation.gpus * allocation.step_seconds) / 3600.0 as allocated_gpu_hours,
        coalesce(sum(allocation.gpus * utilisation.pct / 100.0 * allocation.step_seconds), 0)
            / 3600.0 as used_gpu_hours,
        coalesce(sum(allocation.gpus * allocation.step_seconds) filter (
            where utilisation.pct < {{ idle_pct }}
        ), 0) / 3600.0 as idle_gpu_hours
    from allocation
    left join utilisation
        on utilisation.usage_date = allocation.usage_date
        and utilisation.workload_id = allocation.workload_id
        and utilisation.sampled_at = allocation.sampled_at
    group by allocation.usage_date

),

actual as (

    select
        usage_date,
        sum(allocated_gpu_hours) as allocated_gpu_hours,
        sum(used_gpu_hours) as used_gpu_hours,
        sum(idle_gpu_hours) as idle_gpu_hours
    from {{ ref('fct_workload_usage_daily') }}
    where {{ usage_window_filter('usage_date') }}
    group by usage_date

),

compared as (

    select
        coalesce(expected.usage_date, actual.usage_date) as usage_date,
        {%- for m in ['allocated_gpu_hours', 'used_gpu_hours', 'idle_gpu_hours'] %}
        coalesce(expected.{{ m }}, 0) as expected_{{ m }},
        coalesce(actual.{{ m }}, 0) as actual_{{ m }}{{ ',' if not loop.last }}
        {%- endfor %}
    from expected
    full outer join actual on actual.usage_date = expected.usage_date

)

select *
from compared
where
    {%- for m in ['allocated_gpu_hours', 'used_gpu_hours', 'idle_gpu_hours'] %}
    abs(expected_{{ m }} - actual_{{ m }}) > {{ tolerance }} * greatest(1, abs(expected_{{ m }}))
    {%- if not loop.last %} or{% endif %}
    {%- endfor %}
