"""Report queries over the serving marts, for the command line's summaries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from workloads_etl.settings import DataPaths
from workloads_etl.warehouse import serving


@dataclass(frozen=True)
class DepartmentUsage:
    department: str
    allocated_gpu_hours: float
    used_gpu_hours: float
    idle_gpu_hours: float
    utilisation_pct: float | None
    cost: float
    idle_cost: float
    currency: str


def usage_by_department(paths: DataPaths, start: date, end: date) -> list[DepartmentUsage]:
    """GPU-hours, utilisation and cost per department over ``[start, end]``, costliest first."""
    with serving.connect(paths) as con:
        rows = con.execute(
            """
            select coalesce(department_name, '(none)'),
                   coalesce(sum(allocated_gpu_hours), 0), coalesce(sum(used_gpu_hours), 0),
                   coalesce(sum(idle_gpu_hours), 0),
                   100 * sum(used_gpu_hours) / nullif(sum(allocated_gpu_hours), 0),
                   coalesce(sum(total_cost), 0), coalesce(sum(idle_gpu_cost), 0),
                   coalesce(any_value(currency), '')
            from marts.fct_workload_usage_daily
            where usage_date between ? and ?
            group by all order by 6 desc, 1
            """,
            [start, end],
        ).fetchall()
    return [DepartmentUsage(*row) for row in rows]
