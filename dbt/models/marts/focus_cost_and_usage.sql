{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook="{{ delete_usage_window('x_UsageDate') }}",
        on_schema_change='append_new_columns',
    )
}}

{#- The FOCUS 1.2 cost and usage dataset (FinOps Open Cost and Usage Specification): one
    Usage charge per workload-day and resource (GPU, CPU, memory), from the daily fact.
    Columns without an honest value here are null, as the specification allows: no invoices
    (internal chargeback), no commitment discounts or capacity reservations, no regions. -#}

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
        'gpu-' || regexp_replace(lower(coalesce(gpu_type, 'unpriced')), '[^a-z0-9]+', '-', 'g')
            as sku_id,
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
        cast(null as varchar) as "AvailabilityZone",
        cost as "BilledCost",
        {{ sql_string(var('focus_billing_account_id')) }} as "BillingAccountId",
        {{ sql_string(var('focus_billing_account_name')) }} as "BillingAccountName",
        cast(null as varchar) as "BillingAccountType",
        currency as "BillingCurrency",
        cast(date_trunc('month', usage_date) + interval 1 month as timestamptz)
            as "BillingPeriodEnd",
        cast(date_trunc('month', usage_date) as timestamptz) as "BillingPeriodStart",
        cast(null as varchar) as "CapacityReservationId",
        cast(null as varchar) as "CapacityReservationStatus",
        'Usage' as "ChargeCategory",
        cast(null as varchar) as "ChargeClass",
        resource || ' usage of ' || coalesce(workload_name, workload_id) || ' on '
            || strftime(usage_date, '%Y-%m-%d') as "ChargeDescription",
        'Usage-Based' as "ChargeFrequency",
        cast(usage_date + interval 1 day as timestamptz) as "ChargePeriodEnd",
        cast(usage_date as timestamptz) as "ChargePeriodStart",
        cast(null as varchar) as "CommitmentDiscountCategory",
        cast(null as varchar) as "CommitmentDiscountId",
        cast(null as varchar) as "CommitmentDiscountName",
        cast(null as decimal(38, 9)) as "CommitmentDiscountQuantity",
        cast(null as varchar) as "CommitmentDiscountStatus",
        cast(null as varchar) as "CommitmentDiscountType",
        cast(null as varchar) as "CommitmentDiscountUnit",
        quantity as "ConsumedQuantity",
        unit as "ConsumedUnit",
        cost as "ContractedCost",
        unit_price as "ContractedUnitPrice",
        cost as "EffectiveCost",
        cast(null as varchar) as "InvoiceId",
        {{ sql_string(var('focus_provider_name')) }} as "InvoiceIssuerName",
        cost as "ListCost",
        unit_price as "ListUnitPrice",
        'Standard' as "PricingCategory",
        -- prices are in the billing currency: the pricing-currency columns repeat them
        currency as "PricingCurrency",
        unit_price as "PricingCurrencyContractedUnitPrice",
        cost as "PricingCurrencyEffectiveCost",
        unit_price as "PricingCurrencyListUnitPrice",
        quantity as "PricingQuantity",
        unit as "PricingUnit",
        {{ sql_string(var('focus_provider_name')) }} as "ProviderName",
        {{ sql_string(var('focus_provider_name')) }} as "PublisherName",
        cast(null as varchar) as "RegionId",
        cast(null as varchar) as "RegionName",
        workload_id as "ResourceId",
        coalesce(workload_name, workload_id) as "ResourceName",
        coalesce(workload_type, 'workload') as "ResourceType",
        'AI and Machine Learning' as "ServiceCategory",
        {{ sql_string(var('focus_service_name')) }} as "ServiceName",
        'AI Platforms' as "ServiceSubcategory",
        sku_id as "SkuId",
        meter as "SkuMeter",
        to_json(map_from_entries([
            ('x_Resource', resource), ('x_NodePool', nodepool)
        ]))::varchar as "SkuPriceDetails",
        coalesce(sku_price_id, 'unpriced') as "SkuPriceId",
        -- department and project ids share one numbering: the sub-account id names its kind
        'department/' || department_id as "SubAccountId",
        coalesce(department_name, department_id) as "SubAccountName",
        'Department' as "SubAccountType",
        to_json(map_from_entries(list_filter([
            ('runai/project', coalesce(project_name, project_id)),
            ('runai/user', submitted_by),
            ('runai/nodepool', nodepool),
            ('runai/cluster', cluster_id)
        ], lambda tag: tag[2] is not null)))::varchar as "Tags",
        cluster_id as "x_ClusterId",
        nodepool as "x_NodePool",
        department_id as "x_DepartmentId",
        project_id as "x_ProjectId",
        usage_date as "x_UsageDate"
    from resources
    where quantity > 0 or cost > 0

)

select * from final
