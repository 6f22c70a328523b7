{%- set window_days = var('top_idle_window_days') %}

with

usage as (

    select * from {{ ref('fct_workload_usage_daily') }}

),

workloads as (

    select * from {{ ref('dim_workloads') }}

),

-- The last {{ window_days }} days available in the data.
report_window as (

    select
        cast(max(usage_date) - interval {{ window_days - 1 }} day as date) as window_start,
        max(usage_date) as window_end
    from usage

),

windowed as (

    select
        usage.workload_id,
        report_window.window_start,
        report_window.window_end,
        count(*) filter (where usage.allocated_gpu_hours > 0) as days_with_allocation,
        {{ exact_sum('usage.allocated_gpu_hours') }} as allocated_gpu_hours,
        {{ exact_sum('usage.used_gpu_hours') }} as used_gpu_hours,
        {{ exact_sum('usage.idle_gpu_hours') }} as idle_gpu_hours,
        {{ exact_sum('usage.idle_gpu_cost') }} as idle_gpu_cost,
        {{ exact_sum('usage.gpu_cost') }} as gpu_cost,
        max(usage.currency) as currency
    from usage
    cross join report_window
    where usage.usage_date between report_window.window_start and report_window.window_end
    group by all
    having {{ exact_sum('usage.allocated_gpu_hours') }} > 0

),

ranked as (

    select
        -- BIGINT, as the contract says (row_number() is INT on Spark)
        cast(row_number() over (
            order by windowed.idle_gpu_hours desc,
                windowed.used_gpu_hours / windowed.allocated_gpu_hours asc,
                windowed.workload_id
        ) as bigint) as idle_rank,
        windowed.*,
        windowed.used_gpu_hours / windowed.allocated_gpu_hours * 100 as gpu_utilisation_pct
    from windowed

),

final as (

    select
        ranked.idle_rank,
        ranked.window_start,
        ranked.window_end,
        ranked.workload_id,
        workloads.workload_name,
        workloads.cluster_id,
        workloads.department_id,
        workloads.department_name,
        workloads.project_id,
        workloads.project_name,
        workloads.nodepool,
        workloads.submitted_by,
        workloads.phase,
        ranked.days_with_allocation,
        ranked.allocated_gpu_hours,
        ranked.used_gpu_hours,
        ranked.idle_gpu_hours,
        ranked.gpu_utilisation_pct,
        ranked.gpu_cost,
        ranked.idle_gpu_cost,
        ranked.currency
    from ranked
    left join workloads using (workload_id)

)

select * from final
