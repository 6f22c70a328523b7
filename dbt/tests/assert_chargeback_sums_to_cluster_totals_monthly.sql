-- Conservation per month: the chargeback rows (projects of departments) of a cluster add up
-- to the cluster's daily totals over the month. Only the months the run's window touches.
{{ config(meta={'dagster': {'ref': {'name': 'rpt_chargeback_monthly'}}}) }}
{%- set tolerance = var('test_tolerance') %}
{%- set measures = ['allocated_gpu_hours', 'used_gpu_hours', 'idle_gpu_hours', 'gpu_cost', 'idle_gpu_cost', 'total_cost'] %}

with

chargeback as (

    select
        usage_month,
        cluster_id,
        {%- for m in measures %}
        sum({{ m }}) as {{ m }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ ref('rpt_chargeback_monthly') }}
    where {{ usage_window_filter('usage_month', whole_months=true) }}
    group by usage_month, cluster_id

),

clusters as (

    select
        cast(date_trunc('month', usage_date) as date) as usage_month,
        cluster_id,
        {%- for m in measures %}
        sum({{ m }}) as {{ m }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ ref('rpt_utilisation_daily_by_cluster') }}
    where {{ usage_window_filter('usage_date', whole_months=true) }}
    group by all

),

compared as (

    select
        coalesce(clusters.usage_month, chargeback.usage_month) as usage_month,
        coalesce(clusters.cluster_id, chargeback.cluster_id) as cluster_id,
        {%- for m in measures %}
        clusters.{{ m }} as cluster_{{ m }},
        chargeback.{{ m }} as chargeback_{{ m }}{{ ',' if not loop.last }}
        {%- endfor %}
    from clusters
    full outer join chargeback
        on chargeback.usage_month = clusters.usage_month
        and chargeback.cluster_id is not distinct from clusters.cluster_id

)

select *
from compared
where
    {%- for m in measures %}
    cluster_{{ m }} is null or chargeback_{{ m }} is null
    or abs(cluster_{{ m }} - chargeback_{{ m }}) > {{ tolerance }} * greatest(1, abs(cluster_{{ m }}))
    {%- if not loop.last %} or{% endif %}
    {%- endfor %}
