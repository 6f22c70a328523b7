with

source as (

    select * from {{ source('runai', 'quarantine') }}

),

renamed as (

    select
        dataset,
        quarantine_date,
        reason,
        raw_record,
        run_id,
        quarantined_at
    from source

),

final as (

    select * from renamed

)

select * from final
