{{ config(**incremental_by_day('x_UsageDate')) }}

{#- The FOCUS 1.2 cost and usage dataset (FinOps Open Cost and Usage Specification): one
    Usage charge per workload-day and resource (GPU, CPU, memory), from the daily fact.
    Columns without an honest value here are null, as the specification allows: no invoices
    (internal chargeback), no commitment discounts or capacity reservations, no regions. -#}

{#- The FOCUS column names are case-sensitive: quoted ("BilledCost" in DuckDB). -#}
{%- set q = adapter.quote %}

with

usage as (

    select * from {{ ref('fct_workload_usage_daily') }}
    where {{ usage_window_predicate('usage_date') }}

),

workloads as (

    select workload_id, workload_name from {{ ref('dim_workloads') }}

),

gpu_prices as (

    select price_id, gpu_type from {{ ref('int_gpu_prices') }}

),

-- The GPU type of the price row the fact used: the SKU of the GPU charge.
charges as (

    select
        usage.*,
        workloads.workload_name,
        gpu_prices.gpu_type
    from usage
    left join workloads using (workload_id)
    left join gpu_prices on gpu_prices.price_id = usage.gpu_price_id

),

-- One row per resource charged; quantities in the unit the price is per. The SKU of a GPU
-- charge is the GPU type of the price row used; its price is that row.
resources as (

    select
        'GPU' as resource, 'GPU-Hours' as unit, 'GPU Hours' as meter,
        'gpu-' || {{ regexp_replace_all(
            "lower(coalesce(gpu_type, 'unpriced'))", "'[^a-z0-9]+'", "'-'"
        ) }} as sku_id,
        gpu_price_id as sku_price_id,
        cast(allocated_gpu_hours as decimal(38, 9)) as quantity,
        cast(price_per_gpu_hour as decimal(38, 9)) as unit_price,
        cast(gpu_cost as decimal(38, 9)) as cost,
        *
    from charges
    union all
    select
        'CPU', 'Core-Hours', 'CPU Core Hours', 'cpu-core', cpu_price_id,
        cast(requested_cpu_core_hours as decimal(38, 9)),
        cast(price_per_cpu_core_hour as decimal(38, 9)),
        cast(cpu_cost as decimal(38, 9)),
        *
    from charges
    union all
    select
        'Memory', 'GiB-Hours', 'Memory GiB Hours', 'memory-gib', memory_price_id,
        cast(requested_memory_gib_hours as decimal(38, 9)),
        cast(price_per_memory_gib_hour as decimal(38, 9)),
        cast(memory_cost as decimal(38, 9)),
        *
    from charges

),

final as (

    select
        cast(null as {{ text_type() }}) as {{ q('AvailabilityZone') }},
        cost as {{ q('BilledCost') }},
        {{ sql_string(var('focus_billing_account_id')) }} as {{ q('BillingAccountId') }},
        {{ sql_string(var('focus_billing_account_name')) }} as {{ q('BillingAccountName') }},
        cast(null as {{ text_type() }}) as {{ q('BillingAccountType') }},
        currency as {{ q('BillingCurrency') }},
        cast(date_trunc('month', usage_date) + interval 1 month as {{ timestamptz_type() }})
            as {{ q('BillingPeriodEnd') }},
        cast(date_trunc('month', usage_date) as {{ timestamptz_type() }}) as {{ q('BillingPeriodStart') }},
        cast(null as {{ text_type() }}) as {{ q('CapacityReservationId') }},
        cast(null as {{ text_type() }}) as {{ q('CapacityReservationStatus') }},
        'Usage' as {{ q('ChargeCategory') }},
        cast(null as {{ text_type() }}) as {{ q('ChargeClass') }},
        resource || ' usage of ' || coalesce(workload_name, workload_id) || ' on '
            || {{ iso_date_text('usage_date') }} as {{ q('ChargeDescription') }},
        'Usage-Based' as {{ q('ChargeFrequency') }},
        cast(usage_date + interval 1 day as {{ timestamptz_type() }}) as {{ q('ChargePeriodEnd') }},
        cast(usage_date as {{ timestamptz_type() }}) as {{ q('ChargePeriodStart') }},
        cast(null as {{ text_type() }}) as {{ q('CommitmentDiscountCategory') }},
        cast(null as {{ text_type() }}) as {{ q('CommitmentDiscountId') }},
        cast(null as {{ text_type() }}) as {{ q('CommitmentDiscountName') }},
        cast(null as decimal(38, 9)) as {{ q('CommitmentDiscountQuantity') }},
        cast(null as {{ text_type() }}) as {{ q('CommitmentDiscountStatus') }},
        cast(null as {{ text_type() }}) as {{ q('CommitmentDiscountType') }},
        cast(null as {{ text_type() }}) as {{ q('CommitmentDiscountUnit') }},
        quantity as {{ q('ConsumedQuantity') }},
        unit as {{ q('ConsumedUnit') }},
        cost as {{ q('ContractedCost') }},
        unit_price as {{ q('ContractedUnitPrice') }},
        cost as {{ q('EffectiveCost') }},
        cast(null as {{ text_type() }}) as {{ q('InvoiceId') }},
        {{ sql_string(var('focus_provider_name')) }} as {{ q('InvoiceIssuerName') }},
        cost as {{ q('ListCost') }},
        unit_price as {{ q('ListUnitPrice') }},
        'Standard' as {{ q('PricingCategory') }},
        -- prices are in the billing currency: the pricing-currency columns repeat them
        currency as {{ q('PricingCurrency') }},
        unit_price as {{ q('PricingCurrencyContractedUnitPrice') }},
        cost as {{ q('PricingCurrencyEffectiveCost') }},
        unit_price as {{ q('PricingCurrencyListUnitPrice') }},
        quantity as {{ q('PricingQuantity') }},
        unit as {{ q('PricingUnit') }},
        {{ sql_string(var('focus_provider_name')) }} as {{ q('ProviderName') }},
        {{ sql_string(var('focus_provider_name')) }} as {{ q('PublisherName') }},
        cast(null as {{ text_type() }}) as {{ q('RegionId') }},
        cast(null as {{ text_type() }}) as {{ q('RegionName') }},
        workload_id as {{ q('ResourceId') }},
        coalesce(workload_name, workload_id) as {{ q('ResourceName') }},
        coalesce(workload_type, 'workload') as {{ q('ResourceType') }},
        'AI and Machine Learning' as {{ q('ServiceCategory') }},
        {{ sql_string(var('focus_service_name')) }} as {{ q('ServiceName') }},
        'AI Platforms' as {{ q('ServiceSubcategory') }},
        sku_id as {{ q('SkuId') }},
        meter as {{ q('SkuMeter') }},
        {{ json_object_text([
            ("'x_Resource'", 'resource'), ("'x_NodePool'", 'nodepool')
        ]) }} as {{ q('SkuPriceDetails') }},
        coalesce(sku_price_id, 'unpriced') as {{ q('SkuPriceId') }},
        -- department and project ids share one numbering: the sub-account id names its kind
        'department/' || department_id as {{ q('SubAccountId') }},
        coalesce(department_name, department_id) as {{ q('SubAccountName') }},
        'Department' as {{ q('SubAccountType') }},
        {{ json_object_text([
            ("'runai/project'", 'coalesce(project_name, project_id)'),
            ("'runai/user'", 'submitted_by'),
            ("'runai/nodepool'", 'nodepool'),
            ("'runai/cluster'", 'cluster_id'),
        ], skip_nulls=true) }} as {{ q('Tags') }},
        cluster_id as {{ q('x_ClusterId') }},
        nodepool as {{ q('x_NodePool') }},
        department_id as {{ q('x_DepartmentId') }},
        project_id as {{ q('x_ProjectId') }},
        usage_date as {{ q('x_UsageDate') }}
    from resources
    where quantity > 0 or cost > 0

)

select * from final
