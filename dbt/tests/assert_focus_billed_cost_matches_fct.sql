-- Conservation per day: the FOCUS charges of a day bill exactly the daily fact's total cost
-- (GPU, CPU and memory), so a FinOps tool loading the export sees the marts' totals.
{{ config(meta={'dagster': {'ref': {'name': 'focus_cost_and_usage'}}}) }}
{%- set tolerance = var('test_tolerance') %}

with

focus as (

    select {{ adapter.quote('x_UsageDate') }} as usage_date, sum({{ adapter.quote('BilledCost') }}) as billed_cost
    from {{ ref('focus_cost_and_usage') }}
    where {{ usage_window_filter(adapter.quote('x_UsageDate')) }}
    group by 1

),

facts as (

    select usage_date, sum(total_cost) as total_cost
    from {{ ref('fct_workload_usage_daily') }}
    where {{ usage_window_filter('usage_date') }}
    group by 1

),

compared as (

    select
        coalesce(facts.usage_date, focus.usage_date) as usage_date,
        coalesce(facts.total_cost, 0) as total_cost,
        coalesce(focus.billed_cost, 0) as billed_cost
    from facts
    full outer join focus on focus.usage_date = facts.usage_date

)

select *
from compared
where abs(total_cost - billed_cost) > {{ tolerance }} * greatest(1, abs(total_cost))
