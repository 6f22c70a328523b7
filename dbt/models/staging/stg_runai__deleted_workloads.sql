with

source as (

    select * from {{ source('runai', 'deleted_workloads') }}

),

renamed as (

    select
        {{ workload_state_columns() }},
        'deleted_list' as state_source
    from source

),

final as (

    select * from renamed

)

select * from final
