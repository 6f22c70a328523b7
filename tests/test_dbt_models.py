"""The dbt marts on a small hand-made warehouse whose report values are computed by hand.

The warehouse holds two days, 2026-11-14 and 2026-11-15 (the GPU prices of prod-east's a100 and
h100-80gb drop on 2026-11-15), metric samples every 900 s:

- w-a100 (prod-east, research/vision, a100): 2 GPUs all day both days, utilisation 50 %,
  8 CPU cores and 32 GiB requested. Per day 48 GPU-h allocated, 24 used, 0 idle.
- w-h100 (prod-east, research/nlp, h100-80gb), 2026-11-15 only, a partial day with a
  fractional GPU: pending 10:00-12:00 (allocation 0, no pod running: no CPU or memory is
  charged), then 0.5 GPU 12:00-18:00 with
  utilisation 0 % (12-14), 80 % (14-17) and no utilisation samples (17-18).
- w-l40s (prod-east, platform/infra, l40s-48gb): 1 GPU at 0.5 % utilisation (idle), deleted
  at 2026-11-15 06:00, before the nightly fetch of 2026-11-15: it is only in that day's
  deleted list, and in the 2026-11-14 snapshot.
- w-t4 (research-west, west-lab/queue, pending in t4-16gb): allocation 0 all of 2026-11-15.
- w-unknown (research-west, west-lab/queue, no node pool): 1 GPU at 100 % 00:00-01:00 on
  2026-11-14, priced with the 'unknown' fallback.
- w-orphan (research-west, no department or project in its record, no node pool): 1 GPU
  02:00-03:00 on 2026-11-14, utilisation samples 100, 100.3, 99.7 and 100 % (the control plane
  reports slightly above 100 at times): 1 GPU-hour used exactly.

Telemetry (GPU_ALLOCATION by ClusterId and CurrentNodepools) is fetched once per run at the
run's snapshot time, 01:00 the next morning: the fetch of the 2026-11-14 run falls in a loaded
hour (2026-11-15 01:00), the one of the 2026-11-15 run after the last loaded day.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from workloads_etl.lake.datasets import DATASETS
from workloads_etl.lake.metric_types import metric_columns
from workloads_etl.settings import DataPaths
from workloads_etl.warehouse.dbt import (
    DUCKDB_THREADS,
    PROFILE,
    TARGET,
    WINDOW_TABLE,
    DbtRunError,
    dbt_project_dir,
    dbt_vars,
    dbt_vars_json,
    invocation_args,
    log_dir,
    profile_text,
    run_dbt,
    target_dir,
    usage_window,
    write_window,
)

# The runner in this process (no Python start, no dbt import: about 5 s a call); the fixture
# `built` and the failure test run dbt in a process of its own, as the pipeline does.
dbt_here = partial(run_dbt, in_process=True)

STEP = 900
GIB = float(2**30)
PROD_EAST = "7c1f3a52-6a1e-4c4f-9f3e-2b8f0d9e1a01"
RESEARCH_WEST = "0b9d2e61-3c7a-4e58-8d2f-5a6b7c8d9e02"
DAY1 = date(2026, 11, 14)
DAY2 = date(2026, 11, 15)
ABS = 1e-9


def _ts(day: date, hour: float) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hour)


SNAPSHOT_AT = {DAY1: _ts(DAY1, 25), DAY2: _ts(DAY2, 25)}  # 01:00 the next morning

Value = float | None | Callable[[datetime], float | None]


def _samples(
    workload_id: str, start: datetime, end: datetime, values: dict[str, Value]
) -> list[dict[str, Any]]:
    """Long-format metric rows every STEP seconds in [start, end)."""
    rows: list[dict[str, Any]] = []
    t = start
    while t < end:
        for metric, value in values.items():
            v = value(t) if callable(value) else value
            if v is None:
                continue
            rows.append(
                {
                    "usage_date": t.date(),
                    "workload_id": workload_id,
                    "metric_type": metric,
                    "labels_json": None,
                    "ts": t,
                    "value": float(v),
                    "step_seconds": STEP,
                    "run_id": f"run-{t.date().isoformat()}",
                }
            )
        t += timedelta(seconds=STEP)
    return rows


def _h100_utilisation(t: datetime) -> float | None:
    hour = t.hour + t.minute / 60
    if hour < 14:
        return 0.0
    if hour < 17:
        return 80.0
    return None  # no utilisation samples 17:00-18:00


def metric_rows(a100_utilisation: dict[date, float]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for day in (DAY1, DAY2):
        rows += _samples(
            "w-a100",
            _ts(day, 0),
            _ts(day, 24),
            {
                "GPU_ALLOCATION": 2,
                "GPU_UTILIZATION": a100_utilisation[day],
                "CPU_REQUEST_CORES": 8,
                "CPU_USAGE_CORES": 4,
                "CPU_MEMORY_REQUEST_BYTES": 32 * GIB,
                "CPU_MEMORY_USAGE_BYTES": 16 * GIB,
            },
        )
    rows += _samples(
        "w-h100",
        _ts(DAY2, 10),
        _ts(DAY2, 18),
        {
            "GPU_ALLOCATION": lambda t: 0.0 if t.hour < 12 else 0.5,
            "GPU_UTILIZATION": _h100_utilisation,
            "POD_COUNT": 1,
            "RUNNING_POD_COUNT": lambda t: 0.0 if t.hour < 12 else 1.0,
            "CPU_REQUEST_CORES": 2,
            "CPU_MEMORY_REQUEST_BYTES": 16 * GIB,
        },
    )
    rows += _samples(
        "w-l40s",
        _ts(DAY1, 0),
        _ts(DAY2, 6),
        {"GPU_ALLOCATION": 1, "GPU_UTILIZATION": 0.5, "CPU_REQUEST_CORES": 4},
    )
    rows += _samples(
        "w-t4", _ts(DAY2, 0), _ts(DAY2, 24), {"GPU_ALLOCATION": 0, "GPU_UTILIZATION": 0}
    )
    rows += _samples(
        "w-unknown", _ts(DAY1, 0), _ts(DAY1, 1), {"GPU_ALLOCATION": 1, "GPU_UTILIZATION": 100}
    )
    orphan_utilisation = iter([100.0, 100.3, 99.7, 100.0])
    rows += _samples(
        "w-orphan",
        _ts(DAY1, 2),
        _ts(DAY1, 3),
        {"GPU_ALLOCATION": 1, "GPU_UTILIZATION": lambda _t: next(orphan_utilisation)},
    )
    return rows


def _workload(day: date, workload_id: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "snapshot_date": day,
        "snapshot_at": SNAPSHOT_AT[day],
        "run_id": f"run-{day.isoformat()}",
        "workload_id": workload_id,
        "name": workload_id.removeprefix("w-") + "-job",
        "type": "Training",
        "category": "Train",
        "phase": "Running",
        "cluster_id": PROD_EAST,
        "created_at": _ts(DAY1, -1),
        "updated_at": SNAPSHOT_AT[day] - timedelta(hours=2),
        "total_pending_time_seconds": 30,
        "total_running_time_seconds": 3600,
    }
    base.update(fields)
    return base


VISION = {"department_id": "1", "department_name": "research", "project_id": "11"}
NLP = {"department_id": "1", "department_name": "research", "project_id": "12"}
INFRA = {"department_id": "2", "department_name": "platform", "project_id": "21"}
QUEUE = {
    "cluster_id": RESEARCH_WEST,
    "department_id": "3",
    "department_name": "west-lab",
    "project_id": "31",
    "project_name": "queue",
}


def snapshot_rows() -> list[dict[str, Any]]:
    a100 = {
        **VISION,
        "project_name": "vision",
        "current_node_pools": ["a100"],
        "allocated_gpu": 2.0,
    }
    return [
        _workload(DAY1, "w-a100", **a100, requested_node_pools=["a100"]),
        # renamed project on the second day: the latest state wins
        _workload(DAY2, "w-a100", **{**a100, "project_name": "vision-2"}),
        _workload(
            DAY2,
            "w-h100",
            **NLP,
            project_name="nlp",
            current_node_pools=["h100-80gb"],
            requested_node_pools=["h100-80gb", "a100"],
            total_pending_time_seconds=7200,
            allocated_gpu=0.5,
        ),
        _workload(
            DAY1,
            "w-l40s",
            **INFRA,
            project_name="infra",
            current_node_pools=["l40s-48gb"],
            total_pending_time_seconds=120,
            allocated_gpu=1.0,
        ),
        # no department or project in the record
        _workload(DAY1, "w-orphan", cluster_id=RESEARCH_WEST, phase="Completed"),
        _workload(
            DAY1,
            "w-unknown",
            **QUEUE,
            phase="Completed",
            submitted_by="alice",
            total_pending_time_seconds=None,
        ),
        _workload(
            DAY2,
            "w-unknown",
            **QUEUE,
            phase="Completed",
            submitted_by="alice",
            total_pending_time_seconds=None,
        ),
        _workload(
            DAY2,
            "w-t4",
            **QUEUE,
            phase="Pending",
            requested_node_pools=["t4-16gb"],
            current_node_pools=[],
            total_pending_time_seconds=90000,
        ),
    ]


def deleted_rows() -> list[dict[str, Any]]:
    return [
        _workload(
            DAY2,
            "w-l40s",
            **INFRA,
            project_name="infra",
            phase="Deleted",
            current_node_pools=[],
            requested_node_pools=["l40s-48gb"],
            deleted_at=_ts(DAY2, 6),
            total_pending_time_seconds=120,
        )
    ]


TELEMETRY = {
    # run day: ((cluster, pool, GPUs), ...); fetched with the run's snapshot
    DAY1: (
        (PROD_EAST, "a100", 2.0),
        (PROD_EAST, "l40s-48gb", 1.0),
        (RESEARCH_WEST, "a100", 4.0),  # same pool name in another cluster
    ),
    DAY2: (
        (PROD_EAST, "a100", 2.0),
        (PROD_EAST, "h100-80gb", 1.0),  # the snapshot lists 0.5
    ),
}


def telemetry_rows() -> list[dict[str, Any]]:
    rows = [
        {
            "snapshot_date": day,
            "fetched_at": SNAPSHOT_AT[day],
            "run_id": f"run-{day.isoformat()}",
            "telemetry_type": "GPU_ALLOCATION",
            "group_by": "ClusterId,CurrentNodepools",
            "timestamp": SNAPSHOT_AT[day],
            "value": value,
            "group1_key": "ClusterId",
            "group1_value": cluster,
            "group1_name": cluster,
            "group2_key": "CurrentNodepools",
            "group2_value": pool,
            "group2_name": pool,
        }
        for day, values in TELEMETRY.items()
        for cluster, pool, value in values
    ]
    # another telemetry type is not mistaken for an allocation
    rows.append({**rows[0], "telemetry_type": "WORKLOADS_COUNT", "value": 99.0})
    return rows


def _replace(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]]) -> None:
    arrow = pa.Table.from_pylist(rows, schema=DATASETS[table].schema)
    con.register("incoming", arrow)
    # table is one of the contract's dataset names, not input
    con.execute(f"create or replace table raw.{table} as select * from incoming")  # noqa: S608
    con.unregister("incoming")


def build_warehouse(path: Path, a100_utilisation: dict[date, float]) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("set TimeZone = 'UTC'")
        con.execute("create schema if not exists raw")
        _replace(con, "workload_snapshots", snapshot_rows())
        _replace(con, "deleted_workloads", deleted_rows())
        _replace(con, "workload_metrics", metric_rows(a100_utilisation))
        _replace(con, "telemetry", telemetry_rows())
        _replace(con, "quarantine", [])
        con.execute(
            "create or replace table raw._loads (dataset varchar, partition varchar,"
            " rows bigint, loaded_at timestamptz, run_id varchar)"
        )


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        return con.execute(sql).fetchall()


def records(path: Path, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        cur = con.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def one(path: Path, sql: str, params: list[Any] | None = None) -> dict[str, Any]:
    rows = records(path, sql, params)
    assert len(rows) == 1, f"expected one row, got {len(rows)}: {sql}"
    return rows[0]


@dataclass(frozen=True)
class Built:
    paths: DataPaths

    @property
    def db(self) -> Path:
        return self.paths.warehouse


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("warehouse")
    paths = DataPaths(root)
    build_warehouse(paths.warehouse, {DAY1: 50.0, DAY2: 50.0})
    run_dbt(["build"], paths)
    return Built(paths)


@pytest.fixture(scope="module")
def scratch(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Callable[[], DataPaths]:
    """A data directory the tests here take turns on (one at a time, in one worker): each turn
    starts from a copy of the built warehouse and keeps dbt's target, whose parse of the
    project holds as long as the warehouse path is the same. So dbt parses the whole project
    once for all of them, instead of once for each fresh directory."""
    paths = DataPaths(tmp_path_factory.mktemp("scratch"))

    def fresh() -> DataPaths:
        for old in paths.root.glob(f"{paths.warehouse.name}*"):  # the database and its WAL
            old.unlink()
        shutil.copy(built.db, paths.warehouse)
        return paths

    return fresh


# --- fct_workload_usage_daily ---------------------------------------------------------------


def fct(built: Built, day: date, workload_id: str) -> dict[str, Any]:
    return one(
        built.db,
        "select * from marts.fct_workload_usage_daily where usage_date = ? and workload_id = ?",
        [day, workload_id],
    )


def test_full_day_hours_and_costs_across_the_price_change(built: Built) -> None:
    before, after = fct(built, DAY1, "w-a100"), fct(built, DAY2, "w-a100")
    for row in (before, after):
        assert row["allocated_gpu_hours"] == pytest.approx(48.0, abs=ABS)
        assert row["used_gpu_hours"] == pytest.approx(24.0, abs=ABS)
        assert row["idle_gpu_hours"] == pytest.approx(0.0, abs=ABS)
        assert row["gpu_utilisation_pct"] == pytest.approx(50.0)
        assert row["requested_cpu_core_hours"] == pytest.approx(192.0)
        assert row["used_cpu_core_hours"] == pytest.approx(96.0)
        assert row["requested_memory_gib_hours"] == pytest.approx(768.0)
        assert row["cpu_cost"] == pytest.approx(192 * 0.04)
        assert row["memory_cost"] == pytest.approx(768 * 0.005)
        assert row["currency"] == "USD"
        assert row["nodepool"] == "a100"
    # each day is attributed to that day's state: the project was renamed on the second day
    assert before["project_name"] == "vision"
    assert after["project_name"] == "vision-2"
    assert before["gpu_cost"] == pytest.approx(48 * 2.5)  # old price
    assert after["gpu_cost"] == pytest.approx(48 * 2.2)  # from 2026-11-15
    assert before["total_cost"] == pytest.approx(120.0 + 7.68 + 3.84)
    assert after["total_cost"] == pytest.approx(105.6 + 7.68 + 3.84)


def test_partial_day_fractional_gpu_with_missing_utilisation(built: Built) -> None:
    row = fct(built, DAY2, "w-h100")
    assert row["allocated_gpu_hours"] == pytest.approx(3.0)  # 0.5 GPU x 6 h
    assert row["used_gpu_hours"] == pytest.approx(0.5 * 3 * 0.8)  # 14-17 at 80 %
    assert row["idle_gpu_hours"] == pytest.approx(1.0)  # 12-14 at 0 %
    # 17-18 has no utilisation: allocated, neither used nor idle
    assert row["utilisation_sample_coverage"] == pytest.approx(2.5 / 3.0)
    assert row["gpu_utilisation_pct"] == pytest.approx(1.2 / 3.0 * 100)
    assert row["gpu_cost"] == pytest.approx(3.0 * 3.5)
    assert row["idle_gpu_cost"] == pytest.approx(1.0 * 3.5)
    # CPU and memory are charged while a pod runs (12-18), not while pending (10-12)
    assert row["requested_cpu_core_hours"] == pytest.approx(12.0)  # 2 cores 12-18
    assert row["requested_memory_gib_hours"] == pytest.approx(96.0)  # 16 GiB 12-18
    assert (row["held_hours"], row["pending_hours"]) == pytest.approx((6.0, 2.0))
    assert row["total_cost"] == pytest.approx(10.5 + 12 * 0.04 + 96 * 0.005)


def test_workload_deleted_before_the_run_is_charged(built: Built) -> None:
    day1, day2 = fct(built, DAY1, "w-l40s"), fct(built, DAY2, "w-l40s")
    assert day1["allocated_gpu_hours"] == pytest.approx(24.0)
    assert day1["idle_gpu_hours"] == pytest.approx(24.0)  # 0.5 % is below the 1 % threshold
    assert day1["used_gpu_hours"] == pytest.approx(0.12)
    assert day2["allocated_gpu_hours"] == pytest.approx(6.0)
    assert day2["idle_gpu_cost"] == pytest.approx(6.0 * 1.2)
    assert (day2["department_name"], day2["project_name"], day2["nodepool"]) == (
        "platform",
        "infra",
        "l40s-48gb",  # where it ran, although the deleted-list state lists no current pool
    )


def test_no_allocation_and_unknown_node_pool(built: Built) -> None:
    pending = fct(built, DAY2, "w-t4")
    assert pending["allocated_gpu_hours"] == 0
    assert pending["gpu_utilisation_pct"] is None
    assert pending["utilisation_sample_coverage"] is None
    assert pending["nodepool"] == "t4-16gb"  # from requested_node_pools
    unknown = fct(built, DAY1, "w-unknown")
    assert unknown["nodepool"] == "unknown"
    assert unknown["gpu_cost"] == pytest.approx(2.0)  # fallback price, 1 GPU-hour
    assert query(built.db, "select count(*) from marts.fct_workload_usage_daily") == [(8,)]


def test_missing_department_and_project_are_unknown_keys(built: Built) -> None:
    orphan = fct(built, DAY1, "w-orphan")
    assert (orphan["cluster_id"], orphan["department_id"], orphan["project_id"]) == (
        RESEARCH_WEST,
        "unknown",
        "unknown",
    )
    assert (orphan["department_name"], orphan["project_name"]) == (None, None)
    # samples at 100, 100.3, 99.7 and 100 %: exactly 1 GPU-hour used of 1 allocated
    assert orphan["used_gpu_hours"] == 1.0
    assert orphan["gpu_utilisation_pct"] == 100.0
    by_project = one(
        built.db,
        "select * from marts.rpt_utilisation_daily_by_project where usage_date = ?"
        " and cluster_id = ? and department_id = 'unknown'",
        [DAY1, RESEARCH_WEST],
    )
    assert (by_project["project_id"], by_project["allocated_gpu_hours"]) == ("unknown", 1.0)
    for table, keys in (
        ("fct_workload_usage_daily", ("cluster_id", "department_id", "project_id")),
        ("rpt_utilisation_daily_by_project", ("cluster_id", "department_id", "project_id")),
        ("rpt_utilisation_daily_by_department", ("cluster_id", "department_id")),
        ("rpt_chargeback_monthly", ("cluster_id", "department_id", "project_id")),
        ("rpt_pending_time_by_project", ("cluster_id", "department_id", "project_id")),
    ):
        nulls = " or ".join(f"{k} is null" for k in keys)
        assert query(built.db, f"select count(*) from marts.{table} where {nulls}") == [(0,)]  # noqa: S608
    pending = one(
        built.db, "select * from marts.rpt_pending_time_by_project where project_id = 'unknown'"
    )
    assert (pending["department_id"], pending["workloads"]) == ("unknown", 1)


def test_utilisation_above_100_warns_at_the_sample_level(built: Built) -> None:
    results = json.loads((target_dir(built.paths) / "run_results.json").read_text())["results"]
    status = {r["unique_id"].split(".")[2]: (r["status"], r["failures"]) for r in results}
    sample_range = next(
        name
        for name in status
        if name.startswith("within_range_int_workload_metric_samples_gpu_utilisation_pct")
    )
    assert status[sample_range] == ("warn", 1)  # the 100.3 % sample, kept as reported
    assert query(
        built.db,
        "select max(gpu_utilisation_pct) from intermediate.int_workload_metric_samples",
    ) == [(100.3,)]
    # the ratio of the fact stays within 0-100 and its range test is an error that passed
    fct_range = next(
        name
        for name in status
        if name.startswith("within_range_fct_workload_usage_daily_gpu_utilisation_pct")
    )
    assert status[fct_range] == ("pass", 0)


# --- dimensions -----------------------------------------------------------------------------


def test_dim_workloads_latest_state_one_row_per_workload(built: Built) -> None:
    rows = query(
        built.db,
        "select workload_id, project_name, phase, nodepool, is_deleted, deleted_at,"
        " first_seen_at, last_seen_at, total_pending_time_seconds"
        " from marts.dim_workloads order by workload_id",
    )
    by_id = {r[0]: r[1:] for r in rows}
    assert sorted(by_id) == ["w-a100", "w-h100", "w-l40s", "w-orphan", "w-t4", "w-unknown"]
    assert by_id["w-a100"][:4] == ("vision-2", "Running", "a100", False)
    deleted = by_id["w-l40s"]
    assert deleted[1:5] == ("Deleted", "l40s-48gb", True, _ts(DAY2, 6))
    assert deleted[5:7] == (SNAPSHOT_AT[DAY1], SNAPSHOT_AT[DAY2])
    assert deleted[7] == 120


def test_dim_workloads_history_versions(built: Built) -> None:
    rows = query(
        built.db,
        "select workload_id, version, valid_from, valid_to, is_current, project_name, phase,"
        " is_deleted from marts.dim_workloads_history order by workload_id, version",
    )
    a100 = [r for r in rows if r[0] == "w-a100"]
    assert a100 == [
        ("w-a100", 1, SNAPSHOT_AT[DAY1], SNAPSHOT_AT[DAY2], False, "vision", "Running", False),
        ("w-a100", 2, SNAPSHOT_AT[DAY2], None, True, "vision-2", "Running", False),
    ]
    l40s = [r for r in rows if r[0] == "w-l40s"]
    assert [(r[1], r[4], r[6], r[7]) for r in l40s] == [
        (1, False, "Running", False),
        (2, True, "Deleted", True),
    ]
    # unchanged attributes across snapshots: a single version
    assert [r[1] for r in rows if r[0] == "w-unknown"] == [1]


# --- reports --------------------------------------------------------------------------------


def test_chargeback_monthly(built: Built) -> None:
    rows = query(
        built.db,
        "select department_name, project_id, allocated_gpu_hours, used_gpu_hours,"
        " idle_gpu_hours, gpu_cost, idle_gpu_cost, gpu_efficiency"
        " from marts.rpt_chargeback_monthly where usage_month = '2026-11-01'"
        " order by project_id",
    )
    expected = {
        "11": ("research", 96.0, 48.0, 0.0, 48 * 2.5 + 48 * 2.2, 0.0, 0.5),
        "12": ("research", 3.0, 1.2, 1.0, 10.5, 3.5, 0.4),
        "21": ("platform", 30.0, 0.15, 30.0, 36.0, 36.0, 0.005),
        "31": ("west-lab", 1.0, 1.0, 0.0, 2.0, 0.0, 1.0),
        "unknown": (None, 1.0, 1.0, 0.0, 2.0, 0.0, 1.0),
    }
    assert [r[1] for r in rows] == sorted(expected)
    for r in rows:
        want = expected[r[1]]
        assert r[0] == want[0]
        assert r[2:] == pytest.approx(want[1:])


def test_conservation_departments_sum_to_cluster_totals(built: Built) -> None:
    by_dept = query(
        built.db,
        "select usage_date, cluster_id, sum(allocated_gpu_hours), sum(total_cost)"
        " from marts.rpt_utilisation_daily_by_department group by all order by all",
    )
    by_cluster = query(
        built.db,
        "select usage_date, cluster_id, allocated_gpu_hours, total_cost"
        " from marts.rpt_utilisation_daily_by_cluster order by all",
    )
    assert len(by_dept) == len(by_cluster) == 4
    for d, c in zip(by_dept, by_cluster, strict=True):
        assert d[:2] == c[:2]
        assert d[2:] == pytest.approx(c[2:])
    prod_east_day2 = next(c for c in by_cluster if c[0] == DAY2 and c[1] == PROD_EAST)
    assert prod_east_day2[2] == pytest.approx(48.0 + 3.0 + 6.0)


def test_top_idle_workloads(built: Built) -> None:
    rows = query(
        built.db,
        "select idle_rank, workload_id, idle_gpu_hours, window_start, window_end"
        " from marts.rpt_top_idle_workloads order by idle_rank",
    )
    # w-orphan and w-unknown tie (no idle hours, exactly 100 %): the id decides
    assert [r[1] for r in rows] == ["w-l40s", "w-h100", "w-a100", "w-orphan", "w-unknown"]
    assert rows[0][2] == pytest.approx(30.0)
    assert rows[0][3:] == (date(2026, 11, 9), DAY2)


def hourly(built: Built, cluster: str, pool: str, hour: datetime) -> dict[str, Any]:
    return one(
        built.db,
        "select * from marts.rpt_nodepool_allocation_hourly"
        " where cluster_id = ? and nodepool = ? and hour_start = ?",
        [cluster, pool, hour],
    )


def test_nodepool_allocation_hourly_with_telemetry(built: Built) -> None:
    # the 2026-11-14 run fetched telemetry at 2026-11-15 01:00, a loaded hour
    a100 = hourly(built, PROD_EAST, "a100", _ts(DAY2, 1))
    assert a100["allocated_gpus"] == pytest.approx(2.0)
    # the research-west a100 pool (4 GPUs) is not added in
    assert (a100["telemetry_allocated_gpus"], a100["telemetry_fetches"]) == (2.0, 1)
    assert a100["telemetry_minus_allocated_gpus"] == pytest.approx(0.0)
    l40s = hourly(built, PROD_EAST, "l40s-48gb", _ts(DAY2, 1))
    assert (l40s["allocated_gpus"], l40s["telemetry_allocated_gpus"]) == (1.0, 1.0)
    # no fetch in the hour: no telemetry
    h100 = hourly(built, PROD_EAST, "h100-80gb", _ts(DAY2, 13))
    assert h100["allocated_gpus"] == pytest.approx(0.5)
    assert h100["telemetry_allocated_gpus"] is None
    assert h100["capacity_gpus"] == 16
    before = hourly(built, PROD_EAST, "a100", _ts(DAY1, 5))
    assert before["allocated_gpus"] == pytest.approx(2.0)
    assert before["allocation_pct_of_capacity"] == pytest.approx(2 / 32 * 100)
    assert before["telemetry_allocated_gpus"] is None
    # the fetch of the last run (after the last loaded day) is not in this report
    assert query(
        built.db,
        "select count(*), max(hour_start) from marts.rpt_nodepool_allocation_hourly"
        " where telemetry_allocated_gpus is not null",
    ) == [(3, _ts(DAY2, 1))]
    # a pool nobody used still has its hours: research-west's a100 (the same name as
    # prod-east's, another pool), with only its telemetry
    idle_pool = one(
        built.db,
        "select count(*) as n, sum(allocated_gpus) as gpus"
        " from marts.rpt_nodepool_allocation_hourly where cluster_id = ? and nodepool = 'a100'",
        [RESEARCH_WEST],
    )
    assert idle_pool == {"n": 48, "gpus": 0}


def test_nodepool_allocation_snapshot_compares_telemetry_with_the_run_snapshot(
    built: Built,
) -> None:
    rows = query(
        built.db,
        "select run_id, fetched_at, snapshot_at, cluster_id, nodepool, capacity_gpus,"
        " telemetry_allocated_gpus, snapshot_allocated_gpus,"
        " snapshot_workloads_with_allocation, telemetry_minus_snapshot_gpus"
        " from marts.rpt_nodepool_allocation_snapshot order by all",
    )
    day1 = ("run-2026-11-14", SNAPSHOT_AT[DAY1], SNAPSHOT_AT[DAY1])
    day2 = ("run-2026-11-15", SNAPSHOT_AT[DAY2], SNAPSHOT_AT[DAY2])
    assert rows == [
        (*day1, RESEARCH_WEST, "a100", 16, 4.0, 0.0, 0, 4.0),
        (*day1, PROD_EAST, "a100", 32, 2.0, 2.0, 1, 0.0),
        (*day1, PROD_EAST, "l40s-48gb", 24, 1.0, 1.0, 1, 0.0),
        (*day2, PROD_EAST, "a100", 32, 2.0, 2.0, 1, 0.0),
        (*day2, PROD_EAST, "h100-80gb", 16, 1.0, 0.5, 1, 0.5),
    ]
    h100 = one(
        built.db,
        "select telemetry_pct_of_capacity from marts.rpt_nodepool_allocation_snapshot"
        " where nodepool = 'h100-80gb'",
    )
    assert h100["telemetry_pct_of_capacity"] == pytest.approx(1 / 16 * 100)


def test_pending_time_and_utilisation_percentiles(built: Built) -> None:
    nlp = one(built.db, "select * from marts.rpt_pending_time_by_project where project_id = '12'")
    assert (nlp["p50_pending_seconds"], nlp["pending_2h_or_more"]) == (7200, 1)
    queue = one(built.db, "select * from marts.rpt_pending_time_by_project where project_id = '31'")
    assert (queue["workloads"], queue["workloads_with_pending_time"]) == (2, 1)
    h100 = one(
        built.db,
        "select * from marts.rpt_workload_utilisation_percentiles where workload_id = 'w-h100'",
    )
    # 8 samples at 0 %, 12 at 80 %; the pending and the unsampled ones are left out
    assert h100["allocated_samples"] == 20
    assert h100["p50_gpu_utilisation_pct"] == pytest.approx(80.0)
    assert h100["p95_gpu_utilisation_pct"] == pytest.approx(80.0)
    assert h100["min_gpu_utilisation_pct"] == 0
    assert h100["avg_gpu_utilisation_pct"] == pytest.approx(12 * 80 / 20)


def test_every_mart_column_is_documented(built: Built) -> None:
    manifest = json.loads((target_dir(built.paths) / "manifest.json").read_text())
    documented = {
        node["name"]: {c for c, spec in node["columns"].items() if spec.get("description")}
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["schema"] == "marts"
    }
    actual: dict[str, set[str]] = {}
    for table, column in query(
        built.db,
        "select table_name, column_name from information_schema.columns"
        " where table_schema = 'marts'",
    ):
        actual.setdefault(table, set()).add(column)
    assert set(documented) == set(actual)
    for table, columns in actual.items():
        assert columns == documented[table], table


# --- incremental runs -----------------------------------------------------------------------


FCT_CONTENT = "select * from marts.fct_workload_usage_daily order by usage_date, workload_id"


INCREMENTAL_TABLES = (
    "intermediate.int_workload_metric_samples",
    "intermediate.int_workload_usage_daily",
    "marts.fct_workload_usage_daily",
)


def rows_per_day(path: Path) -> dict[str, dict[date, int]]:
    return {
        table: dict(query(path, f"select usage_date, count(*) from {table} group by all"))  # noqa: S608
        for table in INCREMENTAL_TABLES
    }


@dataclass(frozen=True)
class Incremental:
    before: list[dict[str, Any]]
    first: list[dict[str, Any]]
    second: list[dict[str, Any]]
    # the window's conservation test after the first run: (with the window, without it)
    conservation: tuple[bool, DbtRunError | None]
    counts_before_emptying: dict[str, dict[date, int]]
    counts_after_emptying: dict[str, dict[date, int]]
    after_emptying: list[dict[str, Any]]
    # dbt's log of every invocation above (each with another window than the one before)
    dbt_log: str
    # what the window table holds once dbt has ended
    window_rows_after: list[tuple[Any, ...]]
    # the compiled SQL of an incremental model, for a window of 2026-11-14
    compiled_day1: str


@pytest.fixture(scope="module")
def incremental(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Incremental:
    paths = DataPaths(tmp_path_factory.mktemp("incremental"))
    shutil.copy(built.db, paths.warehouse)
    before = records(paths.warehouse, FCT_CONTENT)
    # the raw data of both days changes; only 2026-11-15 is reprocessed
    with duckdb.connect(str(paths.warehouse)) as con:
        con.execute(
            "update raw.workload_metrics set value = case usage_date"
            " when date '2026-11-14' then 75 else 25 end"
            " where workload_id = 'w-a100' and metric_type = 'GPU_UTILIZATION'"
        )
    # the incremental chain; the views it reads exist since the first build
    chain = "int_workload_metric_samples int_workload_usage_daily fct_workload_usage_daily"
    args = ["run", "--select", chain]
    dbt_here(args, paths, days=[DAY2])
    first = records(paths.warehouse, FCT_CONTENT)
    # the independent-path check holds on the rebuilt day; 2026-11-14 still has the hours
    # built from its old raw data, so checking every day fails
    check = ["test", "--select", "assert_fct_gpu_hours_match_metric_samples"]
    windowed = dbt_here(check, paths, days=[DAY2])
    with pytest.raises(DbtRunError) as unwindowed:
        dbt_here(check, paths)
    dbt_here(args, paths, days=[DAY2])
    second = records(paths.warehouse, FCT_CONTENT)
    # every raw sample of 2026-11-15 is removed, then the day is reprocessed
    counts_before = rows_per_day(paths.warehouse)
    with duckdb.connect(str(paths.warehouse)) as con:
        con.execute("delete from raw.workload_metrics where usage_date = date '2026-11-15'")
    dbt_here(args, paths, days=[DAY2])
    window_rows_after = query(paths.warehouse, f"select * from {WINDOW_TABLE}")  # noqa: S608
    dbt_here(["compile", "--select", "int_workload_usage_daily"], paths, days=[DAY1])
    compiled = target_dir(paths) / "compiled" / "workloads_etl" / "models" / "intermediate"
    return Incremental(
        before,
        first,
        second,
        (windowed.returncode == 0, unwindowed.value),
        counts_before,
        rows_per_day(paths.warehouse),
        records(paths.warehouse, FCT_CONTENT),
        (log_dir(paths) / "dbt.log").read_text(),
        window_rows_after,
        (compiled / "int_workload_usage_daily.sql").read_text(),
    )


def test_incremental_run_replaces_only_its_days(incremental: Incremental) -> None:
    assert len(incremental.first) == len(incremental.before)
    untouched = [r for r in incremental.before if r["usage_date"] == DAY1]
    assert [r for r in incremental.first if r["usage_date"] == DAY1] == untouched
    changed = {r["workload_id"]: r for r in incremental.first if r["usage_date"] == DAY2}
    old = {r["workload_id"]: r for r in incremental.before if r["usage_date"] == DAY2}
    assert changed.keys() == old.keys()
    # 2 GPUs x 24 h x 25 % after the change, 50 % before it
    assert changed["w-a100"]["used_gpu_hours"] == pytest.approx(12.0)
    assert old["w-a100"]["used_gpu_hours"] == pytest.approx(24.0)
    assert changed["w-a100"]["gpu_utilisation_pct"] == pytest.approx(25.0)
    assert changed["w-h100"] == old["w-h100"]


def test_incremental_rerun_is_idempotent(incremental: Incremental) -> None:
    assert incremental.second == incremental.first


def test_reprocessed_day_without_samples_is_emptied(incremental: Incremental) -> None:
    before, after = incremental.counts_before_emptying, incremental.counts_after_emptying
    for table in INCREMENTAL_TABLES:
        assert before[table][DAY2] > 0, table
        assert DAY2 not in after[table], table  # no stale rows of the emptied day
        assert after[table][DAY1] == before[table][DAY1], table
    assert [r for r in incremental.after_emptying if r["usage_date"] == DAY2] == []
    assert incremental.after_emptying == [r for r in incremental.second if r["usage_date"] == DAY1]


def test_fact_hours_checked_against_the_samples_directly(incremental: Incremental) -> None:
    windowed, unwindowed = incremental.conservation
    assert windowed
    assert unwindowed is not None
    assert "assert_fct_gpu_hours_match_metric_samples" in str(unwindowed)


def test_invocations_with_other_windows_keep_the_partial_parse(incremental: Incremental) -> None:
    """The window is data (the window table), not vars: dbt parses the project fully once
    (a new target directory), then only partially, whatever the window of each invocation."""
    log = incremental.dbt_log
    assert log.count("Unable to do partial parsing because saved manifest not found") == 1
    assert "Unable to do partial parsing because config" not in log
    assert log.count("Nothing changed, skipping partial parsing") >= 5


def test_the_window_table_restricts_the_incremental_models(incremental: Incremental) -> None:
    # read when the node runs, inlined as literals: the plans prune by the date column
    sql = incremental.compiled_day1
    assert "usage_date >= date '2026-11-14' and usage_date <= date '2026-11-14'" in sql
    assert "2026-11-15" not in sql
    # cleared once dbt ended: dbt run by hand processes every day
    assert incremental.window_rows_after == []


def test_a_window_cut_in_builds_creates_fresh_models_from_its_own_days(
    scratch: Callable[[], DataPaths],
) -> None:
    """A long backfill on a fresh warehouse is built in several windows: the first build
    creates the incremental models from the days up to its window's end only (not from
    every day loaded, which would not fit in memory), the next adds the later days, and the
    result is the one build of every day."""
    paths = scratch()
    before = records(paths.warehouse, FCT_CONTENT)
    assert {r["usage_date"] for r in before} == {DAY1, DAY2}
    with duckdb.connect(str(paths.warehouse)) as con:
        for table in INCREMENTAL_TABLES:
            con.execute(f"drop table {table}")
    chain = ["run", "--select", " ".join(t.split(".")[1] for t in INCREMENTAL_TABLES)]
    dbt_here(chain, paths, days=[DAY1], full_build_through=DAY1)
    assert set(rows_per_day(paths.warehouse)["marts.fct_workload_usage_daily"]) == {DAY1}
    assert set(rows_per_day(paths.warehouse)["intermediate.int_workload_metric_samples"]) == {DAY1}
    dbt_here(chain, paths, days=[DAY2])
    assert records(paths.warehouse, FCT_CONTENT) == before
    # the unit tests read their own fixtures, whatever the bound (theirs are of 2026-11-15)
    unit = ["test", "--select", "test_type:unit"]
    dbt_here(unit, paths, days=[date(2026, 1, 1)], full_build_through=date(2026, 1, 1))
    with pytest.raises(ValueError, match="pass a window"):
        write_window(paths.warehouse, None, DAY1)


FOLDING_TABLES = (
    "intermediate.int_workload_states",
    "intermediate.int_workloads_latest",
    "intermediate.int_workload_versions",
    "marts.dim_workloads",
    "marts.dim_workloads_history",
)


def test_nightly_runs_fold_their_days_into_the_rows_of_each_workload(
    built: Built, scratch: Callable[[], DataPaths]
) -> None:
    """The workload rows (latest state, versions) built night by night, each run folding its
    day's states into the rows held, equal one build of every day; a day run again or a past
    day rebuilds them from every state, and a workload whose states are gone goes."""
    paths = scratch()
    contents = "select * from {} order by all"
    expected = {t: query(built.db, contents.format(t)) for t in FOLDING_TABLES}
    compiled = target_dir(paths) / "compiled" / "workloads_etl" / "models" / "intermediate"
    select = ["run", "--select", " ".join(t.split(".")[1] for t in FOLDING_TABLES)]

    def content() -> dict[str, list[tuple[Any, ...]]]:
        return {t: query(paths.warehouse, contents.format(t)) for t in FOLDING_TABLES}

    def folded() -> bool:
        """Whether the last run read the rows it held (it folded its window into them)."""
        sql = (compiled / "int_workloads_latest.sql").read_text()
        versions = (compiled / "int_workload_versions.sql").read_text()
        reads_itself = '"intermediate"."int_workloads_latest"' in sql
        assert reads_itself == ('"intermediate"."int_workload_versions"' in versions)
        return reads_itself

    dbt_here([*select, "--full-refresh"], paths, days=[DAY1], full_build_through=DAY1)
    latest = one(
        paths.warehouse, "from intermediate.int_workloads_latest where workload_id = 'w-a100'"
    )
    assert (latest["project_name"], latest["n_states"]) == ("vision", 1)
    dbt_here(select, paths, days=[DAY2])  # the next night
    assert folded()
    assert content() == expected
    # a third night: a workload's third version, another's version going on
    day3 = DAY2 + timedelta(days=1)
    with duckdb.connect(str(paths.warehouse)) as con:
        con.execute(
            "insert into raw.workload_snapshots select * replace ("
            " snapshot_date + 1 as snapshot_date, snapshot_at + interval 1 day as snapshot_at,"
            " case workload_id when 'w-a100' then 'vision-3' else project_name end"
            " as project_name) from raw.workload_snapshots where snapshot_date = ?",
            [DAY2],
        )
    dbt_here(select, paths, days=[day3])
    assert folded()
    night_by_night = content()
    dbt_here([*select, "--full-refresh"], paths)
    assert content() == night_by_night
    versions = query(
        paths.warehouse,
        "select workload_id, version, n_states, is_current from marts.dim_workloads_history"
        " where workload_id in ('w-a100', 'w-unknown') order by all",
    )
    assert versions == [
        ("w-a100", 1, 1, False),
        ("w-a100", 2, 1, False),
        ("w-a100", 3, 1, True),
        ("w-unknown", 1, 3, True),
    ]
    with duckdb.connect(str(paths.warehouse)) as con:
        con.execute("delete from raw.workload_snapshots where snapshot_date = ?", [day3])
    dbt_here(select, paths, days=[day3])  # the third night emptied
    assert not folded()
    assert content() == expected
    dbt_here(select, paths, days=[DAY2])  # the same day again
    assert not folded()
    assert content() == expected
    dbt_here(select, paths, days=[DAY1])  # a past day
    assert not folded()
    assert content() == expected
    with duckdb.connect(str(paths.warehouse)) as con:
        con.execute("delete from raw.workload_snapshots where workload_id = 'w-t4'")
    dbt_here(select, paths, days=[DAY2])
    assert not folded()
    ids = query(paths.warehouse, "select workload_id from intermediate.int_workloads_latest")
    assert ("w-t4",) not in ids
    assert len(ids) == len(expected["intermediate.int_workloads_latest"]) - 1
    # a backfill fetches several days' lists at one time: one fetch, its state on the last day
    with duckdb.connect(str(paths.warehouse)) as con:
        con.execute(
            "insert into raw.workload_snapshots select * replace (snapshot_date + 1"
            " as snapshot_date) from raw.workload_snapshots where snapshot_date = ?",
            [DAY2],
        )
    dbt_here(select, paths, days=[day3])
    assert not folded()
    states = query(
        paths.warehouse,
        "select snapshot_date, state_source, count(*) from intermediate.int_workload_states"
        " group by all order by all",
    )
    # DAY2's fetch belongs to day3 now, but for the deleted-list row (preferred in a fetch)
    assert [(day, source) for day, source, _ in states] == [
        (DAY1, "snapshot"),
        (DAY2, "deleted_list"),
        (day3, "snapshot"),
    ]
    assert sum(n for *_, n in states) == len(expected["intermediate.int_workload_states"]) - 1


# --- determinism -----------------------------------------------------------------------------


def jitter_metric_rows() -> list[dict[str, Any]]:
    """Samples with values whose float sums depend on the order they are added in."""
    rng = random.Random(20261115)
    rows: list[dict[str, Any]] = []
    for day in (DAY1, DAY2):
        for workload_id in ("w-a100", "w-h100", "w-l40s", "w-orphan"):
            rows += _samples(
                workload_id,
                _ts(day, 0),
                _ts(day, 24),
                {
                    "GPU_ALLOCATION": lambda _t: rng.choice([0.1, 0.3, 0.7, 1.3, 2.9]),
                    "GPU_UTILIZATION": lambda _t: round(rng.uniform(0, 100), 3),
                    "CPU_REQUEST_CORES": lambda _t: round(rng.uniform(0.1, 7.7), 3),
                    "CPU_MEMORY_REQUEST_BYTES": lambda _t: float(rng.randrange(10**8, 10**10)),
                },
            )
    return rows


NAIVE_USED_GPU_SECONDS = (
    "select usage_date, workload_id,"
    " sum(gpu_allocation * gpu_utilisation_pct / 100.0 * gpu_allocation_step_seconds)"
    " from intermediate.int_workload_metric_samples group by all order by all"
)


def marts_content(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    tables = [
        f"{schema}.{table}"
        for schema, table in query(
            path,
            "select table_schema, table_name from information_schema.tables"
            " where table_schema in ('intermediate', 'marts') and table_type = 'BASE TABLE'",
        )
    ]
    return {t: query(path, f"select * from {t} order by all") for t in tables}  # noqa: S608


def test_same_input_in_another_row_order_gives_bit_identical_marts(
    scratch: Callable[[], DataPaths],
) -> None:
    rows = jitter_metric_rows()
    content: list[dict[str, list[tuple[Any, ...]]]] = []
    naive: list[list[tuple[Any, ...]]] = []
    for order in (rows, rows[::-1]):
        paths = scratch()
        with duckdb.connect(str(paths.warehouse)) as con:
            _replace(con, "workload_metrics", order)
        args = ["run", "--full-refresh", "--select", "int_workload_metric_samples+"]
        dbt_here(args, paths)
        content.append(marts_content(paths.warehouse))
        naive.append(query(paths.warehouse, NAIVE_USED_GPU_SECONDS))
    # the input is order-sensitive: plain float sums of the two orders differ
    assert naive[0] != naive[1]
    assert len(content[0]) >= 10
    for table, first in content[0].items():
        assert first or table == "marts.rpt_inference_daily", table  # no inference here
        assert content[1][table] == first, table  # == on floats: the same bits


# --- Python interface -----------------------------------------------------------------------


def test_dbt_vars_carry_the_metric_types_and_never_the_window() -> None:
    variables = dbt_vars(idle_gpu_utilisation_pct=5)
    assert variables["metric_columns"] == metric_columns()
    assert variables["idle_gpu_utilisation_pct"] == 5
    assert "start_date" not in variables and "end_date" not in variables
    # the same text on every invocation, whatever the order the user's vars come in
    assert dbt_vars_json({"a": 1, "b": 2}) == dbt_vars_json({"b": 2, "a": 1})
    assert json.loads(dbt_vars_json()) == dbt_vars()
    assert usage_window([DAY2, DAY1]) == (DAY1, DAY2)
    assert usage_window(None) is None
    with pytest.raises(ValueError, match="at least one day"):
        usage_window([])


def test_the_runner_and_dagster_name_the_same_profile_and_target(tmp_path: Path) -> None:
    from workloads_etl.defs.transform.project import dbt_project

    paths = DataPaths(tmp_path)
    args = invocation_args(paths, memory_limit="1GB")
    assert args[args.index("--profile") + 1] == PROFILE
    assert args[args.index("--target") + 1] == TARGET
    assert args[args.index("--log-path") + 1] == str(log_dir(paths))
    project = dbt_project(paths, memory_limit="1GB")
    assert (project.profile, project.target) == (PROFILE, TARGET)
    assert str(project.profiles_dir) == args[args.index("--profiles-dir") + 1]
    profile = json.loads((paths.dbt / "profiles.yml").read_text())
    output = profile[PROFILE]["outputs"][TARGET]
    assert profile[PROFILE]["target"] == TARGET
    assert output["settings"] == {"TimeZone": "UTC"}
    assert output["config_options"] == {
        "memory_limit": "1GB",
        "threads": DUCKDB_THREADS,
        "temp_directory": str(tmp_path / ".duckdb_tmp"),
        "preserve_insertion_order": False,
    }
    text = profile_text(
        paths.warehouse, memory_limit="512MB", temp_directory=tmp_path / "spill", threads=4
    )
    assert json.loads(text)[PROFILE]["outputs"][TARGET]["threads"] == 4


def test_run_dbt_names_the_failure(built: Built) -> None:
    assert (dbt_project_dir() / "dbt_project.yml").is_file()
    with pytest.raises(DbtRunError, match="start_date"):
        run_dbt(
            ["compile", "--select", "int_workload_usage_daily"],
            built.paths,
            extra_vars={"start_date": "14/11"},
        )


def test_breaking_a_mart_column_fails_the_build(built: Built, tmp_path: Path) -> None:
    """The marts' contracts are enforced: a model that stops producing a documented column
    (or changes its type, or puts a null where its contract says never) fails, instead of
    silently breaking the BI tools that read it."""
    project = tmp_path / "dbt"
    shutil.copytree(dbt_project_dir(), project, ignore=shutil.ignore_patterns("target", "logs"))
    model = project / "models" / "marts" / "rpt_chargeback_monthly.sql"
    sql = model.read_text()
    assert "as gpu_efficiency" in sql
    model.write_text(sql.replace("as gpu_efficiency", "as efficiency"))
    paths = DataPaths(tmp_path / "data")
    paths.root.mkdir()
    shutil.copy(built.db, paths.warehouse)
    with pytest.raises(DbtRunError, match="contract"):
        dbt_here(["run", "--select", "rpt_chargeback_monthly"], paths, project=project)
    model.write_text(sql.replace("end as gpu_efficiency", "end::varchar as gpu_efficiency"))
    with pytest.raises(DbtRunError, match="contract"):
        dbt_here(["run", "--select", "rpt_chargeback_monthly"], paths, project=project)
    # a column the contract declares not_null (a constraint, not a test) fails on a null
    assert "        project_id,\n" in sql
    model.write_text(sql.replace("        project_id,\n", "        null::varchar as project_id,\n"))
    with pytest.raises(DbtRunError, match=r"NOT NULL constraint failed.*project_id"):
        dbt_here(["run", "--select", "rpt_chargeback_monthly"], paths, project=project)
    # a mart built before its contract declared a constraint gets it on the next build
    with duckdb.connect(str(paths.warehouse)) as con:
        con.execute(
            "alter table marts.rpt_chargeback_monthly alter column project_id drop not null"
        )
    model.write_text(sql)
    dbt_here(["run", "--select", "rpt_chargeback_monthly"], paths, project=project)
    not_null = query(
        paths.warehouse,
        "select column_name from information_schema.columns where table_schema = 'marts'"
        " and table_name = 'rpt_chargeback_monthly' and is_nullable = 'NO' order by all",
    )
    assert not_null == [("cluster_id",), ("department_id",), ("project_id",), ("usage_month",)]
