"""The HTML report: one self-contained file for the people who own and pay for the GPUs.

Every figure is read from the serving database's marts (never from the warehouse being
written); charts are inline SVG (:mod:`workloads_etl.warehouse.svg`), so the file opens
offline, without scripts, and can be mailed or archived as it is.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from workloads_etl.settings import DataPaths
from workloads_etl.warehouse import serving, svg

TOP_IDLE = 15


@dataclass
class ReportData:
    start: date
    end: date
    generated_at: datetime
    currency: str
    kpis: dict[str, float]
    charts: dict[str, str] = field(default_factory=dict)
    top_idle: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    chargeback: list[dict[str, Any]] = field(default_factory=list)
    nodepools: list[dict[str, Any]] = field(default_factory=list)


def _records(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def collect(con: duckdb.DuckDBPyConnection, start: date, end: date) -> ReportData:
    """Every figure of the report for the UTC days ``[start, end]``."""
    window = [start, end]
    (kpi,) = _records(
        con,
        """
        select coalesce(sum(total_cost), 0) as total_cost,
               coalesce(sum(idle_gpu_cost), 0) as idle_gpu_cost,
               coalesce(sum(gpu_cost), 0) as gpu_cost,
               coalesce(sum(allocated_gpu_hours), 0) as allocated_gpu_hours,
               coalesce(sum(used_gpu_hours), 0) as used_gpu_hours,
               coalesce(sum(idle_gpu_hours), 0) as idle_gpu_hours,
               count(distinct workload_id) as workloads,
               coalesce(any_value(currency), '') as currency
        from marts.fct_workload_usage_daily where usage_date between ? and ?
        """,
        window,
    )
    currency = str(kpi.pop("currency"))
    kpis = {k: float(v) for k, v in kpi.items()}
    kpis["utilisation_pct"] = (
        100 * kpis["used_gpu_hours"] / kpis["allocated_gpu_hours"]
        if kpis["allocated_gpu_hours"]
        else 0.0
    )
    data = ReportData(start, end, datetime.now(UTC), currency, kpis)
    _department_charts(con, data)
    _nodepool_charts(con, data)
    data.top_idle = _records(
        con,
        f"""
        select f.workload_id, any_value(w.workload_name) as workload_name,
               any_value(f.submitted_by) as submitted_by,
               any_value(coalesce(f.department_name, f.department_id)) as department,
               any_value(coalesce(f.project_name, f.project_id)) as project,
               any_value(f.nodepool) as nodepool,
               sum(f.allocated_gpu_hours) as allocated_gpu_hours,
               sum(f.idle_gpu_hours) as idle_gpu_hours,
               100 * sum(f.used_gpu_hours) / nullif(sum(f.allocated_gpu_hours), 0)
                   as utilisation_pct,
               sum(f.idle_gpu_cost) as idle_gpu_cost
        from marts.fct_workload_usage_daily as f
        left join marts.dim_workloads as w using (workload_id)
        where f.usage_date between ? and ?
        group by f.workload_id
        having sum(f.idle_gpu_hours) > 0
        order by idle_gpu_cost desc, idle_gpu_hours desc, f.workload_id
        limit {TOP_IDLE}
        """,  # noqa: S608 - TOP_IDLE is a constant
        window,
    )
    data.pending = _records(
        con,
        """
        select coalesce(department_name, department_id) as department,
               coalesce(project_name, project_id) as project, workloads,
               p50_pending_seconds, p95_pending_seconds, max_pending_seconds
        from marts.rpt_pending_time_by_project
        order by p95_pending_seconds desc nulls last, department, project
        """,
        [],
    )
    data.chargeback = _records(
        con,
        """
        select usage_month, coalesce(department_name, department_id) as department,
               coalesce(project_name, project_id) as project, allocated_gpu_hours,
               100 * gpu_efficiency as utilisation_pct, gpu_cost, cpu_cost, memory_cost,
               total_cost, idle_gpu_cost
        from marts.rpt_chargeback_monthly
        where usage_month between date_trunc('month', ?::date) and ?
        order by usage_month, total_cost desc, department, project
        """,
        window,
    )
    return data


def _department_charts(con: duckdb.DuckDBPyConnection, data: ReportData) -> None:
    rows = _records(
        con,
        """
        select usage_date, coalesce(department_name, department_id) as department,
               sum(total_cost) as total_cost, sum(idle_gpu_cost) as idle_gpu_cost
        from marts.rpt_utilisation_daily_by_department
        where usage_date between ? and ?
        group by all order by usage_date, department
        """,
        [data.start, data.end],
    )
    days = sorted({r["usage_date"] for r in rows})
    departments = sorted({r["department"] for r in rows})
    cost: dict[str, list[float]] = {d: [0.0] * len(days) for d in departments}
    idle: dict[str, list[float]] = {d: [0.0] * len(days) for d in departments}
    index = {d: i for i, d in enumerate(days)}
    for r in rows:
        cost[r["department"]][index[r["usage_date"]]] = float(r["total_cost"])
        idle[r["department"]][index[r["usage_date"]]] = float(r["idle_gpu_cost"])
    labels = [d.strftime("%m-%d") for d in days]
    unit = f" {data.currency}"
    data.charts["cost_by_department"] = svg.bar_chart(
        "Cost per department per day", labels, cost, y_label=f"cost ({data.currency})", unit=unit
    )
    data.charts["idle_cost_by_department"] = svg.bar_chart(
        "Idle GPU cost per department per day",
        labels,
        idle,
        y_label=f"idle cost ({data.currency})",
        unit=unit,
    )


def _nodepool_charts(con: duckdb.DuckDBPyConnection, data: ReportData) -> None:
    rows = _records(
        con,
        """
        select hour_start, coalesce(cluster_name, cluster_id) || ' / ' || nodepool as pool,
               allocated_gpus, capacity_gpus
        from marts.rpt_nodepool_allocation_hourly
        where usage_date between ? and ?
        order by pool, hour_start
        """,
        [data.start, data.end],
    )
    by_pool: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_pool[r["pool"]].append(r)
    for pool, hours in sorted(by_pool.items()):
        one_day = data.start == data.end
        labels = [h["hour_start"].strftime("%H:00" if one_day else "%m-%d %H:00") for h in hours]
        capacity = hours[0]["capacity_gpus"]
        series: dict[str, list[float | None]] = {
            "allocated GPUs": [float(h["allocated_gpus"]) for h in hours]
        }
        if capacity is not None:
            series["capacity"] = [float(capacity)] * len(hours)
        chart = svg.line_chart(
            f"GPUs allocated per hour, {pool}",
            labels,
            series,
            y_label="GPUs",
            dashed=("capacity",),
            frame=svg.Frame(height=220),
        )
        data.nodepools.append({"pool": pool, "capacity": capacity, "chart": chart})
    util = _records(
        con,
        """
        select coalesce(b.cluster_name, a.cluster_id) || ' / ' || a.nodepool as pool,
               100 * sum(a.used_gpu_hours) / nullif(sum(a.allocated_gpu_hours), 0)
                   as utilisation_pct,
               sum(a.allocated_gpu_hours) as allocated_gpu_hours
        from marts.rpt_utilisation_daily_by_nodepool as a
        left join reference.nodepool_capacity as b
            on b.cluster_id = a.cluster_id and b.nodepool = a.nodepool
        where a.usage_date between ? and ?
        group by all order by pool
        """,
        [data.start, data.end],
    )
    data.charts["utilisation_by_nodepool"] = svg.bar_chart(
        "GPU utilisation per node pool",
        [u["pool"] for u in util],
        {"utilisation %": [float(u["utilisation_pct"] or 0.0) for u in util]},
        y_label="utilisation (%)",
        unit=" %",
    )


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("workloads_etl.warehouse", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )
    env.filters["money"] = lambda v: "" if v is None else f"{float(v):,.2f}"
    env.filters["hours"] = lambda v: "" if v is None else f"{float(v):,.1f}"
    env.filters["pct"] = lambda v: "-" if v is None else f"{float(v):.1f}"
    env.filters["duration"] = _duration
    return env


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "-"
    s = float(seconds)
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.0f} min"
    if s < 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def render(data: ReportData) -> str:
    template = _environment().get_template("report.html.j2")
    charts = {k: Markup(v) for k, v in data.charts.items()}  # noqa: S704 - escaped by svg.py
    pools = [{**p, "chart": Markup(p["chart"])} for p in data.nodepools]  # noqa: S704
    return template.render(data=data, charts=charts, nodepools=pools)


def write_report(paths: DataPaths, start: date, end: date, output: Path | None = None) -> Path:
    """Build the report for ``[start, end]`` from the serving database; returns its path
    (default ``<data>/serving/report-<start>_<end>.html``), written atomically."""
    if end < start:
        raise ValueError(f"the report's end {end} is before its start {start}")
    with serving.connect(paths) as con:
        data = collect(con, start, end)
    html = render(data)
    target = output or paths.serving / f"report-{start}_{end}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, target)
    return target
