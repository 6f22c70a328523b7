{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='usage_date',
        on_schema_change='sync_all_columns',
    )
}}

{%- set idle_pct = var('idle_gpu_utilisation_pct') %}

with

samples as (

    select * from {{ ref('int_workload_metric_samples') }}
    where {{ usage_window_predicate('usage_date') }}

),

-- Each sample stands for [sampled_at, sampled_at + step): value * step / 3600 is its
-- contribution in unit-hours.
sample_hours as (

    select
        usage_date,
        workload_id,
        gpu_allocation,
        gpu_utilisation_pct,
        gpu_allocation * gpu_allocation_step_seconds / 3600.0 as allocated_gpu_hours,
        gpu_allocation * gpu_utilisation_pct / 100.0 * gpu_allocation_step_seconds / 3600.0
            as used_gpu_hours,
        case
            when gpu_utilisation_pct < {{ idle_pct }}
                then gpu_allocation * gpu_allocation_step_seconds / 3600.0
            else 0
        end as idle_gpu_hours,
        case
            when gpu_utilisation_pct is not null
                then gpu_allocation * gpu_allocation_step_seconds / 3600.0
        end as allocated_gpu_hours_with_utilisation,
        cpu_request_cores * cpu_request_cores_step_seconds / 3600.0 as requested_cpu_core_hours,
        cpu_usage_cores * cpu_usage_cores_step_seconds / 3600.0 as used_cpu_core_hours,
        cpu_memory_request_bytes / 1073741824.0 * cpu_memory_request_bytes_step_seconds / 3600.0
            as requested_memory_gib_hours,
        cpu_memory_usage_bytes / 1073741824.0 * cpu_memory_usage_bytes_step_seconds / 3600.0
            as used_memory_gib_hours
    from samples

),

aggregated as (

    select
        usage_date,
        workload_id,
        count(gpu_allocation) as gpu_allocation_samples,
        count(*) filter (where gpu_allocation > 0) as allocated_samples,
        count(*) filter (
            where gpu_allocation > 0 and gpu_utilisation_pct is not null
        ) as allocated_samples_with_utilisation,
        coalesce(sum(allocated_gpu_hours), 0) as allocated_gpu_hours,
        coalesce(sum(used_gpu_hours), 0) as used_gpu_hours,
        coalesce(sum(idle_gpu_hours), 0) as idle_gpu_hours,
        coalesce(sum(allocated_gpu_hours_with_utilisation), 0)
            as allocated_gpu_hours_with_utilisation,
        coalesce(sum(requested_cpu_core_hours), 0) as requested_cpu_core_hours,
        coalesce(sum(used_cpu_core_hours), 0) as used_cpu_core_hours,
        coalesce(sum(requested_memory_gib_hours), 0) as requested_memory_gib_hours,
        coalesce(sum(used_memory_gib_hours), 0) as used_memory_gib_hours
    from sample_hours
    group by usage_date, workload_id

),

final as (

    select
        *,
        case
            when allocated_gpu_hours > 0
                then allocated_gpu_hours_with_utilisation / allocated_gpu_hours
        end as utilisation_sample_coverage
    from aggregated

)

select * from final
