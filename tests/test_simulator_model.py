"""The synthetic cluster behind the simulated control plane (``workloads_etl.simulator.cluster``).

Small configurations only; the 100k-workload build is measured in
``bench/bench_simulator_model.py``.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from openapi_schema import schema_errors

from workloads_etl.openapi import enum_values, load_spec
from workloads_etl.simulator import catalogue, rng
from workloads_etl.simulator.catalogue import NEVER
from workloads_etl.simulator.cluster import (
    SAMPLED_STATE_CACHE_SIZE,
    SNAPSHOT_CACHE_SIZE,
    Cluster,
    GroundTruth,
)
from workloads_etl.simulator.config import SimulatorConfig, catalogue_for
from workloads_etl.simulator.metrics import T_DISTRIBUTED

NOW = datetime(2026, 11, 20, 15, 30, 17, tzinfo=UTC)  # a Friday afternoon
SMALL = SimulatorConfig(seed=3, workloads=400, days=5, now=NOW)
BUSY = SimulatorConfig(seed=5, workloads=3000, days=4, now=NOW)
DEMO = SimulatorConfig(seed=7, workloads=300, days=14, now=NOW)  # the demo's, clock frozen
METRIC_TYPES = enum_values("WorkloadMetricType")
TERMINAL = {"Completed", "Failed", "Stopped"}


@pytest.fixture(scope="module")
def small() -> Cluster:
    return Cluster(SMALL)


@pytest.fixture(scope="module")
def busy() -> Cluster:
    return Cluster(BUSY)


@pytest.fixture(scope="module")
def demo() -> Cluster:
    return Cluster(DEMO)


def _dt64(t: datetime) -> np.datetime64:
    return np.datetime64(t.astimezone(UTC).replace(tzinfo=None), "us")


def _grid(start: datetime, end: datetime, step_s: int) -> np.ndarray:
    return np.arange(_dt64(start), _dt64(end), np.timedelta64(step_s, "s"))


def _seconds(t: datetime) -> int:
    return int(t.timestamp())


def _gpus(c: Cluster, i: int) -> float:
    return float(c.draws.size_q[i]) / 4


def _end(c: Cluster, i: int) -> int:
    return int(c.timeline.end[i])


def _one(series: list[tuple[dict[str, str] | None, np.ndarray]]) -> np.ndarray:
    assert len(series) == 1 and series[0][0] is None
    return series[0][1]


# ----------------------------------------------------------------------------- topology


def test_fixed_clusters_and_node_pools(small: Cluster) -> None:
    assert [(c.id, c.name) for c in small.clusters] == [
        ("7c1f3a52-6a1e-4c4f-9f3e-2b8f0d9e1a01", "prod-east"),
        ("0b9d2e61-3c7a-4e58-8d2f-5a6b7c8d9e02", "research-west"),
    ]
    east, west = (c.id for c in small.clusters)
    assert [(p.name, p.cluster_id, p.gpu_type, p.gpus) for p in small.nodepools] == [
        ("a100", east, "A100-80GB", 32),
        ("h100-80gb", east, "H100-80GB", 16),
        ("l40s-48gb", east, "L40S-48GB", 24),
        ("a100", west, "A100-40GB", 16),
        ("t4-16gb", west, "T4-16GB", 16),
    ]


def test_org_chart_and_requests(small: Cluster) -> None:
    docs = [small.workload_json(i, NOW) for i in range(len(small.snapshot(NOW)))]
    depts = {(d["departmentId"], d["departmentName"]) for d in docs}
    assert 4 <= len(depts) <= 6
    assert {i for i, _ in depts} <= {str(k) for k in range(1, 7)}
    projects: dict[str, set[str]] = {}
    for d in docs:
        projects.setdefault(d["departmentId"], set()).add(d["projectId"])
        assert d["namespace"] == f"runai-{d['projectName']}"
        assert d["projectName"].startswith("proj-")
        assert d["tenantId"] == 1001
        assert d["submittedBy"].endswith("@example.com") and d["submittedBy"].count(".") == 2
    assert all(len(p) <= 4 for p in projects.values())
    assert 20 <= len({d["submittedBy"] for d in docs}) <= 40
    # every project lives in one cluster; both clusters have projects
    cluster_of = {(d["projectId"], d["clusterId"]) for d in docs}
    assert len(cluster_of) == len({p for p, _ in cluster_of})
    assert len({c for _, c in cluster_of}) == 2
    # types, categories, priority classes
    kinds = {(d["type"], d["category"], d["priorityClassName"], d["priority"]) for d in docs}
    assert kinds == {
        ("training", "Train", "train", 50),
        ("distributed", "Train", "train", 50),
        ("workspace", "Build", "build", 100),
        ("workspace", "Build", "interactive-preemptible", 75),
        ("inference", "Deploy", "inference", 125),
    }
    for d in docs:
        assert d["preemptible"] == (d["priority"] < 100)
        req, pod = d["workloadRequestedResources"], d["podsRequestedResources"]
        pods = d["requestedPods"]["number"]
        assert req["gpu"]["request"] == pytest.approx(pod["gpu"]["request"] * pods)
        if d["type"] == "distributed":
            assert pods >= 2 and d["distributedFramework"] in ("PyTorch", "MPI")
        else:
            assert "distributedFramework" not in d
        pool = next(
            p
            for p in small.nodepools
            if (p.cluster_id, p.name) == (d["clusterId"], d["requestedNodePools"][0])
        )
        assert req["gpu"]["request"] <= pool.gpus / 2
        assert len(d["requestedNodePools"]) == len(set(d["requestedNodePools"]))
        assert 1 <= len(d["requestedNodePools"]) <= 3  # a pool move puts the new pool first
    per_pod = {d["podsRequestedResources"]["gpu"]["request"] for d in docs}
    assert {0.0, 0.25, 0.5, 1.0, 2.0, 4.0} <= per_pod
    memory = [d["podsRequestedResources"]["cpuMemory"]["request"] for d in docs]
    units = [re.fullmatch(r"[1-9][0-9]*(Gi|M)", m) for m in memory]
    assert all(units) and {u.group(1) for u in units if u} == {"Gi", "M"}


# ----------------------------------------------------------------------------- timeline


def test_timeline_anchor_visibility_and_clock(small: Cluster) -> None:
    assert small.anchor == datetime(2026, 11, 15, tzinfo=UTC)
    created = small.draws.created
    assert np.all(np.diff(created) >= 0)
    assert created[0] >= _seconds(small.anchor)
    assert created[-1] < _seconds(small.anchor + timedelta(days=6))
    assert created[-1] > _seconds(NOW)  # some submissions lie in the future
    snap = small.snapshot(NOW)
    n = len(snap)
    assert n == int(np.sum(created <= _seconds(NOW)))
    assert snap.table.column("index").to_pylist() == list(range(n))
    later = small.draws.ids[n]  # exists in the model, not created yet
    assert small.workload_index(later) is None
    assert small.workload_index(small.draws.ids[n - 1]) == n - 1
    assert small.workload_index("00000000-0000-4000-8000-000000000000") is None
    with pytest.raises(LookupError):
        small.workload_json(n, NOW)
    # weekday working hours see more submissions than nights and the weekend
    hours = (created // 3600) % 24
    assert np.sum((hours >= 10) & (hours < 17)) > 2 * np.sum(hours < 7)
    wall = Cluster(SimulatorConfig(seed=3, workloads=50, days=2))
    assert abs((wall.now() - datetime.now(UTC)).total_seconds()) < 5


def test_snapshot_is_cached_per_second(small: Cluster) -> None:
    a = small.snapshot(NOW)
    assert small.snapshot(NOW + timedelta(milliseconds=700)) is a
    assert small.snapshot(NOW + timedelta(seconds=1)) is not a


def test_snapshot_cache_keeps_the_latest_four_seconds() -> None:
    c = Cluster(SimulatorConfig(seed=3, workloads=60, days=2, now=NOW))
    seconds = [NOW - timedelta(seconds=k) for k in range(17)]
    first = [c.snapshot(at) for at in seconds]
    assert len(c._snapshots) == SNAPSHOT_CACHE_SIZE == 4
    for k in range(13, 17):  # the latest four are served from the cache
        assert c.snapshot(seconds[k]) is first[k]
    again = c.snapshot(seconds[0])  # evicted long ago: built anew, equal
    assert again is not first[0] and again.table.equals(first[0].table)
    assert len(c._snapshots) == 4


def test_config_repr_hides_the_client_secret() -> None:
    config = SimulatorConfig(client_secret="s3cr3t-value-xyz", now=NOW)
    assert "s3cr3t-value-xyz" not in repr(config)
    assert "client_id='workloads-etl-demo'" in repr(config)
    assert config.client_secret == "s3cr3t-value-xyz"


def test_snapshot_columns(small: Cluster) -> None:
    table = small.snapshot(NOW).table
    expected = {
        "index": pa.int64(),
        "id": pa.string(),
        "deleted": pa.bool_(),
        "createdAt": pa.timestamp("us", tz="UTC"),
        "allocatedGPU": pa.float64(),
        "idleGpus": pa.int64(),
        "totalPendingTimeSeconds": pa.int64(),
        "priority": pa.int64(),
    }
    for name, typ in expected.items():
        assert table.schema.field(name).type == typ, name
    pattern = load_spec()["components"]["parameters"]["WorkloadsFilter"]["schema"]["items"]
    fields = re.match(r"\^\(([^)]*)\)", pattern["pattern"])
    assert fields is not None
    assert set(fields.group(1).split("|")) <= set(table.column_names)


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_cluster_other_seed_other_cluster(small: Cluster) -> None:
    twin = Cluster(SMALL)
    for at in (NOW - timedelta(days=2, seconds=13), NOW, NOW + timedelta(days=9)):
        a, b = small.snapshot(at), twin.snapshot(at)
        assert a.table.equals(b.table)
        for i in range(0, len(a), 7):
            assert json.dumps(small.workload_json(i, at)) == json.dumps(twin.workload_json(i, at))
    ts = _grid(NOW - timedelta(days=3), NOW, 97)
    for i in range(0, len(small.snapshot(NOW)), 25):
        for metric in ("GPU_UTILIZATION", "CPU_USAGE_CORES", "GPU_MEMORY_USAGE_BYTES"):
            x, y = _one(small.metrics(i, metric, ts)), _one(twin.metrics(i, metric, ts))
            assert np.array_equal(x, y, equal_nan=True)
    other = Cluster(SimulatorConfig(seed=4, workloads=400, days=5, now=NOW))
    assert other.draws.ids[0] != small.draws.ids[0]
    assert not other.snapshot(NOW).table.equals(small.snapshot(NOW).table)
    assert not np.array_equal(small.draws.created, other.draws.created)


def test_metrics_are_a_function_of_the_instant(small: Cluster) -> None:
    """Two different timestamp arrays give the same values at the instants they share."""
    busiest = np.argsort(-np.diff(small.timeline.iv_off))[:5].tolist()
    windows = [
        _grid(NOW - timedelta(days=5), NOW + timedelta(days=1), 60),
        _grid(NOW - timedelta(days=4, minutes=3), NOW, 37 * 60),
    ]
    ts_a, ts_b = windows
    common, ia, ib = np.intersect1d(ts_a, ts_b, return_indices=True)
    assert len(common) > 50
    for i in [*busiest, 0, 17, 111]:
        for metric in METRIC_TYPES:
            sa, sb = small.metrics(i, metric, ts_a), small.metrics(i, metric, ts_b)
            assert [lab for lab, _ in sa] == [lab for lab, _ in sb]
            for (_, va), (_, vb) in zip(sa, sb, strict=True):
                assert np.array_equal(va[ia], vb[ib], equal_nan=True), (i, metric)
    # one instant at a time agrees with the arrays too
    i = busiest[0]
    for k in range(0, len(common), max(1, len(common) // 20)):
        alone = _one(small.metrics(i, "GPU_UTILIZATION", common[k : k + 1]))
        both = _one(small.metrics(i, "GPU_UTILIZATION", ts_a))[ia[k]]
        assert np.array_equal(alone, [both], equal_nan=True)


def _splitmix64(x: int) -> int:
    """splitmix64's finaliser on one Python int: the reference for ``rng``'s arrays."""
    mask = (1 << 64) - 1
    z = (x + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_the_per_minute_hash_is_splitmix64_of_key_salt_and_minute() -> None:
    """``uniform`` is ``mix64(mix64(key ^ mix64(salt)) ^ counter)``, top 53 bits, whether
    the key is an int or an array and the counter an array or a single value."""
    keys = [0, 1, 123456789, 2**63 + 5, 2**64 - 1]
    minutes = np.array([0, 1, 29_400_000, 2**40 + 7], dtype=np.int64)

    def expected(key: int, salt: int, minute: int) -> float:
        return (_splitmix64(_splitmix64(key ^ _splitmix64(salt)) ^ minute) >> 11) * 2.0**-53

    for salt in (11, 16):
        want = np.array([[expected(k, salt, int(m)) for m in minutes] for k in keys])
        for row, key in enumerate(keys):
            assert rng.uniform(key, salt, minutes).tolist() == want[row].tolist()
            assert float(rng.uniform(key, salt, int(minutes[2]))) == want[row, 2]
        by_array = rng.uniform(np.array(keys, dtype=np.uint64), salt, int(minutes[3]))
        assert by_array.tolist() == want[:, 3].tolist()
        as_column = np.array(keys, dtype=np.uint64)[:, None]
        assert rng.uniform(as_column, salt, minutes).tolist() == want.tolist()
        with warnings.catch_warnings():  # wrapping, never numpy's scalar overflow warnings
            warnings.simplefilter("error", RuntimeWarning)
            one_key = rng.uniform(np.uint64(keys[3]), salt, minutes)  # a numpy scalar key
        assert one_key.tolist() == want[3].tolist()
    assert rng.mix64(np.array(keys, dtype=np.uint64)).tolist() == [_splitmix64(k) for k in keys]


def test_series_from_the_kept_run_state_equal_a_fresh_clusters() -> None:
    """Asked again over the same instants (the run state and shared series come from the
    cache), in other batches and orders, and after the clock moved, every series equals
    what a cluster built afresh gives for that type alone."""
    c = Cluster(SMALL)
    busiest = np.argsort(-np.diff(c.timeline.iv_off))[:6].tolist()
    grid = _grid(NOW - timedelta(days=2), NOW, 60)
    halves = [METRIC_TYPES[::2], METRIC_TYPES[1::2], METRIC_TYPES[::-1]]

    def fresh(i: int, metric: str, now: datetime) -> list[tuple[dict[str, str] | None, Any]]:
        alone = Cluster(SMALL)
        alone.set_now(now)
        return alone.metrics(i, metric, grid)

    def check(now: datetime) -> None:
        for i in busiest:
            want = {m: fresh(i, m, now) for m in METRIC_TYPES}
            for batch in halves:
                got = c.metrics_batch(i, list(batch), grid)
                for metric, series in zip(batch, got, strict=True):
                    assert [lab for lab, _ in series] == [lab for lab, _ in want[metric]]
                    for (_, values), (_, expected) in zip(series, want[metric], strict=True):
                        assert np.array_equal(values, expected, equal_nan=True), (i, metric)

    check(NOW)
    assert 0 < len(c._sampled) <= SAMPLED_STATE_CACHE_SIZE
    earlier = NOW - timedelta(hours=7)
    c.set_now(earlier)  # the kept states of the old clock must not answer
    check(earlier)


def test_utilisation_is_constant_within_a_minute(small: Cluster) -> None:
    checked = 0
    for i in range(0, len(small.snapshot(NOW)), 9):
        starts = np.array([_seconds(s) for s, _ in small.run_intervals(i)])
        if not len(starts):
            continue
        t0 = int(starts[0] // 60 * 60 + 120)  # a minute wholly inside the first run
        second = np.arange(t0, t0 + 60).astype("datetime64[s]").astype("datetime64[us]")
        for metric in ("GPU_UTILIZATION", "CPU_USAGE_CORES", "GPU_MEMORY_USAGE_BYTES"):
            v = _one(small.metrics(i, metric, second))
            if np.all(np.isnan(v)):
                continue  # the run is shorter than that
            assert np.all(v == v[0]), (i, metric)
            checked += 1
    assert checked > 30


# ----------------------------------------------------------------------------- capacity


PoolKey = tuple[str, str]  # (cluster id, node pool name): a name alone is ambiguous


def _pool_events(c: Cluster) -> dict[PoolKey, list[tuple[int, float]]]:
    """Allocation changes per (cluster, pool); a workload that moves pool at midnight M
    counts in the new pool from M + 1 s on (the first whole second after M)."""
    events: dict[PoolKey, list[tuple[int, float]]] = {
        (p.cluster_id, p.name): [] for p in c.nodepools
    }
    moves = {m.index: m for m in c.moves()}
    for i in range(c.config.workloads):
        gpus = _gpus(c, i)
        home = c.nodepools[int(c.draws.pool[i])]
        old = new = (home.cluster_id, home.name)
        cut = NEVER
        if i in moves:
            new, cut = (moves[i].cluster_id, moves[i].nodepool_to), _seconds(moves[i].at) + 1
        for s, e in c.run_intervals(i):
            a, b = _seconds(s), NEVER if e is None else _seconds(e)
            pieces = [(a, min(b, cut), old), (max(a, cut), b, new)]
            for x, y, key in pieces:
                if x < y:
                    events[key].append((x, gpus))
                    if y < NEVER:
                        events[key].append((y, -gpus))
    return events


@pytest.mark.parametrize("name", ["busy", "demo"])
def test_allocation_never_exceeds_node_pool_capacity(
    name: str, request: pytest.FixtureRequest
) -> None:
    c: Cluster = request.getfixturevalue(name)
    events = _pool_events(c)
    preempted = sum(len(c.run_intervals(i)) > 1 for i in range(c.config.workloads))
    full = 0
    for pool in c.nodepools:
        key = (pool.cluster_id, pool.name)
        evs = sorted(events[key], key=lambda x: (x[0], x[1]))  # releases first
        level = 0.0
        peak = 0.0
        for k, (t, d) in enumerate(evs):
            level += d
            peak = max(peak, level)
            assert level <= pool.gpus + 1e-9, (key, t)
            if k + 1 == len(evs) or evs[k + 1][0] != t:
                at = datetime.fromtimestamp(t, UTC)
                got = c.gpu_allocated_at(pool.name, at, cluster_id=pool.cluster_id)
                assert got == pytest.approx(level)
        full += peak == pool.gpus
        before = c.anchor - timedelta(days=1)
        assert c.gpu_allocated_at(pool.name, before, cluster_id=pool.cluster_id) == 0
    if name == "busy":
        assert preempted > 10  # preemption and resumption happen
        assert full >= 3  # pools do fill up
    else:
        assert any(m.nodepool_from != m.nodepool_to for m in c.moves())


def test_scheduler_semantics(busy: Cluster) -> None:
    n = busy.config.workloads
    work_done = 0
    for i in range(n):
        intervals = busy.run_intervals(i)
        ready = int(busy.draws.created[i] + busy.draws.ready_delay[i])
        if intervals:
            assert _seconds(intervals[0][0]) >= ready
        for (_, e), (s, _) in itertools.pairwise(intervals):
            assert e is not None and _seconds(s) >= _seconds(e)
        if _end(busy, i) < NEVER:  # finished: it ran exactly the time it needed
            ran = sum(_seconds(e) - _seconds(s) for s, e in intervals if e is not None)
            assert ran == busy.timeline.work[i]
            assert _seconds(intervals[-1][1]) == _end(busy, i)  # type: ignore[arg-type]
            work_done += 1
        if len(intervals) > 1:
            assert busy.workload_json(i, busy.now() + timedelta(days=9))["preemptible"]
    assert work_done > 0.9 * n
    # CPU-only workloads never wait for GPUs
    cpu_only = np.flatnonzero(busy.draws.size_q == 0)
    assert len(cpu_only) > 20
    for i in cpu_only.tolist():
        first = busy.run_intervals(i)[0][0]
        assert _seconds(first) == busy.draws.created[i] + busy.draws.ready_delay[i]


def test_pending_times_are_realistic(busy: Cluster) -> None:
    table = busy.snapshot(busy.now() + timedelta(days=30)).table
    pend = np.asarray(table.column("totalPendingTimeSeconds").to_numpy())
    assert np.median(pend) < 120  # most start within seconds
    assert np.quantile(pend, 0.9) > 60
    assert np.quantile(pend, 0.99) > 1800  # contention: some wait for hours
    assert pend.max() < 4 * 86_400


# ----------------------------------------------------------------------------- lifecycle


def test_lifecycle_and_metric_edges(small: Cluster) -> None:
    instants = [NOW - timedelta(days=k, hours=3 * k, seconds=7 * k + 1) for k in range(5)]
    instants.append(NOW + timedelta(days=20))  # the state ahead; no metric samples there
    for at in instants:
        past = at < NOW
        snap = small.snapshot(at)
        deleted = snap.deleted
        for i in range(len(snap)):
            d = small.workload_json(i, at)
            phase = d["phase"]
            gpus = _gpus(small, i)
            alloc = _one(small.metrics(i, "GPU_ALLOCATION", np.array([_dt64(at)])))[0]
            assert (d["completedAt"] is not None) == (phase in TERMINAL)
            assert (d["deletedAt"] is not None) == bool(deleted[i])
            if d["deletedAt"]:
                assert phase in TERMINAL and d["deletedAt"] >= d["completedAt"]
            if not past:
                assert np.isnan(alloc)
            if phase == "Running":
                assert alloc == gpus or not past
                assert d["runningPods"] == d["requestedPods"]["number"]
                assert d["currentNodePools"] == d["requestedNodePools"][:1]
                assert d["allocatedResources"]["gpu"] == gpus
            else:
                assert d["runningPods"] == 0 and d["currentNodePools"] == []
            if phase == "Pending":
                assert alloc == 0.0 or not past
                assert d["allocatedResources"] is None or d["allocatedResources"]["gpu"] == 0
            if phase in TERMINAL:
                assert np.isnan(alloc)  # no samples at or after the end
            created = datetime.fromisoformat(d["createdAt"])
            end = min(at, datetime.fromisoformat(d["completedAt"] or "9999-01-01T00:00:00Z"))
            lifetime = int((end - created).total_seconds())
            assert d["totalPendingTimeSeconds"] + d["totalRunningTimeSeconds"] == lifetime
            assert d["totalPendingTimeSeconds"] >= 0 and d["totalRunningTimeSeconds"] >= 0
            assert d["phaseUpdatedAt"] >= d["createdAt"]
    # the same workload evolves with the clock
    i = int(np.flatnonzero(np.diff(small.timeline.iv_off) >= 1)[0])
    (s, e), *_ = small.run_intervals(i)
    assert e is not None
    before = small.workload_json(i, s - timedelta(seconds=1))
    during = small.workload_json(i, s)
    assert before["phase"] == "Pending" and during["phase"] == "Running"
    assert during["phaseUpdatedAt"] == s.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_no_samples_at_or_after_the_cluster_clock(small: Cluster) -> None:
    running = np.flatnonzero(
        small.snapshot(NOW)._state.running & (small.draws.size_q[: len(small.snapshot(NOW))] > 0)
    )
    assert len(running) >= 5
    tick = np.timedelta64(1, "us")
    probe = np.array(
        [_dt64(NOW - timedelta(minutes=5)), _dt64(NOW) - tick, _dt64(NOW), _dt64(NOW) + tick]
        + [_dt64(NOW + timedelta(minutes=m)) for m in (1, 60, 60 * 24 * 30)]
    )
    for i in running.tolist():
        for metric in ("GPU_ALLOCATION", "GPU_UTILIZATION", "POD_COUNT", "CPU_REQUEST_CORES"):
            values = _one(small.metrics(i, metric, probe))
            assert not np.isnan(values[:2]).any(), (i, metric)  # still running just before
            assert np.isnan(values[2:]).all(), (i, metric)  # nothing measured yet
        # ground truth stops at the clock too: the hour after NOW adds nothing
        wid = small.draws.ids[i]
        hour_before = small.ground_truth(wid, NOW - timedelta(hours=1), NOW)
        around = small.ground_truth(wid, NOW - timedelta(hours=1), NOW + timedelta(hours=1))
        assert around == hour_before
        assert small.ground_truth(wid, NOW, NOW + timedelta(days=3)) == GroundTruth(0.0, 0.0)
        started = max(a for a, _ in small.run_intervals(i) if a <= NOW)  # runs since then
        since = max(started, NOW - timedelta(hours=1))
        assert hour_before.allocated_gpu_seconds == pytest.approx(
            _gpus(small, i) * (NOW - since).total_seconds()
        )


def test_no_samples_outside_the_workload_life(small: Cluster) -> None:
    for i in range(0, len(small.snapshot(NOW)), 5):
        created = int(small.draws.created[i])
        end = _end(small, i)
        probe = [created - 61, created - 1, created, created + 1]
        if end < NEVER:
            probe += [end - 1, end, end + 1, end + 3600]
        ts = np.array(probe, dtype="datetime64[s]").astype("datetime64[us]")
        for metric in METRIC_TYPES:
            for _, v in small.metrics(i, metric, ts):
                assert np.all(np.isnan(v[:2])), (i, metric)
                if end < NEVER:
                    assert np.all(np.isnan(v[-3:])), (i, metric)
                if metric in ("POD_COUNT", "GPU_ALLOCATION", "CPU_REQUEST_CORES"):
                    assert not np.isnan(v[2]) and not np.isnan(v[3])


def test_deleted_workloads(small: Cluster) -> None:
    late = NOW + timedelta(days=20)
    snap = small.snapshot(late)
    deleted = snap.deleted
    assert 0.3 < deleted.mean() < 0.8
    table = snap.table
    deleted_at = table.column("deletedAt").to_pylist()
    completed = table.column("completedAt").to_pylist()
    delay = [
        (d - c).total_seconds() for d, c, x in zip(deleted_at, completed, deleted, strict=True) if x
    ]
    assert min(delay) == 0 and max(delay) > 3600
    # at the deletion instant the workload turns deleted, not before
    i = int(np.flatnonzero(deleted)[-1])
    at = deleted_at[i]
    assert small.snapshot(at).deleted[i]
    assert not small.snapshot(at - timedelta(seconds=1)).deleted[i]


def test_metric_types_and_values(small: Cluster) -> None:
    ts = _grid(NOW - timedelta(days=5), NOW, 300)
    seen_nim = seen_nvlink = False
    zombies = busy_avg = 0
    mem_below = mem_samples = 0
    for i in range(0, len(small.snapshot(NOW)), 3):
        d = small.workload_json(i, NOW)
        gpus = _gpus(small, i)
        running = _one(small.metrics(i, "RUNNING_POD_COUNT", ts)) > 0
        for metric in METRIC_TYPES:
            series = small.metrics(i, metric, ts)
            if metric.startswith("NIM_"):
                assert bool(series) == (d["type"] == "inference"), metric
                seen_nim |= bool(series)
            elif metric == "NVLINK_BANDWIDTH_TOTAL":
                assert bool(series) == (gpus >= 2)
                seen_nvlink |= bool(series)
            else:
                assert len(series) == 1 and series[0][0] is None
            for _, v in series:
                assert np.all(np.isnan(v) | (v >= 0))
        util = _one(small.metrics(i, "GPU_UTILIZATION", ts))
        assert np.all(np.isnan(util) | ((util >= 0) & (util <= 100)))
        assert np.all(util[~running & ~np.isnan(util)] == 0)
        mem = _one(small.metrics(i, "GPU_MEMORY_USAGE_BYTES", ts))
        req = _one(small.metrics(i, "GPU_MEMORY_REQUEST_BYTES", ts))
        if running.sum() > 10 and gpus > 0:
            on = util[running]
            if np.all(on == 0):
                zombies += 1
            elif on.mean() > 40:
                busy_avg += 1
            mem_below += int(np.sum(mem[running] <= req[running]))
            mem_samples += int(running.sum())
    assert seen_nim and seen_nvlink
    assert mem_below > 0.9 * mem_samples  # GPU memory use stays mostly below the request
    assert zombies >= 1 and busy_avg >= 5
    with pytest.raises(ValueError, match="unknown metric type"):
        small.metrics(0, "NOT_A_METRIC", ts)


# ----------------------------------------------------------------------------- ground truth


def _gt_cases(c: Cluster) -> list[int]:
    runs = np.diff(c.timeline.iv_off)
    gpus = c.draws.size_q > 0
    cases = [
        int(np.flatnonzero(gpus & (runs >= 3))[0]),  # preempted twice
        int(np.flatnonzero(gpus & (runs == 2))[0]),
        int(np.flatnonzero(c.draws.zombie & (runs >= 1))[0]),
        int(np.flatnonzero((c.draws.size_q == 1) & (runs >= 1))[0]),  # a quarter GPU
        int(np.flatnonzero((c.draws.type == T_DISTRIBUTED) & (runs >= 1))[0]),
        int(np.flatnonzero(~gpus & (runs >= 1))[0]),  # CPU-only
    ]
    return cases


def _dense(c: Cluster, i: int, lo: int, hi: int) -> tuple[float, float]:
    ts = np.arange(lo, hi).astype("datetime64[s]").astype("datetime64[us]")
    alloc = np.nan_to_num(_one(c.metrics(i, "GPU_ALLOCATION", ts)))
    util = np.nan_to_num(_one(c.metrics(i, "GPU_UTILIZATION", ts)))
    return float(alloc.sum()), float((alloc * util / 100).sum())


def _window(c: Cluster, i: int, max_days: float = 2.0) -> tuple[int, int]:
    intervals = c.run_intervals(i)
    lo = _seconds(intervals[0][0]) - 500
    last = intervals[-1][1]
    hi = _seconds(last) + 500 if last is not None else lo + 86_400
    return lo, min(hi, lo + int(max_days * 86_400))


def test_ground_truth_equals_dense_integration(busy: Cluster) -> None:
    for i in _gt_cases(busy):
        lo, hi = _window(busy, i)
        for a, b in ((lo, hi), (lo + 1234, hi - 777), ((lo + hi) // 2, hi)):
            truth = busy.ground_truth(
                busy.draws.ids[i], datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC)
            )
            alloc, used = _dense(busy, i, a, b)
            assert truth.allocated_gpu_seconds == pytest.approx(alloc, rel=1e-12, abs=1e-9)
            assert truth.used_gpu_seconds == pytest.approx(used, rel=1e-9, abs=1e-9)
    empty = busy.ground_truth(busy.draws.ids[0], busy.anchor, busy.anchor)
    assert empty == GroundTruth(0.0, 0.0)


def test_sampled_estimate_within_stated_bound(busy: Cluster) -> None:
    day0 = busy.anchor
    lo, hi = day0, day0 + timedelta(days=busy.config.days + 1)
    ts = _grid(lo, hi, 60)  # aligned to UTC midnight, each sample stands for [t, t+60s)
    off = 0
    checked = 0
    for i in range(0, busy.config.workloads, 7):
        if not busy.run_intervals(i):
            continue
        alloc = np.nan_to_num(_one(busy.metrics(i, "GPU_ALLOCATION", ts)))
        util = np.nan_to_num(_one(busy.metrics(i, "GPU_UTILIZATION", ts)))
        truth = busy.ground_truth(busy.draws.ids[i], lo, hi)
        edges = [t for iv in busy.run_intervals(i) for t in iv if t is not None and lo < t < hi]
        bound = _gpus(busy, i) * 60 * len(edges)
        assert abs(alloc.sum() * 60 - truth.allocated_gpu_seconds) <= bound + 1e-6
        assert abs((alloc * util / 100).sum() * 60 - truth.used_gpu_seconds) <= bound + 1e-6
        off += abs(alloc.sum() * 60 - truth.allocated_gpu_seconds) > 0
        checked += 1
    assert checked > 300
    assert off > checked // 2  # edges fall inside minutes: the bound is not vacuous


# ----------------------------------------------------------------------------- the contract


def test_every_workload_object_validates_against_the_spec(small: Cluster) -> None:
    for at in (NOW - timedelta(days=3), NOW, NOW + timedelta(days=20)):
        for i in range(len(small.snapshot(at))):
            doc = small.workload_json(i, at)
            assert schema_errors(doc, "Workload") == [], (i, at)


def test_optional_fields_without_a_null_are_left_out(small: Cluster) -> None:
    docs = [small.workload_json(i, NOW) for i in range(len(small.snapshot(NOW)))]
    cli = [d for d in docs if d["source"] == "CLI"]
    cpu_only = [d for d in docs if d["workloadRequestedResources"]["gpu"]["request"] == 0]
    assert cli and cpu_only and len(cli) < len(docs)
    assert all("sourceApi" not in d for d in cli)
    assert all(d["sourceApi"] == "WorkloadsV2" for d in docs if d["source"] != "CLI")
    assert all("phaseReason" not in d for d in docs)
    for d in cpu_only:
        for section in ("workloadRequestedResources", "podsRequestedResources"):
            assert "gpuRequestType" not in d[section]
    gpu = next(d for d in docs if d["workloadRequestedResources"]["gpu"]["request"] > 0)
    assert gpu["podsRequestedResources"]["gpuRequestType"] == "portion"
    # the validation is strict OpenAPI 3.0.3: the nulls these fields used to carry fail it
    assert schema_errors({**cli[0], "sourceApi": None}, "Workload") != []
    assert schema_errors({**docs[0], "phaseReason": None}, "Workload") != []
    request = {**cpu_only[0]["podsRequestedResources"], "gpuRequestType": None}
    assert schema_errors(request, "WorkloadRequestResources") != []


def test_snapshot_columns_agree_with_workload_objects(small: Cluster) -> None:
    at = NOW - timedelta(hours=5, seconds=3)
    rows = small.snapshot(at).table.to_pylist()

    def iso(t: datetime | None) -> str | None:
        return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    same = [
        "id",
        "type",
        "name",
        "clusterId",
        "projectId",
        "projectName",
        "departmentId",
        "departmentName",
        "submittedBy",
        "phase",
        "category",
        "priority",
        "priorityClassName",
        "totalPendingTimeSeconds",
        "totalRunningTimeSeconds",
        "idleGpus",
        "idleAllocatedGpus",
    ]
    times = ["createdAt", "deletedAt", "completedAt", "phaseUpdatedAt", "guaranteedRuntimeEndsAt"]
    idle = 0
    for row in rows:
        d = small.workload_json(row["index"], at)
        for f in same:
            assert row[f] == d[f], f
        for f in times:
            assert iso(row[f]) == d[f], f
        assert row["nodepool"] == d["requestedNodePools"][0]
        assert row["allocatedGPU"] == (d["allocatedResources"] or {"gpu": 0.0})["gpu"]
        assert row["distributedFramework"] == d.get("distributedFramework")
        assert row["aiApplicationId"] == d.get("aiApplicationId")
        assert row["aiApplicationName"] == d.get("aiApplicationName")
        idle += row["idleAllocatedGpus"] > 0
    assert idle > 0


# ----------------------------------------------------------------------------- pools by cluster


def test_both_clusters_have_a_pool_named_a100(small: Cluster) -> None:
    east, west = (c.id for c in small.clusters)
    a100 = {p.cluster_id: p for p in small.nodepools if p.name == "a100"}
    assert set(a100) == {east, west}
    assert (a100[east].gpu_type, a100[east].gpus) == ("A100-80GB", 32)
    assert (a100[west].gpu_type, a100[west].gpus) == ("A100-40GB", 16)
    assert set(small.timeline.pool_steps) == {(p.cluster_id, p.name) for p in small.nodepools}
    with pytest.raises(LookupError, match="ambiguous"):
        small.gpu_allocated_at("a100", NOW)
    with pytest.raises(LookupError, match="unknown"):
        small.gpu_allocated_at("a100-80gb", NOW)
    with pytest.raises(LookupError, match="unknown"):
        small.gpu_allocated_at("h100-80gb", NOW, cluster_id=west)
    # both pools are in use, and the API tells them apart only by the cluster
    table = small.snapshot(NOW).table
    pairs = set(zip(table["clusterId"].to_pylist(), table["nodepool"].to_pylist(), strict=True))
    assert {(east, "a100"), (west, "a100")} <= pairs
    for cluster_id in (east, west):
        assert small.gpu_allocated_at("a100", NOW, cluster_id=cluster_id) > 0


# ----------------------------------------------------------------------------- moves


def _first_midnight_after_first_start(c: Cluster, i: int) -> datetime:
    first = c.run_intervals(i)[0][0]
    return first.replace(hour=0, minute=0, second=0) + timedelta(days=1)


@pytest.mark.parametrize(
    ("seed", "workloads", "days"), [(7, 300, 14), (11, 160, 6)], ids=["demo", "small"]
)
def test_moves_follow_their_rules(seed: int, workloads: int, days: int) -> None:
    """The demo and a small config have project and pool moves whatever the weekday."""
    for k in range(7):  # the weekly rhythm of the submissions shifts with the weekday
        now = NOW + timedelta(days=k)
        c = Cluster(SimulatorConfig(seed=seed, workloads=workloads, days=days, now=now))
        moves = c.moves()
        assert moves == sorted(moves, key=lambda m: m.index)
        end = c.timeline.end
        project_moves = [m for m in moves if m.project_from != m.project_to]
        pool_moves = [m for m in moves if m.nodepool_from != m.nodepool_to]
        assert any(m.at < now for m in project_moves), (seed, now)
        assert any(m.at < now for m in pool_moves), (seed, now)
        assert set(project_moves) | set(pool_moves) == set(moves)
        alive = [
            i
            for i in range(workloads)
            if c.run_intervals(i) and end[i] > _seconds(_first_midnight_after_first_start(c, i))
        ]
        assert abs(len(project_moves) - 0.04 * len(alive)) <= 1
        east = c.clusters[0].id
        for m in moves:
            i = m.index
            assert m.workload_id == c.draws.ids[i]
            assert m.at == _first_midnight_after_first_start(c, i)
            assert end[i] > _seconds(m.at)  # still alive after M
            home = c.nodepools[int(c.draws.pool[i])]
            assert (m.cluster_id, m.nodepool_from) == (home.cluster_id, home.name)
            assert m.project_from == c.draws.proj_ids[int(c.draws.proj[i])]
            p_from, p_to = (c.draws.proj_ids.index(p) for p in (m.project_from, m.project_to))
            assert c.draws.proj_cluster[p_from] == c.draws.proj_cluster[p_to]  # same cluster
            assert m.department_to == c.draws.dept_ids[int(c.draws.proj_dept[p_to])]
        for m in pool_moves:
            i = m.index
            assert (m.cluster_id, m.nodepool_from, m.nodepool_to) == (east, "a100", "h100-80gb")
            assert end[i] == NEVER and c.timeline.work[i] == NEVER  # never-ending
            assert c.draws.level[i] in (2, 3)  # build, inference: not preemptible
            assert c.workload_json(i, now + timedelta(days=30))["preemptible"] is False
        eligible = [
            i
            for i in range(workloads)
            if c.timeline.work[i] == NEVER
            and c.draws.level[i] in (2, 3)
            and c.draws.size_q[i] > 0
            and c.run_intervals(i)
            and c.nodepools[int(c.draws.pool[i])].name == "a100"
            and c.nodepools[int(c.draws.pool[i])].cluster_id == east
        ]
        assert 1 <= len(pool_moves) <= max(1, round(len(eligible) / 3))


def _move(c: Cluster, pool: bool, margin: timedelta) -> int:
    """A workload that moved (pool or project only) before the clock, visible before M,
    that runs from ``margin`` before M to ``margin`` after it."""
    for m in c.moves():
        if (m.nodepool_from != m.nodepool_to) != pool or m.at >= c.now():
            continue
        i = m.index
        if c.draws.created[i] >= _seconds(m.at) - 1:
            continue
        covers = [
            s <= m.at - margin and (e is None or e >= m.at + margin) for s, e in c.run_intervals(i)
        ]
        if any(covers):
            return i
    raise AssertionError("no such move")


def test_a_project_move(demo: Cluster) -> None:
    i = _move(demo, pool=False, margin=timedelta(hours=3))
    (move,) = (m for m in demo.moves() if m.index == i)
    assert move.project_from != move.project_to and move.nodepool_from == move.nodepool_to
    tick = timedelta(seconds=1)
    seen = {}
    for label, at in (("before", move.at - tick), ("at", move.at), ("after", move.at + tick)):
        doc = demo.workload_json(i, at)
        row = demo.snapshot(at).table.slice(i, 1).to_pylist()[0]
        assert doc["projectId"] == row["projectId"] and doc["departmentId"] == row["departmentId"]
        assert doc["projectName"] == row["projectName"]
        assert doc["namespace"] == f"runai-{doc['projectName']}"
        assert doc["phase"] == "Running"
        seen[label] = (doc["projectId"], doc["departmentId"])
    assert seen["before"] == seen["at"] == (move.project_from, move.department_from)
    assert seen["after"] == (move.project_to, move.department_to)
    # an instant within the second after M still shows the old project (whole seconds)
    assert demo.workload_json(i, move.at + tick / 2)["projectId"] == move.project_from
    # attribution splits the run at M exactly
    wid = demo.draws.ids[i]
    lo, hi = move.at - timedelta(hours=3), move.at + timedelta(hours=3)
    entries = demo.attributed_truth(wid, lo, hi)
    assert [e.project_id for e in entries] == [move.project_from, move.project_to]
    assert [e.department_id for e in entries] == [move.department_from, move.department_to]
    assert {(e.cluster_id, e.nodepool) for e in entries} == {(move.cluster_id, move.nodepool_from)}
    truth = demo.ground_truth(wid, lo, hi)
    assert sum(e.allocated_gpu_seconds for e in entries) == truth.allocated_gpu_seconds
    assert sum(e.used_gpu_seconds for e in entries) == truth.used_gpu_seconds
    (old,) = demo.attributed_truth(wid, lo, move.at)
    (new,) = demo.attributed_truth(wid, move.at, hi)
    assert (old, new) == tuple(entries)
    assert old.running_seconds == new.running_seconds == 3 * 3600
    assert old.allocated_gpu_seconds == pytest.approx(_gpus(demo, i) * 3 * 3600)


def test_a_node_pool_move(demo: Cluster) -> None:
    i = _move(demo, pool=True, margin=timedelta(seconds=2))
    (move,) = (m for m in demo.moves() if m.index == i)
    east = demo.clusters[0].id
    assert (move.cluster_id, move.nodepool_from, move.nodepool_to) == (east, "a100", "h100-80gb")
    tick = timedelta(seconds=1)
    for at, pool in ((move.at - tick, "a100"), (move.at, "a100"), (move.at + tick, "h100-80gb")):
        doc = demo.workload_json(i, at)
        assert doc["phase"] == "Running"
        assert doc["currentNodePools"] == [pool]
        assert doc["requestedNodePools"][0] == pool
        assert doc["clusterId"] == east
        # GPU memory requests stay the same (both pools have 80 GB GPUs)
        assert (
            doc["workloadRequestedResources"]
            == demo.workload_json(i, move.at)["workloadRequestedResources"]
        )
        table = demo.snapshot(at).table
        rows = table.to_pylist()
        assert rows[i]["nodepool"] == pool
        for name in ("a100", "h100-80gb"):  # the pool totals agree with the snapshot
            running = [
                r["allocatedGPU"]
                for r in rows
                if (r["clusterId"], r["nodepool"], r["phase"]) == (east, name, "Running")
            ]
            got = demo.gpu_allocated_at(name, at, cluster_id=east)
            assert got == pytest.approx(sum(running)), (at, name)
    after = demo.workload_json(i, move.at + tick)
    assert "a100" in after["requestedNodePools"][1:]
    # attribution: the a100 part up to M, the h100 part after it, in the same project
    wid = demo.draws.ids[i]
    start = demo.run_intervals(i)[0][0]
    entries = demo.attributed_truth(wid, demo.anchor, NOW)
    assert [(e.cluster_id, e.nodepool) for e in entries] == [
        (east, "a100"),
        (east, "h100-80gb"),
    ]
    assert len({e.project_id for e in entries}) == 1
    gpus = _gpus(demo, i)
    assert entries[0].running_seconds == (move.at - start).total_seconds()
    assert entries[1].running_seconds == (NOW - move.at).total_seconds()
    assert entries[0].allocated_gpu_seconds == pytest.approx(gpus * entries[0].running_seconds)
    assert entries[1].allocated_gpu_seconds == pytest.approx(gpus * entries[1].running_seconds)
    truth = demo.ground_truth(wid, demo.anchor, NOW)
    assert sum(e.allocated_gpu_seconds for e in entries) == truth.allocated_gpu_seconds
    # metric series are unchanged by the move
    ts = _grid(max(start, move.at - timedelta(minutes=30)), move.at + timedelta(minutes=30), 60)
    assert np.all(_one(demo.metrics(i, "GPU_ALLOCATION", ts)) == gpus)
    requested = _one(demo.metrics(i, "GPU_MEMORY_REQUEST_BYTES", ts))
    assert np.all(requested == requested[0])


def test_attributed_truth_adds_up_to_ground_truth(busy: Cluster) -> None:
    checked = 0
    for i in range(0, busy.config.workloads, 13):
        wid = busy.draws.ids[i]
        cpu = _one(busy.metrics(i, "CPU_REQUEST_CORES", np.array([_dt64(busy.anchor)])))
        for lo, hi in ((busy.anchor, NOW), (NOW - timedelta(hours=30, seconds=7), NOW)):
            entries = busy.attributed_truth(wid, lo, hi + timedelta(days=1))  # clipped at now
            truth = busy.ground_truth(wid, lo, hi)
            assert sum((e.allocated_gpu_seconds for e in entries), 0.0) == (
                truth.allocated_gpu_seconds
            )
            assert sum((e.used_gpu_seconds for e in entries), 0.0) == truth.used_gpu_seconds
            overlap = sum(
                max(0.0, (min(e or hi, hi) - max(s, lo)).total_seconds())
                for s, e in busy.run_intervals(i)
            )
            assert sum(e.running_seconds for e in entries) == pytest.approx(overlap)
            assert all(e.running_seconds > 0 for e in entries)
            moved = any(m.index == i for m in busy.moves())
            assert len(entries) <= (2 if moved else 1)
            for e in entries:
                doc = busy.workload_json(i, busy.run_intervals(i)[0][0])
                assert e.cluster_id == doc["clusterId"]
                if not moved:
                    assert (e.project_id, e.department_id) == (
                        doc["projectId"],
                        doc["departmentId"],
                    )
                    assert e.nodepool == doc["requestedNodePools"][0]
                pods = doc["workloadRequestedResources"]
                assert e.cpu_request_cores == pods["cpu"]["request"]
                if not np.isnan(cpu[0]):
                    assert e.cpu_request_cores == cpu[0]
                checked += 1
    assert checked > 100
    assert busy.attributed_truth(busy.draws.ids[0], busy.anchor, busy.anchor) == []


# ----------------------------------------------------------------------------- pods


def test_running_pod_count_ramps_up_at_each_interval_start(busy: Cluster) -> None:
    offsets = np.array([-1, 0, 1, 59, 60, 61, 119, 120, 179, 180, 240, 600])
    seen_resumption = checked = 0
    for i in range(busy.config.workloads):
        pods = int(busy.draws.pods[i])
        if pods < 2 or busy.draws.size_q[i] == 0:
            continue
        for k, (s, e) in enumerate(busy.run_intervals(i)):
            start = _seconds(s)
            if start + 600 >= _seconds(NOW) or (e is not None and _seconds(e) < start + 600):
                continue
            ts = (start + offsets).astype("datetime64[s]").astype("datetime64[us]")
            count = _one(busy.metrics(i, "RUNNING_POD_COUNT", ts))
            alloc = _one(busy.metrics(i, "GPU_ALLOCATION", ts))
            expected = np.minimum(pods, np.maximum(offsets, 0) // 60 + 1)
            assert np.array_equal(count[1:], expected[1:]), (i, k)
            assert np.all(alloc[1:] == _gpus(busy, i))  # gang scheduled: all GPUs at once
            previous_end = busy.run_intervals(i)[k - 1][1] if k else None
            if previous_end is None or _seconds(previous_end) < start:  # pending just before
                assert np.isnan(count[0]) or count[0] == 0
            seen_resumption += k > 0
            checked += 1
    assert checked > 20 and seen_resumption > 0
    # single-pod workloads run their pod from the first second
    single = next(
        i for i in range(busy.config.workloads) if busy.draws.pods[i] == 1 and busy.run_intervals(i)
    )
    first = _seconds(busy.run_intervals(single)[0][0])
    ts = np.array([first, first + 1], dtype="datetime64[s]").astype("datetime64[us]")
    assert _one(busy.metrics(single, "RUNNING_POD_COUNT", ts)).tolist() == [1.0, 1.0]


# ----------------------------------------------------------------------------- the clock


def test_the_clock_can_be_set() -> None:
    c = Cluster(SimulatorConfig(seed=3, workloads=60, days=2, now=NOW))
    anchor, created = c.anchor, c.draws.created.copy()
    later = NOW + timedelta(days=1, hours=2)
    n_now = sum(c.workload_index(w) is not None for w in c.draws.ids)
    assert c.set_now(later.replace(tzinfo=None)) == later  # naive: UTC
    assert c.now() == later
    assert c.anchor == anchor and np.array_equal(c.draws.created, created)
    n_later = sum(c.workload_index(w) is not None for w in c.draws.ids)
    assert n_later == int(np.sum(created <= _seconds(later))) > n_now
    earlier = c.set_now(NOW - timedelta(hours=1))
    assert c.now() == earlier == NOW - timedelta(hours=1)


# ----------------------------------------------------------------- generated catalogues

GENERATED = SimulatorConfig(seed=5, workloads=900, days=2, now=NOW, clusters=3, gpus=150)


@pytest.mark.parametrize(
    ("clusters", "gpus", "per_cluster"),
    [(8, 4000, None), (2, 800, None), (3, 37, 1), (5, 1001, 4), (1, 16, None), (16, 321, 5)],
)
def test_generated_catalogue_shape(clusters: int, gpus: int, per_cluster: int | None) -> None:
    cat = catalogue.generate(clusters, gpus, per_cluster)
    assert cat.gpus == gpus == int(cat.pool_capacity_q.sum()) // 4
    assert len(cat.clusters) == clusters
    assert [c.name for c in cat.clusters][:3] == ["prod-east", "research-west", "cluster-03"][
        :clusters
    ]
    assert len({c.id for c in cat.clusters}) == clusters
    assert all(str(uuid.UUID(c.id)) == c.id for c in cat.clusters)
    assert cat.clusters[: min(2, clusters)] == catalogue.DEFAULT_CLUSTERS[: min(2, clusters)]
    for c in cat.clusters:
        names = [p.name for p in cat.nodepools if p.cluster_id == c.id]
        assert names and len(names) == len(set(names))  # unique within a cluster
        if per_cluster is not None:
            assert len(names) == per_cluster
    assert all(p.gpus >= catalogue.MIN_POOL_GPUS for p in cat.nodepools)
    assert all(m % 4 == 0 for m in cat.gpu_memory_gib)
    if clusters > 1:  # as in the default catalogue, a name is shared across clusters
        assert sum(p.name == "a100" for p in cat.nodepools) == clusters
    for src, dst in cat.pool_moves:
        assert cat.nodepools[src].cluster_id == cat.nodepools[dst].cluster_id
        assert cat.gpu_memory_gib[src] == cat.gpu_memory_gib[dst] and src != dst
    assert cat.pool_index == {(p.cluster_id, p.name): k for k, p in enumerate(cat.nodepools)}


def test_default_catalogue_is_the_fixed_one() -> None:
    cat = catalogue_for(SimulatorConfig())
    assert cat is catalogue.DEFAULT_CATALOGUE and not SimulatorConfig().generated_catalogue
    assert cat.nodepools == catalogue.NODEPOOLS and cat.clusters == catalogue.CLUSTERS
    assert cat.gpus == 104 and cat.pool_moves == catalogue.POOL_MOVES == ((0, 1),)
    assert catalogue.POOL_CLUSTER.tolist() == [0, 0, 0, 1, 1]
    assert catalogue.POOL_GPU_MEMORY_GIB.tolist() == [80, 80, 48, 40, 16]
    assert not catalogue.POOL_CAPACITY_Q.flags.writeable  # never changed at run time


def test_generated_catalogue_and_cluster_are_deterministic() -> None:
    a, b = catalogue.generate(8, 4000), catalogue.generate(8, 4000)
    assert (a.clusters, a.nodepools, a.gpu_memory_gib, a.pool_moves) == (
        b.clusters,
        b.nodepools,
        b.gpu_memory_gib,
        b.pool_moves,
    )
    one, two = Cluster(GENERATED), Cluster(GENERATED)
    assert one.nodepools == two.nodepools and one.draws.ids == two.draws.ids
    assert np.array_equal(one.timeline.iv_start, two.timeline.iv_start)
    assert one.snapshot(NOW).table.equals(two.snapshot(NOW).table)
    assert one.moves() == two.moves()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clusters": 2, "gpus": 19}, "at least 4 per node pool"),
        ({"clusters": 8, "gpus": 50}, "need at least 80 GPUs"),
        ({"clusters": 0}, "clusters must be between"),
        ({"clusters": 17}, "clusters must be between"),
        ({"gpus": 100, "nodepools_per_cluster": 6}, "nodepools per cluster"),
    ],
)
def test_config_validates_the_catalogue(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulatorConfig(**kwargs)  # type: ignore[arg-type]


def test_generated_cluster_truth_and_pools() -> None:
    c = Cluster(GENERATED)
    cat = c.catalogue
    assert len(c.clusters) == 3 and sum(p.gpus for p in c.nodepools) == 150
    assert set(c.timeline.pool_steps) == set(cat.pool_index)
    # every project lives in one cluster, and every cluster has projects and workloads
    assert set(c.draws.proj_cluster.tolist()) == {0, 1, 2}
    assert set(cat.pool_cluster[c.draws.pool].tolist()) == {0, 1, 2}
    table = c.snapshot(NOW).table
    assert set(table.column("clusterId").to_pylist()) == {x.id for x in c.clusters}
    for k, pool in enumerate(c.nodepools):
        times, alloc = c.timeline.pool_steps[(pool.cluster_id, pool.name)]
        assert alloc.max(initial=0) <= cat.pool_capacity_q[k]
        t = datetime.fromtimestamp(int(times[len(times) // 2]), UTC) if len(times) else NOW
        assert 0 <= c.gpu_allocated_at(pool.name, t, pool.cluster_id) <= pool.gpus
    ran = np.flatnonzero(c.timeline.iv_off[1:] > c.timeline.iv_off[:-1])[:40]
    pools = {(p.cluster_id, p.name) for p in c.nodepools}
    for i in ran.tolist():
        wid = c.draws.ids[i]
        entries = c.attributed_truth(wid, c.anchor, NOW)
        assert all((e.cluster_id, e.nodepool) in pools for e in entries)
        total = c.ground_truth(wid, c.anchor, NOW)
        assert total.allocated_gpu_seconds == sum(e.allocated_gpu_seconds for e in entries)
