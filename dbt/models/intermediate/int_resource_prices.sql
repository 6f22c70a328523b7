with

prices as (

    select * from {{ ref('resource_prices') }}

),

final as (

    select
        resource || '@' || cast(valid_from as {{ text_type() }}) as price_id,
        resource,
        valid_from,
        lead(valid_from) over (partition by resource order by valid_from) as valid_to,
        usd_per_unit_hour as price_per_unit_hour,
        currency
    from prices

)

select * from final
