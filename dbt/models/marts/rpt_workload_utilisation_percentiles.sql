{{ config(**incremental_by_day('usage_date')) }}

with

samples as (

    select * from {{ ref('int_workload_metric_samples') }}
    where {{ usage_window_predicate('usage_date') }}

),

allocated_samples as (

    select *
    from samples
    where gpu_allocation > 0
      and gpu_utilisation_pct is not null

),

final as (

    select
        usage_date,
        workload_id,
        count(*) as allocated_samples,
        {{ quantile_cont('gpu_utilisation_pct', 0.5) }} as p50_gpu_utilisation_pct,
        {{ quantile_cont('gpu_utilisation_pct', 0.95) }} as p95_gpu_utilisation_pct,
        min(gpu_utilisation_pct) as min_gpu_utilisation_pct,
        max(gpu_utilisation_pct) as max_gpu_utilisation_pct,
        {{ exact_avg('gpu_utilisation_pct') }} as avg_gpu_utilisation_pct
    from allocated_samples
    group by usage_date, workload_id

)

select * from final
