{{ config(**incremental_by_day('usage_month', whole_months=true)) }}

{#- An incremental run replaces the whole months its window touches, recomputed from the
    fact's days of those months (at most 31 days each, whatever the history). -#}

with

usage as (

    select * from {{ ref('fct_workload_usage_daily') }}
    where {{ usage_window_predicate('usage_date', whole_months=true) }}

),

aggregated as (

    select
        cast(date_trunc('month', usage_date) as date) as usage_month,
        cluster_id,
        department_id,
        project_id,
        max(department_name) as department_name,
        max(project_name) as project_name,
        count(distinct workload_id) as workloads,
        count(distinct usage_date) as days_with_usage,
        {{ exact_sum('allocated_gpu_hours') }} as allocated_gpu_hours,
        {{ exact_sum('used_gpu_hours') }} as used_gpu_hours,
        {{ exact_sum('idle_gpu_hours') }} as idle_gpu_hours,
        {{ exact_sum('requested_cpu_core_hours') }} as requested_cpu_core_hours,
        {{ exact_sum('requested_memory_gib_hours') }} as requested_memory_gib_hours,
        {{ exact_sum('gpu_cost') }} as gpu_cost,
        {{ exact_sum('cpu_cost') }} as cpu_cost,
        {{ exact_sum('memory_cost') }} as memory_cost,
        {{ exact_sum('total_cost') }} as total_cost,
        {{ exact_sum('idle_gpu_cost') }} as idle_gpu_cost,
        max(currency) as currency
    from usage
    group by all

),

final as (

    select
        *,
        case
            when allocated_gpu_hours > 0 then used_gpu_hours / allocated_gpu_hours
        end as gpu_efficiency
    from aggregated

)

select * from final
