{{ config(**incremental_by_day('usage_date')) }}

with

usage as (

    select * from {{ ref('fct_workload_usage_daily') }}
    where {{ usage_window_predicate('usage_date') }}

),

-- The counters are read from one day before the window, so the first increment of a day
-- is measured from the last sample of the day before.
counters as (

    select
        usage_date,
        workload_id,
        sampled_at,
        nim_request_success_total,
        nim_request_failure_total,
        lag(nim_request_success_total) over (
            partition by workload_id order by sampled_at
        ) as previous_success_total,
        lag(nim_request_failure_total) over (
            partition by workload_id order by sampled_at
        ) as previous_failure_total
    from {{ ref('int_workload_metric_samples') }}
    where {{ usage_window_predicate_with_lookback('usage_date') }}
      and (nim_request_success_total is not null or nim_request_failure_total is not null)

),

-- Requests between two samples: the counter's increase; a counter that went down was
-- restarted (a new pod), so its whole value counts; the first sample counts from zero.
increments as (

    select
        usage_date,
        workload_id,
        case
            when previous_success_total is null then nim_request_success_total
            when nim_request_success_total >= previous_success_total
                then nim_request_success_total - previous_success_total
            else nim_request_success_total
        end as successes,
        case
            when previous_failure_total is null then nim_request_failure_total
            when nim_request_failure_total >= previous_failure_total
                then nim_request_failure_total - previous_failure_total
            else nim_request_failure_total
        end as failures
    from counters

),

requests as (

    select
        usage_date,
        workload_id,
        {{ exact_sum('successes') }} as successful_requests,
        {{ exact_sum('failures') }} as failed_requests
    from increments
    where {{ usage_window_predicate('usage_date') }}
    group by usage_date, workload_id

),

-- Latency per minute: the control plane's percentile series where it sends them (labels
-- {"percentile": "p50"}, ...), else the plain per-minute latency.
percentile_samples as (

    select
        usage_date,
        workload_id,
        case metric_type
            when 'NIM_TIME_TO_FIRST_TOKEN_SECONDS_PERCENTILES' then 'ttft'
            else 'e2e'
        end as latency,
        {{ json_extract_text('labels_json', '$.percentile') }} as percentile,
        metric_value
    from {{ ref('stg_runai__workload_metrics') }}
    where metric_type in (
            'NIM_TIME_TO_FIRST_TOKEN_SECONDS_PERCENTILES',
            'NIM_E2E_REQUEST_LATENCY_SECONDS_PERCENTILES'
        )
      and {{ usage_window_predicate('usage_date') }}

),

percentiles as (

    select
        usage_date,
        workload_id,
        {{ quantile_cont('metric_value', 0.5) }} filter (
            where latency = 'ttft' and percentile = 'p50'
        ) as ttft_p50_reported,
        {{ quantile_cont('metric_value', 0.5) }} filter (
            where latency = 'ttft' and percentile = 'p95'
        ) as ttft_p95_reported,
        {{ quantile_cont('metric_value', 0.5) }} filter (
            where latency = 'e2e' and percentile = 'p50'
        ) as e2e_p50_reported,
        {{ quantile_cont('metric_value', 0.5) }} filter (
            where latency = 'e2e' and percentile = 'p95'
        ) as e2e_p95_reported
    from percentile_samples
    group by usage_date, workload_id

),

latencies as (

    select
        usage_date,
        workload_id,
        {{ quantile_cont('nim_ttft_seconds', 0.5) }} as ttft_p50_minutes,
        {{ quantile_cont('nim_ttft_seconds', 0.95) }} as ttft_p95_minutes,
        {{ quantile_cont('nim_e2e_latency_seconds', 0.5) }} as e2e_p50_minutes,
        {{ quantile_cont('nim_e2e_latency_seconds', 0.95) }} as e2e_p95_minutes
    from {{ ref('int_workload_metric_samples') }}
    where {{ usage_window_predicate('usage_date') }}
      and (nim_ttft_seconds is not null or nim_e2e_latency_seconds is not null)
    group by usage_date, workload_id

),

final as (

    select
        usage.usage_date,
        usage.workload_id,
        usage.cluster_id,
        usage.department_id,
        usage.department_name,
        usage.project_id,
        usage.project_name,
        usage.nodepool,
        usage.submitted_by,
        coalesce(requests.successful_requests, 0) + coalesce(requests.failed_requests, 0)
            as requests_served,
        coalesce(requests.successful_requests, 0) as successful_requests,
        coalesce(requests.failed_requests, 0) as failed_requests,
        coalesce(percentiles.ttft_p50_reported, latencies.ttft_p50_minutes)
            as ttft_p50_seconds,
        coalesce(percentiles.ttft_p95_reported, latencies.ttft_p95_minutes)
            as ttft_p95_seconds,
        coalesce(percentiles.e2e_p50_reported, latencies.e2e_p50_minutes)
            as e2e_latency_p50_seconds,
        coalesce(percentiles.e2e_p95_reported, latencies.e2e_p95_minutes)
            as e2e_latency_p95_seconds,
        case
            when percentiles.ttft_p95_reported is not null then 'reported_percentiles'
            when latencies.ttft_p95_minutes is not null then 'per_minute_latency'
        end as latency_p95_source,
        usage.allocated_gpu_hours,
        usage.gpu_utilisation_pct,
        usage.gpu_cost,
        usage.total_cost,
        case
            when coalesce(requests.successful_requests, 0) > 0
                then usage.total_cost / requests.successful_requests * 1000
        end as cost_per_1000_successful_requests,
        usage.currency
    from usage
    left join requests using (usage_date, workload_id)
    left join percentiles using (usage_date, workload_id)
    left join latencies using (usage_date, workload_id)
    where lower(usage.workload_type) = 'inference'
       or requests.workload_id is not null

)

select * from final
