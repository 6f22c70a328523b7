with

source as (

    select * from {{ source('runai', 'workload_metrics') }}

),

-- A sample loaded twice (a partition re-loaded by another run) counts once.
deduplicated as (

    select *
    from source
    qualify row_number() over (
        partition by usage_date, workload_id, metric_type, labels_json, ts
        order by run_id desc
    ) = 1

),

renamed as (

    select
        usage_date,
        workload_id,
        metric_type,
        labels_json,
        ts as sampled_at,
        value as metric_value,
        step_seconds,
        run_id
    from deduplicated

),

final as (

    select * from renamed

)

select * from final
