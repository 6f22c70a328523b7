"""The whole graph against the simulated control plane: a 3-day backfill run, the nightly
schedule's runs of its days, and the marts checked against the simulator's exact ground truth.

Error bound of the check (samples every ``step`` = 60 s from UTC midnight, each standing for
[t, t + step)): allocation and utilisation are constant within each UTC minute except at the
edges of a run interval (start, preemption, resumption, end), which fall at arbitrary
seconds. A run interval [a, b) holds n samples with |n·step − (b − a)| < step, and its
interior minutes are sampled exactly, so each interval overlapping a day misestimates that
day's GPU-seconds by less than gpus·step, allocated and used alike:

    |sampled − exact| < gpus · step · (run intervals overlapping the day)
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from tests.conftest import E2E_CHUNK_SAMPLES, PipelineRun, read_only
from workloads_etl.lake.parquet import read_manifest
from workloads_etl.lake.quality import duplicate_keys
from workloads_etl.warehouse.dbt import target_dir

STEP = 60
pytestmark = pytest.mark.slow


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _check_evaluations(run: PipelineRun, run_id: str) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for entry in run.instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        ev = entry.dagster_event.event_specific_data
        out[f"{ev.asset_key.to_user_string()}:{ev.check_name}"] = ev.passed
    return out


def test_backfill_run_succeeds_with_every_check_passing(pipeline_run: PipelineRun) -> None:
    result = pipeline_run.result
    assert result.success
    materialized = {
        e.asset_key.to_user_string()
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
    }
    assert {"runai/workload_metrics", "raw/workload_metrics", "marts/fct_workload_usage_daily"} <= (
        materialized
    )
    checks = _check_evaluations(pipeline_run, result.run_id)
    assert len(checks) > 20  # ours plus the dbt tests
    failed = sorted(k for k, ok in checks.items() if not ok)
    assert failed == []
    # the three days held more samples than one dbt build may take: the first two days in one
    # build, then the third (whose events are the step's), oldest first
    logs = [e.user_message for e in pipeline_run.instance.all_logs(result.run_id)]
    first, second = pipeline_run.days[:2]
    assert [m for m in logs if m.startswith("dbt build ")] == [
        f"dbt build 1 of 2 ({first}..{second}): done"
    ]


def test_the_runs_dbt_build_runs_the_data_tests_and_leaves_the_unit_tests_to_ci(
    pipeline_run: PipelineRun,
) -> None:
    kinds: dict[str, set[str]] = defaultdict(set)
    for result in pipeline_run.dbt_results["results"]:
        kinds[result["unique_id"].split(".")[0]].add(result["unique_id"])
        assert result["status"] not in ("error", "fail"), result["unique_id"]
    manifest = json.loads((target_dir(pipeline_run.paths) / "manifest.json").read_text())
    declared: dict[str, set[str]] = defaultdict(set)
    for uid in [*manifest["nodes"], *manifest["unit_tests"]]:
        declared[uid.split(".")[0]].add(uid)
    assert len(declared["model"]) > 20 and len(declared["test"]) > 80
    assert kinds["model"] == declared["model"] and kinds["test"] == declared["test"]
    assert declared["unit_test"] and not kinds["unit_test"]


def test_materialisations_carry_row_counts(pipeline_run: PipelineRun) -> None:
    mats = pipeline_run.result.asset_materializations_for_node("runai__workload_metrics")
    assert mats, "no materialization of runai/workload_metrics"
    assert mats[0].metadata["dagster/row_count"].value > 100_000
    snap = pipeline_run.result.asset_materializations_for_node("runai__workload_snapshots")
    assert "preview" in snap[0].metadata


def test_a_day_larger_than_a_chunk_is_several_files_loaded_whole(pipeline_run: PipelineRun) -> None:
    """The run's chunks are small (E2E_CHUNK_SAMPLES): each metrics day is several files,
    each sorted by key with no key in two files, and the warehouse holds every row."""
    lake = pipeline_run.paths.lake
    with read_only(pipeline_run.paths) as con:
        for day in pipeline_run.days:
            manifest = read_manifest(lake, "workload_metrics", day)
            assert manifest is not None
            assert manifest.rows > 3 * E2E_CHUNK_SAMPLES
            assert len(manifest.data_files) >= 3
            assert duplicate_keys(lake, "workload_metrics", day) == 0
            loaded = con.execute(
                "select count(*) from raw.workload_metrics where usage_date = ?", [day]
            ).fetchone()
            assert loaded == (manifest.rows,)


def test_marts_match_the_simulator_ground_truth(pipeline_run: PipelineRun) -> None:
    cluster = pipeline_run.simulator.cluster
    with read_only(pipeline_run.paths) as con:
        rows = con.execute(
            "select usage_date, workload_id, allocated_gpu_hours, used_gpu_hours "
            "from marts.fct_workload_usage_daily where usage_date between ? and ?",
            [pipeline_run.days[0], pipeline_run.days[-1]],
        ).fetchall()
    got = {(d, w): (a, u) for d, w, a, u in rows}
    now = cluster.now()
    checked = 0
    worst = 0.0
    for day in pipeline_run.days:
        start, end = _day_bounds(day)
        snap = cluster.snapshot(now)
        for index in snap.index.tolist():
            workload_id = cluster.workload_json(index, now)["id"]
            truth = cluster.ground_truth(workload_id, start, end)
            intervals = [
                (a, b)
                for a, b in cluster.run_intervals(index)
                if a < end and (b is None or b > start)
            ]
            gpus = cluster.workload_json(index, now)["workloadRequestedResources"]["gpu"]["request"]
            bound = gpus * STEP * len(intervals) + 1e-6
            alloc_h, used_h = got.get((day, workload_id), (0.0, 0.0))
            if truth.allocated_gpu_seconds > 0:
                assert (day, workload_id) in got, f"{workload_id} ran on {day} but is not charged"
            err_alloc = abs(alloc_h * 3600 - truth.allocated_gpu_seconds)
            err_used = abs((used_h or 0.0) * 3600 - truth.used_gpu_seconds)
            assert err_alloc <= bound, (workload_id, day, alloc_h * 3600, truth, bound)
            assert err_used <= bound, (workload_id, day, (used_h or 0) * 3600, truth, bound)
            worst = max(worst, err_alloc, err_used)
            checked += truth.allocated_gpu_seconds > 0
    assert checked > 50, "too few running workload-days to be a meaningful comparison"


def test_department_totals_equal_cluster_totals(pipeline_run: PipelineRun) -> None:
    """Conservation across the report marts: departments add up to clusters, per day."""
    query = (
        "select usage_date, sum(allocated_gpu_hours), sum(used_gpu_hours), sum(total_cost) "
        "from marts.{} group by 1 order by 1"
    )
    with read_only(pipeline_run.paths) as con:
        by_dept = con.execute(query.format("rpt_utilisation_daily_by_department")).fetchall()
        by_cluster = con.execute(query.format("rpt_utilisation_daily_by_cluster")).fetchall()
        by_workload = con.execute(query.format("fct_workload_usage_daily")).fetchall()
    assert len(by_dept) == len(by_cluster) == len(by_workload)
    for dept, cluster, workload in zip(by_dept, by_cluster, by_workload, strict=True):
        assert dept == pytest.approx(cluster, rel=1e-9)
        assert dept == pytest.approx(workload, rel=1e-9)
    assert [d for d, *_ in by_dept] == pipeline_run.days
    assert all(alloc > 0 and cost > 0 for _, alloc, _, cost in by_dept)


def test_the_nightly_schedule_requests_the_day_just_ended(pipeline_run: PipelineRun) -> None:
    """The schedule's tick after the last day asks for that day's partition: the run the
    fixture executed as that day's nightly (a re-run of a day changes nothing:
    tests/test_serving.py runs the last day again)."""
    day = pipeline_run.days[-1]
    nightly = pipeline_run.defs.resolve_schedule_def("nightly")
    assert nightly.job_name == pipeline_run.job.name
    tick = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC).replace(
        hour=2
    )
    with dg.build_schedule_context(scheduled_execution_time=tick) as ctx:
        requests = nightly.evaluate_tick(ctx).run_requests or []
    assert [r.partition_key for r in requests] == [day.isoformat()]
    last = pipeline_run.nightly[-1]
    assert last.success
    assert last.dagster_run.tags["dagster/partition"] == requests[0].partition_key


def test_every_alive_workload_has_metrics(pipeline_run: PipelineRun) -> None:
    cluster = pipeline_run.simulator.cluster
    now = cluster.now()
    with read_only(pipeline_run.paths) as con:
        have = defaultdict(set)
        for d, w in con.execute(
            "select distinct usage_date, workload_id from raw.workload_metrics"
        ).fetchall():
            have[d].add(w)
    for day in pipeline_run.days:
        start, end = _day_bounds(day)
        for index in cluster.snapshot(now).index.tolist():
            doc = cluster.workload_json(index, now)
            if cluster.ground_truth(doc["id"], start, end).allocated_gpu_seconds > 0:
                assert doc["id"] in have[day]


def test_the_nightly_runs_succeed(pipeline_run: PipelineRun) -> None:
    assert [r.success for r in pipeline_run.nightly] == [True] * len(pipeline_run.days)


def _gpu_price(prices: list[dict[str, str]], cluster: str, pool: str, day: date) -> float:
    """The documented rule, independently: the row of the cluster and node pool valid on the
    day; else the node pool's row for any cluster ('*'); else the default row."""
    for wanted in ((cluster, pool), ("*", pool), ("*", "*")):
        rows = [
            r
            for r in prices
            if (r["cluster_id"], r["nodepool"]) == wanted
            and date.fromisoformat(r["valid_from"]) <= day
        ]
        if rows:
            return float(max(rows, key=lambda r: r["valid_from"])["usd_per_gpu_hour"])
    raise AssertionError(f"no price for {cluster}/{pool}")


def _seed(name: str) -> list[dict[str, str]]:
    import csv

    from workloads_etl.warehouse.dbt import dbt_project_dir

    with (dbt_project_dir() / "seeds" / f"{name}.csv").open() as f:
        return list(csv.DictReader(f))


def test_costs_per_node_pool_and_department_match_the_ground_truth(
    pipeline_run: PipelineRun,
) -> None:
    """Cost per (cluster, node pool) and per department from the marts against the
    simulator's exact ground truth, with moves of project and node pool: GPU-seconds priced
    per cluster and pool, CPU and memory charged only while a pod runs. The sampling bound
    of each workload-day (one step per run-interval edge, at every rate it is priced at)
    is summed into every group the workload-day touches."""
    cluster = pipeline_run.simulator.cluster
    now = cluster.now()
    gpu_prices = _seed("gpu_prices")
    resource = {r["resource"]: float(r["usd_per_unit_hour"]) for r in _seed("resource_prices")}
    expected: dict[tuple[str, ...], float] = defaultdict(float)
    bound: dict[tuple[str, ...], float] = defaultdict(float)
    moved = {m.workload_id for m in cluster.moves()}
    moved_days = 0
    for day in pipeline_run.days:
        start, end = _day_bounds(day)
        for index in cluster.snapshot(now).index.tolist():
            workload_id = cluster.workload_json(index, now)["id"]
            entries = cluster.attributed_truth(workload_id, start, end)
            if not entries:
                continue
            intervals = [
                (a, b)
                for a, b in cluster.run_intervals(index)
                if a < end and (b is None or b > start)
            ]
            moved_days += workload_id in moved
            for e in entries:
                gpu_price = _gpu_price(gpu_prices, e.cluster_id, e.nodepool, day)
                cpu = e.cpu_request_cores * resource["cpu_core"]
                memory = e.cpu_memory_request_bytes / 2**30 * resource["memory_gib"]
                cost = (
                    e.allocated_gpu_seconds * gpu_price + e.running_seconds * (cpu + memory)
                ) / 3600
                gpus = e.allocated_gpu_seconds / e.running_seconds if e.running_seconds else 0.0
                edge = STEP * len(intervals) * (gpus * gpu_price + cpu + memory) / 3600
                for key in (("pool", e.cluster_id, e.nodepool), ("dept", e.department_id)):
                    expected[key] += cost
                    bound[key] += edge
    assert moved_days > 0, "no moved workload ran in these days"
    with read_only(pipeline_run.paths) as con:
        rows = con.execute(
            "select 'pool', cluster_id, nodepool, sum(total_cost) from "
            "marts.fct_workload_usage_daily where usage_date between ? and ? group by all "
            "union all select 'dept', department_id, null, sum(total_cost) from "
            "marts.fct_workload_usage_daily where usage_date between ? and ? group by all",
            [pipeline_run.days[0], pipeline_run.days[-1]] * 2,
        ).fetchall()
    got = {(kind, a) if kind == "dept" else (kind, a, b): cost for kind, a, b, cost in rows}
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    for key, cost in expected.items():
        assert abs(got[key] - cost) <= bound[key] + 1e-6, (key, got[key], cost, bound[key])
