with

prices as (

    select * from {{ ref('gpu_prices') }}

),

final as (

    select
        cluster_id || '/' || nodepool || '@' || cast(valid_from as {{ text_type() }}) as price_id,
        cluster_id,
        cluster_name,
        nodepool,
        gpu_type,
        valid_from,
        lead(valid_from) over (partition by cluster_id, nodepool order by valid_from)
            as valid_to,
        usd_per_gpu_hour as price_per_gpu_hour,
        currency
    from prices

)

select * from final
