-- Conservation per month: the chargeback rows of a month add up to the fact rows of that
-- month, for every measure (hours and all costs), and every month of the fact is billed.
-- Only the months the run's window touches are compared (the months it rebuilt).
{{ config(meta={'dagster': {'ref': {'name': 'rpt_chargeback_monthly'}}}) }}
{%- set tolerance = var('test_tolerance') %}
{%- set measures = [
    'allocated_gpu_hours', 'used_gpu_hours', 'idle_gpu_hours', 'requested_cpu_core_hours',
    'requested_memory_gib_hours', 'gpu_cost', 'cpu_cost', 'memory_cost', 'total_cost',
    'idle_gpu_cost',
] %}

with

chargeback as (

    select
        usage_month,
        {%- for m in measures %}
        sum({{ m }}) as {{ m }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ ref('rpt_chargeback_monthly') }}
    where {{ usage_window_filter('usage_month', whole_months=true) }}
    group by usage_month

),

facts as (

    select
        cast(date_trunc('month', usage_date) as date) as usage_month,
        {%- for m in measures %}
        sum({{ m }}) as {{ m }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ ref('fct_workload_usage_daily') }}
    where {{ usage_window_filter('usage_date', whole_months=true) }}
    group by all

),

compared as (

    select
        coalesce(facts.usage_month, chargeback.usage_month) as usage_month,
        {%- for m in measures %}
        facts.{{ m }} as fact_{{ m }},
        chargeback.{{ m }} as chargeback_{{ m }}{{ ',' if not loop.last }}
        {%- endfor %}
    from facts
    full outer join chargeback on chargeback.usage_month = facts.usage_month

)

select *
from compared
where
    {%- for m in measures %}
    fact_{{ m }} is null or chargeback_{{ m }} is null
    or abs(fact_{{ m }} - chargeback_{{ m }}) > {{ tolerance }} * greatest(1, abs(fact_{{ m }}))
    {%- if not loop.last %} or{% endif %}
    {%- endfor %}
