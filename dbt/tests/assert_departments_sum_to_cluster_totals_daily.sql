-- Conservation per day: the departments of a cluster add up to the cluster's totals, and
-- the cluster totals add up to the workload rows of the fact table. Only the days of the
-- run's window.
{{ config(meta={'dagster': {'ref': {'name': 'rpt_utilisation_daily_by_department'}}}) }}
{%- set tolerance = var('test_tolerance') %}
{%- set measures = ['allocated_gpu_hours', 'used_gpu_hours', 'idle_gpu_hours', 'gpu_cost', 'idle_gpu_cost', 'total_cost'] %}

with

departments as (

    select
        usage_date,
        cluster_id,
        {%- for m in measures %}
        sum({{ m }}) as {{ m }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ ref('rpt_utilisation_daily_by_department') }}
    where {{ usage_window_filter('usage_date') }}
    group by usage_date, cluster_id

),

clusters as (

    select * from {{ ref('rpt_utilisation_daily_by_cluster') }}
    where {{ usage_window_filter('usage_date') }}

),

workloads as (

    select
        usage_date,
        cluster_id,
        {%- for m in measures %}
        sum({{ m }}) as {{ m }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ ref('fct_workload_usage_daily') }}
    where {{ usage_window_filter('usage_date') }}
    group by usage_date, cluster_id

),

compared as (

    select
        coalesce(clusters.usage_date, departments.usage_date, workloads.usage_date) as usage_date,
        coalesce(clusters.cluster_id, departments.cluster_id, workloads.cluster_id) as cluster_id,
        {%- for m in measures %}
        clusters.{{ m }} as cluster_{{ m }},
        departments.{{ m }} as departments_{{ m }},
        workloads.{{ m }} as workloads_{{ m }}{{ ',' if not loop.last }}
        {%- endfor %}
    from clusters
    full outer join departments
        on departments.usage_date = clusters.usage_date
        and departments.cluster_id is not distinct from clusters.cluster_id
    full outer join workloads
        on workloads.usage_date = coalesce(clusters.usage_date, departments.usage_date)
        and workloads.cluster_id
            is not distinct from coalesce(clusters.cluster_id, departments.cluster_id)

)

select *
from compared
where
    {%- for m in measures %}
    abs(cluster_{{ m }} - departments_{{ m }})
        > {{ tolerance }} * greatest(1, abs(cluster_{{ m }}))
    or abs(cluster_{{ m }} - workloads_{{ m }})
        > {{ tolerance }} * greatest(1, abs(cluster_{{ m }}))
    or cluster_{{ m }} is null or departments_{{ m }} is null or workloads_{{ m }} is null
    {%- if not loop.last %} or{% endif %}
    {%- endfor %}
