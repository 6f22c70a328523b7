with

workloads as (

    select * from {{ ref('dim_workloads') }}

),

final as (

    select
        coalesce(cluster_id, 'unknown') as cluster_id,
        coalesce(department_id, 'unknown') as department_id,
        coalesce(project_id, 'unknown') as project_id,
        max(department_name) as department_name,
        max(project_name) as project_name,
        count(*) as workloads,
        count(total_pending_time_seconds) as workloads_with_pending_time,
        count(*) filter (where total_pending_time_seconds < 60) as pending_under_1m,
        count(*) filter (
            where total_pending_time_seconds >= 60 and total_pending_time_seconds < 300
        ) as pending_1m_to_5m,
        count(*) filter (
            where total_pending_time_seconds >= 300 and total_pending_time_seconds < 1800
        ) as pending_5m_to_30m,
        count(*) filter (
            where total_pending_time_seconds >= 1800 and total_pending_time_seconds < 7200
        ) as pending_30m_to_2h,
        count(*) filter (where total_pending_time_seconds >= 7200) as pending_2h_or_more,
        {{ quantile_cont('total_pending_time_seconds', 0.5) }} as p50_pending_seconds,
        {{ quantile_cont('total_pending_time_seconds', 0.95) }} as p95_pending_seconds,
        avg(total_pending_time_seconds) as avg_pending_seconds,
        max(total_pending_time_seconds) as max_pending_seconds
    from workloads
    group by all

)

select * from final
