{#- Daily GPU utilisation of fct_workload_usage_daily rolled up to one grain. `keys` are the
    grouping columns, `labels` descriptive columns taken per group (max). Measures are summed
    with exact_sum, so reruns give bit-identical values. The models are incremental like the
    fact: an incremental run replaces the days of its window (pre-hook delete_usage_window). -#}
{% macro utilisation_rollup(keys, labels=[]) %}
with

usage as (

    select * from {{ ref('fct_workload_usage_daily') }}
    where {{ usage_window_predicate('usage_date') }}

),

aggregated as (

    select
        usage_date,
        {%- for key in keys %}
        {{ key }},
        {%- endfor %}
        {%- for label in labels %}
        max({{ label }}) as {{ label }},
        {%- endfor %}
        count(distinct workload_id) as workloads,
        {{ exact_sum('allocated_gpu_hours') }} as allocated_gpu_hours,
        {{ exact_sum('used_gpu_hours') }} as used_gpu_hours,
        {{ exact_sum('idle_gpu_hours') }} as idle_gpu_hours,
        {{ exact_sum('gpu_cost') }} as gpu_cost,
        {{ exact_sum('idle_gpu_cost') }} as idle_gpu_cost,
        {{ exact_sum('total_cost') }} as total_cost,
        max(currency) as currency
    from usage
    group by usage_date{% for key in keys %}, {{ key }}{% endfor %}

),

final as (

    select
        *,
        case
            when allocated_gpu_hours > 0 then used_gpu_hours / allocated_gpu_hours * 100
        end as gpu_utilisation_pct,
        case
            when allocated_gpu_hours > 0 then idle_gpu_hours / allocated_gpu_hours * 100
        end as idle_gpu_share_pct
    from aggregated

)

select * from final
{% endmacro %}
