with

source as (

    select * from {{ source('runai', '_loads') }}

),

final as (

    select * from source

)

select * from final
