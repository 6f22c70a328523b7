"""The deterministic synthetic GPU cluster behind the simulated Run:ai control plane.

``Cluster(config)`` draws a whole timeline once: an org chart, workload submissions over
``[anchor, anchor + days + 1 day)`` (``anchor`` = UTC midnight of ``now()`` minus
``days`` days) with a daily and weekly rhythm, and, per node pool, an event-driven
scheduler that turns them into run intervals. Everything the API shows at an instant
``at`` is then derived from that timeline: the workload list (``snapshot(at)``), one
workload object (``workload_json(index, at)``), metric series (``metrics``), and exact
ground truth for the pipeline's sampled sums (``ground_truth``; per cluster, node pool
and project the workload ran under: ``attributed_truth``). Some workloads move to another
project or node pool at a UTC midnight (``moves``, listed by ``moves()``).

The cluster clock (``now()``) is ``config.now``, or the wall clock, until ``set_now``
freezes it elsewhere; the timeline and its ``anchor`` stay the ones built at start-up.

This module is the façade; the parts live beside it: ``catalogue`` (clusters, node pools,
types, priority classes, phases, name pools; a ``Catalogue`` built from the config, see
``config.catalogue_for``), ``draws`` (the org chart and the workloads,
``Draws``), ``scheduler`` (the per-pool scheduler, ``Timeline``), ``moves`` (project and
node-pool moves, ``Moves``) and ``render`` (snapshot tables and workload objects at an
instant, ``Renderer``).

All randomness comes from ``rng`` (Philox streams for the build, splitmix64 hashes for
per-minute values), so equal configs give identical results.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from workloads_etl.openapi import enum_values
from workloads_etl.simulator.catalogue import (
    EPOCH,
    NEVER,
    Catalogue,
    ClusterInfo,
    NodePool,
    to_micros,
    to_seconds,
)
from workloads_etl.simulator.config import SimulatorConfig, catalogue_for
from workloads_etl.simulator.draws import Draws
from workloads_etl.simulator.metrics import Profile, series
from workloads_etl.simulator.moves import Move
from workloads_etl.simulator.render import Renderer, State
from workloads_etl.simulator.scheduler import Timeline

# Snapshots kept (one per whole second asked for); each holds every visible workload's row,
# tens of MB at 100k workloads, so only the few a paging listing reuses are kept.
SNAPSHOT_CACHE_SIZE = 4
# Sampled run states kept (``Cluster._sampled_state``): a few per request in flight.
SAMPLED_STATE_CACHE_SIZE = 64


@dataclass(frozen=True)
class _SampledState:
    """One workload's usage profile, its run state at some instants (arrays over them,
    read-only), and the memo its metric series share (``metrics.series``)."""

    profile: Profile
    minute: np.ndarray
    alive: np.ndarray
    running: np.ndarray
    run_seconds: np.ndarray
    since_start: np.ndarray
    memo: dict[str, np.ndarray]


@dataclass(frozen=True)
class GroundTruth:
    allocated_gpu_seconds: float
    used_gpu_seconds: float


@dataclass(frozen=True)
class AttributedTruth:
    """Exact usage of one workload under one (cluster, node pool, project) over a range.

    GPU-seconds as in ``GroundTruth``; ``running_seconds``: seconds with at least one pod
    running (inside run intervals); ``cpu_request_cores`` and ``cpu_memory_request_bytes``:
    the workload's totals, as the CPU_REQUEST_CORES / CPU_MEMORY_REQUEST_BYTES metrics say.
    """

    cluster_id: str
    nodepool: str
    project_id: str
    department_id: str
    allocated_gpu_seconds: float
    used_gpu_seconds: float
    running_seconds: float
    cpu_request_cores: float
    cpu_memory_request_bytes: float


@dataclass(frozen=True, eq=False)
class Snapshot:
    """All workloads visible at ``at`` (createdAt <= at), one row each, row == index.

    ``table`` columns: ``index`` (int64), ``id``, ``deleted`` (bool: deletedAt <= at),
    then the spec's filter/sort fields under their API names: strings ``type``, ``name``,
    ``clusterId``, ``projectId``, ``projectName``, ``departmentId``, ``departmentName``,
    ``submittedBy``, ``phase``, ``nodepool``, ``distributedFramework``, ``category``,
    ``priorityClassName``, ``aiApplicationId``, ``aiApplicationName``; timestamps
    (``timestamp[us, UTC]``) ``createdAt``, ``deletedAt``, ``completedAt``,
    ``phaseUpdatedAt``, ``guaranteedRuntimeEndsAt``; int64 ``priority``, ``idleGpus``,
    ``totalPendingTimeSeconds``, ``totalRunningTimeSeconds``; float64 ``allocatedGPU``,
    ``idleAllocatedGpus``. Absent values are nulls (``deletedAt`` is null until the
    deletion has happened). Rows are in createdAt order (ties by index). ``nodepool`` is
    the first requested pool (a name only: ``clusterId`` tells same-named pools apart);
    it and the project and department columns show a moved workload's new values when
    ``at`` is after its move.
    """

    at: datetime
    table: pa.Table
    _state: State

    def __len__(self) -> int:
        return int(self.table.num_rows)

    @property
    def index(self) -> np.ndarray:
        return np.arange(self.table.num_rows, dtype=np.int64)

    @property
    def deleted(self) -> np.ndarray:
        return self._state.deleted


class Cluster:
    """The synthetic cluster; see the module docstring.

    ``draws`` holds the org chart and the drawn workloads (row == index), ``timeline``
    their run intervals from the scheduler.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._clock: datetime | None = None
        self.catalogue: Catalogue = catalogue_for(config)
        self.clusters: list[ClusterInfo] = list(self.catalogue.clusters)
        self.nodepools: list[NodePool] = list(self.catalogue.nodepools)
        midnight = self.now().replace(hour=0, minute=0, second=0, microsecond=0)
        self.anchor: datetime = midnight - timedelta(days=config.days)
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[int, Snapshot] = OrderedDict()
        self._sampled: OrderedDict[tuple[int, int, bytes], _SampledState] = OrderedDict()
        self.draws = Draws(config, self.anchor, self.catalogue)
        self.timeline = Timeline(self.draws)
        self._renderer = Renderer(self.draws, self.timeline)

    # ------------------------------------------------------------------ public API

    def now(self) -> datetime:
        if self._clock is not None:
            return self._clock
        return self.config.now if self.config.now is not None else datetime.now(UTC)

    def set_now(self, when: datetime) -> datetime:
        """Freeze the cluster clock at ``when`` (naive: UTC); returns the new ``now()``.

        What the API shows follows the clock; the timeline and ``anchor`` do not change.
        """
        aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        self._clock = aware.astimezone(UTC)
        return self._clock

    def workload_index(self, workload_id: str) -> int | None:
        """The index of a workload that exists at ``now()`` (deleted ones included)."""
        i = self.draws.index_of.get(workload_id)
        if i is None or self.draws.created[i] > to_seconds(self.now()):
            return None
        return i

    def snapshot(self, at: datetime) -> Snapshot:
        """State of every workload visible at ``at``; the latest ``SNAPSHOT_CACHE_SIZE``
        whole seconds asked for are cached."""
        sec = to_seconds(at)
        with self._lock:
            snap = self._snapshots.get(sec)
            if snap is not None:
                self._snapshots.move_to_end(sec)
                return snap
        snap = self._make_snapshot(sec)
        with self._lock:
            self._snapshots[sec] = snap
            while len(self._snapshots) > SNAPSHOT_CACHE_SIZE:
                self._snapshots.popitem(last=False)
        return snap

    def workload_json(self, index: int, at: datetime) -> dict[str, Any]:
        """One ``Workload`` object as the API returns it at ``at``."""
        snap = self.snapshot(at)
        if not 0 <= index < len(snap):
            raise LookupError(f"workload {index} does not exist at {at.isoformat()}")
        return self._renderer.workload_json(index, snap._state)

    def metrics(
        self, index: int, metric_type: str, timestamps: np.ndarray
    ) -> list[tuple[dict[str, str] | None, np.ndarray]]:
        """Values of one metric type at the given instants, one array per label set.

        NaN marks an instant without a sample (before createdAt, at or after the end of
        the workload, at or after the cluster clock ``now()``: nothing has been measured
        yet, NIM latencies while no pod runs). An empty list: the type does not apply to
        this workload (NIM_* outside inference, NVLINK below 2 GPUs, ...).
        """
        return self.metrics_batch(index, [metric_type], timestamps)[0]

    def metrics_batch(
        self, index: int, metric_types: list[str], timestamps: np.ndarray
    ) -> list[list[tuple[dict[str, str] | None, np.ndarray]]]:
        """``metrics`` of several metric types of one workload at the same instants, in
        the order given (the run state at the instants is worked out once)."""
        for metric_type in metric_types:
            if metric_type not in _metric_types():
                raise ValueError(f"unknown metric type {metric_type!r}")
        at = self._sampled_state(index, timestamps)
        return [
            series(
                at.profile,
                m,
                at.minute,
                at.alive,
                at.running,
                at.run_seconds,
                at.since_start,
                at.memo,
            )
            for m in metric_types
        ]

    def _sampled_state(self, index: int, timestamps: np.ndarray) -> _SampledState:
        """The run state of one workload at the instants, and what its series share; the
        latest ``SAMPLED_STATE_CACHE_SIZE`` are kept: a client asks for one workload's
        metric types over the same instants in a few requests in a row."""
        micros = np.asarray(timestamps, dtype="datetime64[us]").astype(np.int64)
        now_us = to_micros(self.now())
        key = (index, now_us, micros.tobytes())
        with self._lock:
            state = self._sampled.get(key)
            if state is not None:
                self._sampled.move_to_end(key)
                return state
        t = micros // 1_000_000
        starts, ends, cum = self.timeline.intervals(index)
        running = np.zeros(t.shape, dtype=bool)
        run_seconds = np.zeros(t.shape, dtype=np.int64)
        since_start = np.zeros(t.shape, dtype=np.int64)
        if len(starts):
            k = np.searchsorted(starts, t, side="right") - 1
            has, kk = k >= 0, np.maximum(k, 0)
            running = has & (t < ends[kk])
            run_seconds = np.where(has, cum[kk] + np.minimum(t, ends[kk]) - starts[kk], 0)
            since_start = np.where(has, t - starts[kk], 0)
        alive = (
            (t >= self.draws.created[index]) & (t < self.timeline.end[index]) & (micros < now_us)
        )
        minute = micros // 60_000_000
        for array in (minute, alive, running, run_seconds, since_start):
            array.flags.writeable = False
        profile = self.draws.profile(index)
        state = _SampledState(profile, minute, alive, running, run_seconds, since_start, {})
        with self._lock:
            self._sampled[key] = state
            while len(self._sampled) > SAMPLED_STATE_CACHE_SIZE:
                self._sampled.popitem(last=False)
        return state

    def ground_truth(self, workload_id: str, start: datetime, end: datetime) -> GroundTruth:
        """Exact GPU-seconds of one workload over ``[start, end)``, without sampling.

        The interval is clipped to the cluster clock: nothing after ``now()`` has happened
        yet, so ``[start, end)`` counts as ``[start, min(end, now()))``.

        allocated = integral of GPU_ALLOCATION over [start, end), i.e. GPUs times the
        overlap with the run intervals; used = integral of allocation x utilisation/100,
        an exact sum over the whole-minute pieces of the run intervals (utilisation is
        constant within a UTC minute).

        Error bound of a sampled estimate (samples at ``step`` = 60 s aligned to UTC
        midnight, each standing for [t, t + 60 s)): allocation and utilisation change
        only at minute boundaries, except at run-interval edges (start, preemption,
        resumption, end), which fall at arbitrary seconds. Only the minutes holding such
        an edge are misestimated, each by at most gpus x step, so per workload and
        interval |sampled - exact| <= gpus x step x (number of allocation change points
        inside the interval), for allocated and for used GPU-seconds alike.
        """
        entries = self.attributed_truth(workload_id, start, end)
        return GroundTruth(
            allocated_gpu_seconds=sum((x.allocated_gpu_seconds for x in entries), 0.0),
            used_gpu_seconds=sum((x.used_gpu_seconds for x in entries), 0.0),
        )

    def attributed_truth(
        self, workload_id: str, start: datetime, end: datetime
    ) -> list[AttributedTruth]:
        """Exact usage of one workload over ``[start, min(end, now()))`` by attribution.

        One entry per distinct (cluster, node pool, project) the workload ran under in
        that range, in order of first appearance (none if it did not run): a move at
        midnight ``M`` splits its run intervals at ``M``. GPU-seconds are computed as in
        ``ground_truth``, which is their sum over the entries (summed in this order).
        """
        i = self.draws.index_of[workload_id]
        lo_us, hi_us = to_micros(start), min(to_micros(end), to_micros(self.now()))
        starts, ends, _ = self.timeline.intervals(i)
        q = int(self.draws.size_q[i])
        profile = self.draws.profile(i)
        # per (project, pool): running microseconds and used GPU time in
        # quarter-GPU x tenth-of-a-percent x microseconds, both exact integers
        sums: dict[tuple[int, int], list[int]] = {}
        for s, e, proj, pool in self.timeline.moves.pieces(i, starts, ends):
            a = max(s * 1_000_000, lo_us)
            b = min(e * 1_000_000, hi_us) if e < NEVER else hi_us
            if b <= a:
                continue
            acc = sums.setdefault((proj, pool), [0, 0])
            acc[0] += b - a
            if q == 0:
                continue
            minutes = np.arange(a // 60_000_000, (b - 1) // 60_000_000 + 1, dtype=np.int64)
            piece = np.minimum(b, (minutes + 1) * 60_000_000) - np.maximum(a, minutes * 60_000_000)
            tenths = np.rint(profile.utilization(minutes) * 10).astype(np.int64)
            acc[1] += int(np.dot(tenths, piece))
        d = self.draws
        cpu, memory = d.cpu_totals(i)
        return [
            AttributedTruth(
                cluster_id=self.nodepools[pool].cluster_id,
                nodepool=self.nodepools[pool].name,
                project_id=d.proj_ids[proj],
                department_id=d.dept_ids[int(d.proj_dept[proj])],
                allocated_gpu_seconds=q * run_us / 4e6,
                used_gpu_seconds=q * used / (4 * 1000 * 1e6),
                running_seconds=run_us / 1e6,
                cpu_request_cores=cpu,
                cpu_memory_request_bytes=memory,
            )
            for (proj, pool), (run_us, used) in sums.items()
        ]

    def moves(self) -> list[Move]:
        """The project and node-pool moves of the timeline (see ``moves``), by index."""
        return self.timeline.moves.listing()

    def pod_layout(self, index: int) -> tuple[int, float]:
        """Pods of a workload and GPUs each pod asks for; fixed for the workload's life."""
        return int(self.draws.pods[index]), float(self.draws.q_pod[index]) / 4

    def gpu_allocated_at(self, nodepool: str, at: datetime, cluster_id: str | None = None) -> float:
        """GPUs allocated to running workloads of a node pool at an instant.

        A pool is ``(cluster_id, nodepool)``; ``cluster_id`` may be left out only when the
        name is unique (``a100`` is not). Moves count from ``M + 1 s`` (see ``moves``).
        """
        keys = [
            key
            for key in self.timeline.pool_steps
            if key[1] == nodepool and cluster_id in (None, key[0])
        ]
        if len(keys) != 1:
            what = "ambiguous, give cluster_id" if keys else "unknown"
            raise LookupError(f"node pool {nodepool!r} ({cluster_id}) is {what}")
        times, alloc = self.timeline.pool_steps[keys[0]]
        k = int(np.searchsorted(times, to_seconds(at), side="right")) - 1
        return float(alloc[k]) / 4 if k >= 0 else 0.0

    def run_intervals(self, index: int) -> list[tuple[datetime, datetime | None]]:
        """The workload's run intervals [start, end); end None while it runs on forever."""
        starts, ends, _ = self.timeline.intervals(index)
        return [
            (EPOCH + timedelta(seconds=s), None if e >= NEVER else EPOCH + timedelta(seconds=e))
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
        ]

    def _make_snapshot(self, at: int) -> Snapshot:
        table, state = self._renderer.snapshot(at)
        return Snapshot(at=EPOCH + timedelta(seconds=at), table=table, _state=state)


@lru_cache(maxsize=1)
def _metric_types() -> frozenset[str]:
    return frozenset(enum_values("WorkloadMetricType"))
