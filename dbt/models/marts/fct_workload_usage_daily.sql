{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook="{{ delete_usage_window('usage_date') }}",
        on_schema_change='append_new_columns',
    )
}}

with

usage as (

    select * from {{ ref('int_workload_usage_daily') }}
    where {{ usage_window_predicate('usage_date') }}

),

workloads as (

    select * from {{ ref('int_workloads_latest') }}

),

gpu_prices as (

    select * from {{ ref('int_gpu_prices') }}

),

resource_prices as (

    select * from {{ ref('int_resource_prices') }}

),

attributed as (

    select
        usage.*,
        -- the keys the reports group by are never null: a workload never seen in a
        -- snapshot, or whose record lacks a department or project, is 'unknown'
        coalesce(workloads.cluster_id, 'unknown') as cluster_id,
        coalesce(workloads.department_id, 'unknown') as department_id,
        workloads.department_name,
        coalesce(workloads.project_id, 'unknown') as project_id,
        workloads.project_name,
        coalesce(workloads.nodepool, 'unknown') as nodepool,
        workloads.submitted_by,
        workloads.workload_type,
        workloads.category
    from usage
    left join workloads using (workload_id)

),

-- The price valid on the usage date; node pools without a price of their own use the
-- 'unknown' row.
priced as (

    select
        attributed.*,
        coalesce(pool_price.price_per_gpu_hour, fallback_price.price_per_gpu_hour)
            as price_per_gpu_hour,
        cpu_price.price_per_unit_hour as price_per_cpu_core_hour,
        memory_price.price_per_unit_hour as price_per_memory_gib_hour,
        coalesce(pool_price.currency, fallback_price.currency) as currency
    from attributed
    left join gpu_prices as pool_price
        on pool_price.nodepool = attributed.nodepool
        and attributed.usage_date >= pool_price.valid_from
        and (pool_price.valid_to is null or attributed.usage_date < pool_price.valid_to)
    left join gpu_prices as fallback_price
        on fallback_price.nodepool = 'unknown'
        and attributed.usage_date >= fallback_price.valid_from
        and (fallback_price.valid_to is null or attributed.usage_date < fallback_price.valid_to)
    left join resource_prices as cpu_price
        on cpu_price.resource = 'cpu_core'
        and attributed.usage_date >= cpu_price.valid_from
        and (cpu_price.valid_to is null or attributed.usage_date < cpu_price.valid_to)
    left join resource_prices as memory_price
        on memory_price.resource = 'memory_gib'
        and attributed.usage_date >= memory_price.valid_from
        and (memory_price.valid_to is null or attributed.usage_date < memory_price.valid_to)

),

-- Costs in DECIMAL: the hours (quantised to DECIMAL(38, 9)) times the DECIMAL prices of the
-- seeds, and the total as the exact sum of the three parts; converted to DOUBLE at the end.
costed as (

    select
        priced.*,
        cast(allocated_gpu_hours as decimal(38, 9)) * price_per_gpu_hour as gpu_cost_exact,
        cast(requested_cpu_core_hours as decimal(38, 9)) * price_per_cpu_core_hour
            as cpu_cost_exact,
        cast(requested_memory_gib_hours as decimal(38, 9)) * price_per_memory_gib_hour
            as memory_cost_exact,
        cast(idle_gpu_hours as decimal(38, 9)) * price_per_gpu_hour as idle_gpu_cost_exact
    from priced

),

final as (

    select
        usage_date,
        workload_id,
        cluster_id,
        department_id,
        department_name,
        project_id,
        project_name,
        nodepool,
        submitted_by,
        workload_type,
        category,
        allocated_gpu_hours,
        used_gpu_hours,
        idle_gpu_hours,
        case
            when allocated_gpu_hours > 0 then used_gpu_hours / allocated_gpu_hours * 100
        end as gpu_utilisation_pct,
        utilisation_sample_coverage,
        requested_cpu_core_hours,
        used_cpu_core_hours,
        requested_memory_gib_hours,
        cast(gpu_cost_exact as double) as gpu_cost,
        cast(cpu_cost_exact as double) as cpu_cost,
        cast(memory_cost_exact as double) as memory_cost,
        cast(gpu_cost_exact + cpu_cost_exact + memory_cost_exact as double) as total_cost,
        cast(idle_gpu_cost_exact as double) as idle_gpu_cost,
        cast(price_per_gpu_hour as double) as price_per_gpu_hour,
        currency
    from costed

)

select * from final
