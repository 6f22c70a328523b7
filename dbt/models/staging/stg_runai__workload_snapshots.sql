with

source as (

    select * from {{ source('runai', 'workload_snapshots') }}

),

renamed as (

    select
        {{ workload_state_columns() }},
        'snapshot' as state_source
    from source

),

final as (

    select * from renamed

)

select * from final
