with

source as (

    select * from {{ source('runai', 'workload_metrics') }}

),

-- No de-duplication: the loader replaces whole usage_date partitions, so a sample cannot be
-- loaded twice; the unique_combination test of this model guards that.
renamed as (

    select
        usage_date,
        workload_id,
        metric_type,
        labels_json,
        ts as sampled_at,
        value as metric_value,
        step_seconds,
        run_id,
        fetched_at
    from source

),

final as (

    select * from renamed

)

select * from final
