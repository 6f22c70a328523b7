with

prices as (

    select * from {{ ref('gpu_prices') }}

),

final as (

    select
        nodepool,
        gpu_type,
        valid_from,
        lead(valid_from) over (partition by nodepool order by valid_from) as valid_to,
        usd_per_gpu_hour as price_per_gpu_hour,
        currency
    from prices

)

select * from final
