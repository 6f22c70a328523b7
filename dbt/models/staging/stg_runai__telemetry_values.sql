with

source as (

    select * from {{ source('runai', 'telemetry') }}

),

renamed as (

    select
        snapshot_date,
        fetched_at,
        run_id,
        telemetry_type,
        group_by,
        {{ adapter.quote('timestamp') }} as measured_at,
        value as telemetry_value,
        group1_key,
        group1_value,
        group1_name,
        group2_key,
        group2_value,
        group2_name
    from source

),

final as (

    select * from renamed

)

select * from final
