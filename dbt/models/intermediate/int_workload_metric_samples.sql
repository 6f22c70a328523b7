{{ config(**incremental_by_day('usage_date', on_schema_change='sync_all_columns')) }}

with

metrics as (

    select * from {{ ref('stg_runai__workload_metrics') }}
    where labels_json is null
      and {{ usage_window_predicate('usage_date') }}

),

-- One row per workload and sample time, one column pair (value, step) per metric type of
-- the var metric_columns (the metric types the pipeline fetches, passed by its dbt runner).
pivoted as (

    select
        usage_date,
        workload_id,
        sampled_at,
        {%- for metric, column in var('metric_columns').items() %}
        max(metric_value) filter (where metric_type = '{{ metric }}') as {{ column }},
        max(step_seconds) filter (where metric_type = '{{ metric }}')
            as {{ column }}_step_seconds{{ ',' if not loop.last }}
        {%- endfor %}
    from metrics
    group by usage_date, workload_id, sampled_at

),

final as (

    select * from pivoted

)

select * from final
