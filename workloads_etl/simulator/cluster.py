"""The deterministic synthetic GPU cluster behind the simulated Run:ai control plane.

``Cluster(config)`` draws a whole timeline once: an org chart, workload submissions over
``[anchor, anchor + days + 1 day)`` (``anchor`` = UTC midnight of ``now()`` minus
``days`` days) with a daily and weekly rhythm, and, per node pool, an event-driven
scheduler that turns them into run intervals. Everything the API shows at an instant
``at`` is then derived from that timeline: the workload list (``snapshot(at)``), one
workload object (``workload_json(index, at)``), metric series (``metrics``), and exact
ground truth for the pipeline's sampled sums (``ground_truth``).

Scheduler (per node pool, quarters of a GPU as the unit): a workload becomes schedulable
a few seconds after its submission; pending workloads start in order of priority, first
come first served within a priority; smaller ones backfill free capacity unless the
oldest pending one of their class has waited ``RESERVE_AFTER_SECONDS``. A pending
workload of a higher priority class that does not fit preempts preemptible running
workloads of lower classes (lowest class first, most recently started first, never one
inside its guaranteed runtime); a preempted workload goes back to Pending and later
resumes with the running time it still needs. CPU-only workloads start when ready.
Allocated GPUs in a pool never exceed the pool's size. All event times are whole
seconds, and run-interval edges fall at arbitrary seconds within a minute.

Durations are scaled per node pool so that the offered GPU load is about ``TARGET_LOAD``
of the pool over the timeline (within ``_SCALE_BOUNDS``): busy hours queue, nights drain,
whatever ``workloads`` is. At 100,000 workloads runs last minutes, at a few hundred hours.

All randomness comes from ``rng`` (Philox streams for the build, splitmix64 hashes for
per-minute values), so equal configs give identical results.
"""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workloads_etl.contract import enum_values
from workloads_etl.simulator import rng
from workloads_etl.simulator.config import SimulatorConfig
from workloads_etl.simulator.metrics import (
    T_DISTRIBUTED,
    T_INFERENCE,
    T_TRAINING,
    T_WORKSPACE,
    Profile,
    gpu_utilization,
    series,
)

NEVER = 2**62  # epoch seconds standing for "no such time" (open interval, never deleted)
TENANT_ID = 1001
TARGET_LOAD = 0.5  # offered GPU load per node pool, as a share of its capacity
MIN_WORK_SECONDS = 60
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY = 86_400
_GIB = 2**30
_SCALE_BOUNDS = (0.002, 2.0)  # how far durations may be stretched to reach TARGET_LOAD
_FOREVER_SHARE = 0.25  # at most this share of a pool is held by never-ending workloads
RESERVE_AFTER_SECONDS = 4 * 3600  # a workload pending this long is no longer overtaken
# Snapshots kept (one per whole second asked for); each holds every visible workload's row,
# tens of MB at 100k workloads, so only the few a paging listing reuses are kept.
SNAPSHOT_CACHE_SIZE = 4


@dataclass(frozen=True)
class ClusterInfo:
    id: str
    name: str


@dataclass(frozen=True)
class NodePool:
    name: str
    cluster_id: str
    gpu_type: str
    gpus: int  # capacity in GPUs


@dataclass(frozen=True)
class GroundTruth:
    allocated_gpu_seconds: float
    used_gpu_seconds: float


CLUSTERS = (
    ClusterInfo("7c1f3a52-6a1e-4c4f-9f3e-2b8f0d9e1a01", "prod-east"),
    ClusterInfo("0b9d2e61-3c7a-4e58-8d2f-5a6b7c8d9e02", "research-west"),
)
NODEPOOLS = (
    NodePool("a100-80gb", CLUSTERS[0].id, "A100-80GB", 32),
    NodePool("h100-80gb", CLUSTERS[0].id, "H100-80GB", 16),
    NodePool("l40s-48gb", CLUSTERS[0].id, "L40S-48GB", 24),
    NodePool("a100-40gb", CLUSTERS[1].id, "A100-40GB", 16),
    NodePool("t4-16gb", CLUSTERS[1].id, "T4-16GB", 16),
)
_POOL_CLUSTER = np.array([0, 0, 0, 1, 1])
_POOL_GPU_MEMORY_GIB = np.array([80, 80, 48, 40, 16])  # all divisible by 4 (quarter GPUs)
_POOL_CAPACITY_Q = np.array([p.gpus * 4 for p in NODEPOOLS])

TYPES = ("training", "workspace", "inference", "distributed")
CATEGORIES = ("Train", "Build", "Deploy", "Train")
_TYPE_SHARE = (0.42, 0.25, 0.11, 0.22)
# Priority classes, lowest first: a scheduler level is an index into these.
PRIORITY_CLASSES = ("train", "interactive-preemptible", "build", "inference")
PRIORITIES = (50, 75, 100, 125)
PREEMPTIBLE = (True, True, False, False)
_N_LEVELS = len(PRIORITY_CLASSES)

# The snapshot table's columns: ours, then the filterBy/sortBy fields of the spec.
SNAPSHOT_COLUMNS = (
    "index",
    "id",
    "deleted",
    "type",
    "name",
    "clusterId",
    "projectId",
    "projectName",
    "departmentId",
    "departmentName",
    "createdAt",
    "deletedAt",
    "submittedBy",
    "phase",
    "completedAt",
    "nodepool",
    "distributedFramework",
    "allocatedGPU",
    "idleGpus",
    "idleAllocatedGpus",
    "phaseUpdatedAt",
    "category",
    "totalPendingTimeSeconds",
    "totalRunningTimeSeconds",
    "priority",
    "priorityClassName",
    "guaranteedRuntimeEndsAt",
    "aiApplicationId",
    "aiApplicationName",
)

PENDING, RUNNING, COMPLETED, FAILED, STOPPED = range(5)
PHASES = ("Pending", "Running", "Completed", "Failed", "Stopped")
_K8S_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Succeeded")

_DEPARTMENTS = {
    "ml-research": ("proj-llm-pretrain", "proj-rlhf", "proj-moe", "proj-diffusion"),
    "vision": ("proj-detection", "proj-segmentation", "proj-video", "proj-ocr"),
    "nlp": ("proj-translation", "proj-summarize", "proj-embeddings", "proj-chat"),
    "platform": ("proj-infra", "proj-ci-gpu", "proj-benchmarks", "proj-serving"),
    "finance-analytics": ("proj-forecast", "proj-fraud", "proj-risk", "proj-pricing"),
    "speech": ("proj-asr", "proj-tts", "proj-diarization", "proj-voice"),
}
_FIRST = (  # noqa: SIM905
    "alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy "
    "rupert sybil trent victor walter yara zoe liam noah emma mia lucas sofia omar priya "
    "chen kenji fatima diego ingrid tariq mei arjun elena hugo nadia"
).split()
_LAST = (  # noqa: SIM905
    "smith jones garcia miller davis wilson moore taylor anderson thomas jackson white "
    "harris martin thompson young king wright lopez hill scott green adams baker nelson "
    "carter mitchell perez roberts turner phillips campbell parker evans edwards collins "
    "stewart morris rogers reed"
).split()
_MODELS = (  # noqa: SIM905
    "llama3-8b resnet50 vit-b16 bert-large t5-base whisper-small yolov8 mistral-7b sdxl "
    "gpt2-xl deberta-v3 clip-vit unet3d wav2vec2 mixtral-8x7b gemma-2b"
).split()
_APPS = ("chat-assistant", "rag-search", "code-helper", "doc-summarizer", "vision-api")
_IMAGES = (
    "nvcr.io/nvidia/pytorch:24.08-py3",
    "jupyter/scipy-notebook:2024-07-29",
    "nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3",
    "nvcr.io/nvidia/pytorch:24.08-py3",
)

# Philox purposes of the build draws.
_P_ORG, _P_TIMES, _P_SPEC, _P_RUN, _P_USE, _P_IDS = range(1, 7)


def _to_seconds(t: datetime) -> int:
    """Whole epoch seconds (floor) of an aware datetime; naive ones are taken as UTC."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) // timedelta(seconds=1)


def _to_micros(t: datetime) -> int:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) // timedelta(microseconds=1)


def _iso(seconds: int) -> str:
    return (_EPOCH + timedelta(seconds=int(seconds))).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _ts_column(seconds: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    if valid is None:
        micros = pa.array(seconds.astype(np.int64) * 1_000_000)
    else:
        micros = pa.array(np.where(valid, seconds, 0).astype(np.int64) * 1_000_000, mask=~valid)
    return micros.cast(pa.timestamp("us", tz="UTC"))


_DIGITS = np.array(list("0123456789abcdefghijklmnopqrstuvwxyz-"))  # 36: "-"
_UUID_DIGITS = [i for i in range(36) if i not in (8, 13, 18, 23)]


def _strings(codes: np.ndarray) -> list[str]:
    """Each row of an (n, k) array of indices into ``_DIGITS`` as a k-character string."""
    chars = np.ascontiguousarray(_DIGITS[codes])
    return [str(x) for x in chars.view(f"<U{codes.shape[1]}").ravel().tolist()]


def _uuid_strings(hi: np.ndarray, lo: np.ndarray) -> list[str]:
    """Version-4-shaped UUIDs from two uint64 words each."""
    hi = (hi & np.uint64(0xFFFFFFFFFFFF0FFF)) | np.uint64(0x4000)
    lo = (lo & np.uint64(0x3FFFFFFFFFFFFFFF)) | np.uint64(0x8000000000000000)
    octets = np.stack([hi, lo], axis=1).astype(">u8").view(np.uint8).reshape(-1, 16)
    nibbles = np.stack([octets >> 4, octets & 15], axis=2).reshape(-1, 32)
    codes = np.full((len(octets), 36), 36, dtype=np.int64)
    codes[:, _UUID_DIGITS] = nibbles
    return _strings(codes)


@dataclass(frozen=True)
class _State:
    """Per visible workload (row == index), the time-dependent fields at one instant."""

    phase: np.ndarray  # int8, PHASES
    phase_updated: np.ndarray  # epoch s
    running: np.ndarray  # bool
    started: np.ndarray  # bool: has run at least once by then
    run_total: np.ndarray  # s
    pend_total: np.ndarray  # s
    idle: np.ndarray  # bool: running with utilisation 0 in this minute
    guaranteed_end: np.ndarray  # epoch s, -1 when none
    deleted: np.ndarray  # bool


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
    deletion has happened). Rows are in createdAt order (ties by index).
    """

    at: datetime
    table: pa.Table
    _state: _State

    def __len__(self) -> int:
        return int(self.table.num_rows)

    @property
    def index(self) -> np.ndarray:
        return np.arange(self.table.num_rows, dtype=np.int64)

    @property
    def deleted(self) -> np.ndarray:
        return self._state.deleted


class Cluster:
    """The synthetic cluster; see the module docstring."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.clusters: list[ClusterInfo] = list(CLUSTERS)
        self.nodepools: list[NodePool] = list(NODEPOOLS)
        midnight = self.now().replace(hour=0, minute=0, second=0, microsecond=0)
        self.anchor: datetime = midnight - timedelta(days=config.days)
        self._a = _to_seconds(self.anchor)
        self._h = self._a + (config.days + 1) * _DAY  # submissions end here
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[int, Snapshot] = OrderedDict()
        self._build_org()
        self._draw_workloads()
        self._simulate()
        self._build_columns()

    # ------------------------------------------------------------------ public API

    def now(self) -> datetime:
        return self.config.now if self.config.now is not None else datetime.now(UTC)

    def workload_index(self, workload_id: str) -> int | None:
        """The index of a workload that exists at ``now()`` (deleted ones included)."""
        i = self._index_of.get(workload_id)
        if i is None or self._created[i] > _to_seconds(self.now()):
            return None
        return i

    def snapshot(self, at: datetime) -> Snapshot:
        """State of every workload visible at ``at``; the latest ``SNAPSHOT_CACHE_SIZE``
        whole seconds asked for are cached."""
        sec = _to_seconds(at)
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
        return self._workload_json(index, snap._state)

    def metrics(
        self, index: int, metric_type: str, timestamps: np.ndarray
    ) -> list[tuple[dict[str, str] | None, np.ndarray]]:
        """Values of one metric type at the given instants, one array per label set.

        NaN marks an instant without a sample (before createdAt, at or after the end of
        the workload, at or after the cluster clock ``now()``: nothing has been measured
        yet, NIM latencies while no pod runs). An empty list: the type does not apply to
        this workload (NIM_* outside inference, NVLINK below 2 GPUs, ...).
        """
        if metric_type not in _metric_types():
            raise ValueError(f"unknown metric type {metric_type!r}")
        micros = np.asarray(timestamps, dtype="datetime64[us]").astype(np.int64)
        t = micros // 1_000_000
        starts, ends, cum = self._intervals(index)
        running = np.zeros(t.shape, dtype=bool)
        run_seconds = np.zeros(t.shape, dtype=np.int64)
        if len(starts):
            k = np.searchsorted(starts, t, side="right") - 1
            has, kk = k >= 0, np.maximum(k, 0)
            running = has & (t < ends[kk])
            run_seconds = np.where(has, cum[kk] + np.minimum(t, ends[kk]) - starts[kk], 0)
        now_us = _to_micros(self.now())
        alive = (t >= self._created[index]) & (t < self._end[index]) & (micros < now_us)
        minute = micros // 60_000_000
        return series(self._profile(index), metric_type, minute, alive, running, run_seconds)

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
        i = self._index_of[workload_id]
        lo_us, hi_us = _to_micros(start), min(_to_micros(end), _to_micros(self.now()))
        starts, ends, _ = self._intervals(i)
        q = int(self._size_q[i])
        profile = self._profile(i)
        alloc_us = 0
        used = 0  # quarter-GPU x tenth-of-a-percent x microseconds, exact
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            a = max(s * 1_000_000, lo_us)
            b = min(e * 1_000_000, hi_us) if e < NEVER else hi_us
            if b <= a:
                continue
            alloc_us += b - a
            if q == 0:
                continue
            minutes = np.arange(a // 60_000_000, (b - 1) // 60_000_000 + 1, dtype=np.int64)
            piece = np.minimum(b, (minutes + 1) * 60_000_000) - np.maximum(a, minutes * 60_000_000)
            tenths = np.rint(profile.utilization(minutes) * 10).astype(np.int64)
            used += int(np.dot(tenths, piece))
        return GroundTruth(
            allocated_gpu_seconds=q * alloc_us / 4e6,
            used_gpu_seconds=q * used / (4 * 1000 * 1e6),
        )

    def pod_layout(self, index: int) -> tuple[int, float]:
        """Pods of a workload and GPUs each pod asks for; fixed for the workload's life."""
        return int(self._pods[index]), float(self._q_pod[index]) / 4

    def gpu_allocated_at(self, nodepool: str, at: datetime) -> float:
        """GPUs allocated to running workloads of a node pool at an instant."""
        times, alloc = self._pool_steps[nodepool]
        k = int(np.searchsorted(times, _to_seconds(at), side="right")) - 1
        return float(alloc[k]) / 4 if k >= 0 else 0.0

    def run_intervals(self, index: int) -> list[tuple[datetime, datetime | None]]:
        """The workload's run intervals [start, end); end None while it runs on forever."""
        starts, ends, _ = self._intervals(index)
        return [
            (_EPOCH + timedelta(seconds=s), None if e >= NEVER else _EPOCH + timedelta(seconds=e))
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
        ]

    # ------------------------------------------------------------------ build

    def _build_org(self) -> None:
        g = rng.stream(self.config.seed, _P_ORG)
        names = list(_DEPARTMENTS)
        n_dept = int(g.integers(4, 7))
        depts = [names[i] for i in g.permutation(len(names))[:n_dept]]
        proj_names: list[str] = []
        proj_dept: list[int] = []
        for d, dept in enumerate(depts):
            pool = _DEPARTMENTS[dept]
            for j in g.permutation(len(pool))[: int(g.integers(2, 5))]:
                proj_names.append(pool[j])
                proj_dept.append(d)
        n_proj = len(proj_names)
        lasts = g.permutation(len(_LAST))
        users = [f"{f}.{_LAST[lasts[i]]}@example.com" for i, f in enumerate(_FIRST)]
        members = np.full((n_proj, 10), -1, dtype=np.int64)
        n_members = g.integers(4, 11, size=n_proj)
        for p in range(n_proj):
            members[p, : n_members[p]] = g.choice(len(users), size=n_members[p], replace=False)
        weights = g.lognormal(0.0, 0.6, size=n_proj)
        self._dept_names = depts
        self._dept_ids = [str(d + 1) for d in range(n_dept)]
        self._proj_names = proj_names
        self._proj_ids = [str(p + 1) for p in range(n_proj)]
        self._proj_dept = np.array(proj_dept, dtype=np.int64)
        self._proj_cluster = np.array([1 if p % 3 == 2 else 0 for p in range(n_proj)])
        self._proj_weights = weights / weights.sum()
        self._members = members
        self._n_members = n_members
        self._users = users

    def _draw_submissions(self, n: int) -> np.ndarray:
        """Sorted submission times: hourly intensity with a daily and a weekly rhythm."""
        g = rng.stream(self.config.seed, _P_TIMES)
        hours = np.arange((self.config.days + 1) * 24)
        hour_of_day = hours % 24
        weekday = (self.anchor.weekday() + hours // 24) % 7
        intensity = 0.25 + np.exp(-(((hour_of_day - 13.5) / 4.0) ** 2))
        intensity *= np.where(weekday >= 5, 0.35, 1.0)
        cdf = np.cumsum(intensity) / intensity.sum()
        hour = np.minimum(np.searchsorted(cdf, g.random(n), side="right"), len(hours) - 1)
        created = self._a + hour * 3600 + g.integers(0, 3600, size=n)
        return np.sort(created)

    def _draw_workloads(self) -> None:
        n = self.config.workloads
        seed = self.config.seed
        self._created = self._draw_submissions(n)
        g = rng.stream(seed, _P_SPEC)
        typ = g.choice(4, size=n, p=_TYPE_SHARE)
        proj = g.choice(len(self._proj_names), size=n, p=self._proj_weights)
        pick = (g.random(n) * self._n_members[proj]).astype(np.int64)
        user = self._members[proj, pick]
        cluster = self._proj_cluster[proj]
        # Node pool within the project's cluster, by capacity; sometimes a second choice.
        pool = np.empty(n, dtype=np.int64)
        second = np.full(n, -1, dtype=np.int64)
        u_pool, u_second, u_other = g.random(n), g.random(n), g.random(n)
        for c in range(len(CLUSTERS)):
            local = np.flatnonzero(np.equal(_POOL_CLUSTER, c))
            cdf = np.cumsum(_POOL_CAPACITY_Q[local]) / _POOL_CAPACITY_Q[local].sum()
            sel = cluster == c
            j = np.minimum(np.searchsorted(cdf, u_pool[sel], side="right"), len(local) - 1)
            pool[sel] = local[j]
            other = (j + 1 + (u_other[sel] * (len(local) - 1)).astype(np.int64)) % len(local)
            second[sel] = np.where(u_second[sel] < 0.3, local[other], -1)
        # Priority class (scheduler level).
        level = np.select([typ == T_INFERENCE, typ == T_WORKSPACE], [3, 2], default=0).astype(
            np.int64
        )
        level[(typ == T_WORKSPACE) & (g.random(n) < 0.1)] = 1
        # GPUs per pod (quarters) and pods.
        q_pod = np.zeros(n, dtype=np.int64)
        choices = {
            T_TRAINING: ((0, 4, 8, 16, 32), (0.06, 0.42, 0.27, 0.17, 0.08)),
            T_WORKSPACE: ((0, 1, 2, 4, 8), (0.12, 0.15, 0.25, 0.38, 0.10)),
            T_INFERENCE: ((2, 4, 8, 16), (0.25, 0.45, 0.22, 0.08)),
            T_DISTRIBUTED: ((4, 8, 16, 32), (0.25, 0.35, 0.30, 0.10)),
        }
        for t, (vals, probs) in choices.items():
            sel = typ == t
            q_pod[sel] = g.choice(vals, size=int(sel.sum()), p=probs)
        pods = np.ones(n, dtype=np.int64)
        inf = typ == T_INFERENCE
        pods[inf] = g.choice((1, 2), size=int(inf.sum()), p=(0.7, 0.3))
        dist = typ == T_DISTRIBUTED
        pods[dist] = g.choice((2, 3, 4), size=int(dist.sum()), p=(0.5, 0.25, 0.25))
        half = _POOL_CAPACITY_Q[pool] // 2
        for _ in range(4):  # no workload asks for more than half its pool
            over = pods * q_pod > half
            q_pod[over] //= 2
        # CPU and memory per pod.
        gpus_pod = q_pod / 4
        cpu = np.where(
            q_pod > 0,
            np.clip(4 * gpus_pod * g.choice((0.5, 1.0, 2.0), size=n), 1, 32),
            g.choice((0.5, 1.0, 2.0, 4.0), size=n),
        )
        cpu = 2.0 ** np.round(np.log2(cpu))
        mem_val = (cpu * g.choice((2, 4, 8), size=n)).astype(np.int64)  # GiB
        mem_unit = np.zeros(n, dtype=np.int64)  # 0: Gi, 1: M
        tiny = (cpu < 1) & (g.random(n) < 0.5)
        mem_val[tiny], mem_unit[tiny] = 500, 1
        mem_val = np.maximum(mem_val, 1)
        self._cpu_limit_factor = g.choice((1.0, 2.0), size=n)
        self._mem_limit_factor = g.choice((1, 2), size=n)
        # Durations (seconds of running needed) and outcomes.
        medians = np.array([2.5, 6.0, 36.0, 8.0]) * 3600
        sigmas = np.array([1.0, 0.9, 0.9, 0.8])
        duration = medians[typ] * np.exp(sigmas[typ] * g.standard_normal(n))
        outcome = np.full(n, COMPLETED, dtype=np.int64)
        u_out, frac = g.random(n), g.random(n)
        batch = (typ == T_TRAINING) | (typ == T_DISTRIBUTED)
        failed = batch & (u_out < 0.10)
        stopped = batch & (u_out >= 0.10) & (u_out < 0.15)
        outcome[failed] = FAILED
        outcome[stopped] = STOPPED
        outcome[~batch] = STOPPED  # workspaces and inference end when a user stops them
        work_share = np.ones(n)
        work_share[failed] = 0.01 + 0.49 * frac[failed]
        work_share[stopped] = 0.2 + 0.7 * frac[stopped]
        forever = ((typ == T_WORKSPACE) & (u_out < 0.12)) | (inf & (u_out < 0.45))
        guarantee = np.where(batch & (g.random(n) < 0.25), g.choice((1800, 3600, 7200), size=n), 0)
        self._ready_delay = g.integers(2, 46, size=n)
        delete = g.random(n) < np.array([0.65, 0.5, 0.6, 0.6])[typ]
        delete_delay = np.where(
            g.random(n) < 0.1, 0, np.maximum(60, 8 * 3600 * np.exp(1.3 * g.standard_normal(n)))
        ).astype(np.int64)
        self._source_cli = g.random(n) < np.where(batch, 0.35, 0.1)
        self._framework = np.where(dist, np.where(g.random(n) < 0.7, 1, 2), 0)  # 0: none
        self._app = np.where(inf & (g.random(n) < 0.6), g.integers(0, 3, size=n), -1)
        self._model = g.integers(0, len(_MODELS), size=n)
        self._command_epochs = g.integers(1, 50, size=n)

        # Usage profile (see metrics.py).
        h = rng.stream(seed, _P_USE)
        lo = np.array([55.0, 8.0, 15.0, 65.0])[typ]
        hi = np.array([95.0, 45.0, 70.0, 97.0])[typ]
        self._util_base = lo + (hi - lo) * h.random(n)
        self._util_amp = np.array([0.05, 0.6, 0.4, 0.03])[typ] * (0.5 + 0.5 * h.random(n))
        self._idle_prob = np.array([0.08, 0.6, 0.3, 0.05])[typ] * h.random(n)
        self._idle_block = h.integers(10, 91, size=n)
        self._zombie = (q_pod > 0) & (h.random(n) < 0.10)
        mem_frac = 0.25 + 0.72 * h.random(n)
        over_request = h.random(n) < 0.04
        mem_frac[over_request] = 0.97 + 0.08 * h.random(int(over_request.sum()))
        self._gpu_mem_frac = np.where(self._zombie, 0.02 + 0.08 * h.random(n), mem_frac)
        self._cpu_frac = 0.1 + 0.8 * h.random(n)
        self._cpu_mem_frac = 0.2 + 0.75 * h.random(n)
        self._nim_rate = 0.2 + 14.8 * h.random(n)
        self._nim_fail = 0.001 + 0.019 * h.random(n)
        self._nim_max = h.choice((64, 128, 256), size=n)

        self._type, self._proj, self._user, self._pool, self._second_pool = (
            typ,
            proj,
            user,
            pool,
            second,
        )
        self._level, self._q_pod, self._pods = level, q_pod, pods
        self._size_q = q_pod * pods
        self._cpu_pod, self._mem_val, self._mem_unit = cpu, mem_val, mem_unit
        self._outcome = outcome
        self._guarantee_raw = guarantee
        self._duration, self._work_share, self._forever = duration, work_share, forever
        self._delete, self._delete_delay = delete, delete_delay
        self._keys = rng.keys(seed, n)
        ids_g = rng.stream(seed, _P_IDS)
        words = ids_g.bit_generator.random_raw(size=(n, 2))
        self._ids = _uuid_strings(words[:, 0], words[:, 1])
        self._index_of = {w: i for i, w in enumerate(self._ids)}
        app_words = ids_g.bit_generator.random_raw(size=(len(self._proj_names) * 3, 2))
        self._app_ids = _uuid_strings(app_words[:, 0], app_words[:, 1])

    def _simulate(self) -> None:
        n = self.config.workloads
        ready = self._created + self._ready_delay
        work = np.full(n, NEVER, dtype=np.int64)
        guarantee = np.zeros(n, dtype=np.int64)
        iv_w: list[int] = []
        iv_s: list[int] = []
        iv_e: list[int] = []
        end = np.full(n, NEVER, dtype=np.int64)
        for p in range(len(NODEPOOLS)):
            members = np.flatnonzero(self._pool == p)
            cap = int(_POOL_CAPACITY_Q[p])
            # Never-ending workloads hold at most _FOREVER_SHARE of the pool (earliest kept).
            fm = members[self._forever[members]]
            held = np.cumsum(self._size_q[fm])
            forever = np.zeros(n, dtype=bool)
            forever[fm[held <= _FOREVER_SHARE * cap]] = True
            scale = self._duration_scale(members, ready, forever, cap)
            finite = members[~forever[members]]
            work[finite] = np.maximum(
                MIN_WORK_SECONDS,
                np.rint(scale * self._duration[finite] * self._work_share[finite]),
            ).astype(np.int64)
            guarantee[members] = np.rint(scale * self._guarantee_raw[members]).astype(np.int64)
            order = members[np.lexsort((members, ready[members]))]
            _simulate_pool(
                cap,
                order.tolist(),
                ready.tolist(),
                self._size_q.tolist(),
                self._level.tolist(),
                work.tolist(),
                guarantee.tolist(),
                iv_w,
                iv_s,
                iv_e,
                end,
            )
        w = np.asarray(iv_w, dtype=np.int64)
        s = np.asarray(iv_s, dtype=np.int64)
        e = np.asarray(iv_e, dtype=np.int64)
        order = np.lexsort((s, w))
        self._iv_w, self._iv_start, self._iv_end = w[order], s[order], e[order]
        self._iv_off = np.searchsorted(self._iv_w, np.arange(n + 1)).astype(np.int64)
        closed = np.where(self._iv_end < NEVER, self._iv_end - self._iv_start, 0)
        csum = np.concatenate([[0], np.cumsum(closed)])
        self._iv_cum = csum[:-1] - csum[self._iv_off[self._iv_w]]  # running before interval
        self._work, self._guarantee, self._end = work, guarantee, end
        self._deleted_at = np.where(
            self._delete & (end < NEVER), end + self._delete_delay, NEVER
        ).astype(np.int64)
        self._build_pool_steps()

    def _duration_scale(
        self, members: np.ndarray, ready: np.ndarray, forever: np.ndarray, cap: int
    ) -> float:
        """Factor on the pool's durations that makes its offered load TARGET_LOAD.

        Offered load: quarter-GPU-seconds asked for before submissions end, i.e. per
        workload size x min(scale x duration, time left); never-ending ones ask for all
        the time left. Piecewise linear in the scale, solved by bisection on sorted
        saturation points.
        """
        size = self._size_q[members].astype(np.float64)
        left = (self._h - ready[members]).astype(np.float64)
        endless = forever[members]
        fixed = float(np.dot(size[endless], left[endless]))
        dur = (self._duration[members] * self._work_share[members])[~endless]
        size, left = size[~endless], left[~endless]
        order = np.argsort(left / dur)
        saturate = (left / dur)[order]  # scale above which a workload asks for all time left
        full = np.concatenate([[0.0], np.cumsum((size * left)[order])])
        rate = np.concatenate([[0.0], np.cumsum((size * dur)[order])])
        target = TARGET_LOAD * cap * (self._h - self._a)

        def load(scale: float) -> float:
            k = int(np.searchsorted(saturate, scale, side="right"))
            return fixed + float(full[k]) + scale * float(rate[-1] - rate[k])

        lo, hi = _SCALE_BOUNDS
        if load(hi) <= target:
            return hi
        if load(lo) >= target:
            return lo
        for _ in range(60):
            mid = (lo * hi) ** 0.5
            lo, hi = (mid, hi) if load(mid) < target else (lo, mid)
        return (lo * hi) ** 0.5

    def _build_pool_steps(self) -> None:
        """Per node pool: allocation (quarter GPUs) after each change time."""
        self._pool_steps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        pool_of_iv = self._pool[self._iv_w]
        size_of_iv = self._size_q[self._iv_w]
        for p, pool in enumerate(NODEPOOLS):
            sel = (pool_of_iv == p) & (size_of_iv > 0)
            closed = sel & (self._iv_end < NEVER)
            t = np.concatenate([self._iv_start[sel], self._iv_end[closed]])
            d = np.concatenate([size_of_iv[sel], -size_of_iv[closed]])
            order = np.argsort(t, kind="stable")
            t, alloc = t[order], np.cumsum(d[order])
            last = np.append(t[1:] != t[:-1], True) if len(t) else np.zeros(0, dtype=bool)
            self._pool_steps[pool.name] = (t[last], alloc[last])

    def _build_columns(self) -> None:
        """The static columns of the snapshot table, over all workloads."""

        def vocab(values: list[str] | tuple[str, ...], codes: np.ndarray) -> pa.Array:
            return pa.array(values, type=pa.string()).take(pa.array(codes, type=pa.int64()))

        proj, dept = self._proj, self._proj_dept[self._proj]
        cluster = _POOL_CLUSTER[self._pool]
        self._names = self._make_names()
        app = self._app
        app_code = np.where(app >= 0, proj * 3 + np.maximum(app, 0), 0)
        has_app = pa.array(app < 0)
        self._static: dict[str, pa.Array] = {
            "id": pa.array(self._ids, type=pa.string()),
            "type": vocab(TYPES, self._type),
            "name": pa.array(self._names, type=pa.string()),
            "clusterId": vocab([c.id for c in CLUSTERS], cluster),
            "projectId": vocab(self._proj_ids, proj),
            "projectName": vocab(self._proj_names, proj),
            "departmentId": vocab(self._dept_ids, dept),
            "departmentName": vocab(self._dept_names, dept),
            "createdAt": _ts_column(self._created),
            "submittedBy": vocab(self._users, self._user),
            "nodepool": vocab([p.name for p in NODEPOOLS], self._pool),
            "distributedFramework": _null_where(
                vocab(["", "PyTorch", "MPI"], self._framework), pa.array(self._framework == 0)
            ),
            "category": vocab(CATEGORIES, self._type),
            "priority": pa.array(np.asarray(PRIORITIES)[self._level], type=pa.int64()),
            "priorityClassName": vocab(PRIORITY_CLASSES, self._level),
            "aiApplicationId": _null_where(vocab(self._app_ids, app_code), has_app),
            "aiApplicationName": _null_where(
                vocab(_APPS, (proj + np.maximum(app, 0)) % len(_APPS)), has_app
            ),
        }

    def _make_names(self) -> list[str]:
        """Unique names: a type-specific stem and a 5-character code bijective in the index."""
        n = self.config.workloads
        code_num = (np.arange(n, dtype=np.int64) * 7_919 + self.config.seed * 104_729) % 36**5
        codes = _strings((code_num[:, None] // 36 ** np.arange(4, -1, -1)) % 36)
        models = [_MODELS[m] for m in self._model.tolist()]
        firsts = [u.split(".")[0] for u in self._users]
        names = []
        for t, m, u, c in zip(self._type.tolist(), models, self._user.tolist(), codes, strict=True):
            if t == T_TRAINING:
                names.append(f"train-{m}-{c}")
            elif t == T_DISTRIBUTED:
                names.append(f"ddp-{m}-{c}")
            elif t == T_INFERENCE:
                names.append(f"{m}-serve-{c}")
            else:
                names.append(f"ws-{firsts[u]}-{c}")
        return names

    # ------------------------------------------------------------------ state at an instant

    def _intervals(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b = self._iv_off[i], self._iv_off[i + 1]
        return self._iv_start[a:b], self._iv_end[a:b], self._iv_cum[a:b]

    def _make_snapshot(self, at: int) -> Snapshot:
        n = int(np.searchsorted(self._created, at, side="right"))  # visible: a prefix
        off = self._iv_off[: n + 1]
        m = int(off[-1])  # their run intervals: a prefix too
        begun = np.concatenate([[0], np.cumsum(self._iv_start[:m] <= at)])
        count = begun[off[1:]] - begun[off[:-1]]  # intervals begun by `at`, per workload
        started = count > 0
        k = np.where(started, off[:-1] + count - 1, 0)  # the latest of them

        def latest(values: np.ndarray) -> np.ndarray:
            return np.where(started, values[k], 0) if m else np.zeros(n, dtype=np.int64)

        last_start, last_end = latest(self._iv_start), latest(self._iv_end)
        running = started & (at < last_end)
        run_total = latest(self._iv_cum) + np.where(
            started, np.minimum(at, last_end) - last_start, 0
        )
        created, end = self._created[:n], self._end[:n]
        terminal = at >= end
        pend_total = np.minimum(at, end) - created - run_total
        phase = np.where(running, RUNNING, PENDING)
        phase = np.where(terminal, self._outcome[:n], phase).astype(np.int8)
        phase_updated = np.select(
            [terminal, running, started], [end, last_start, last_end], default=created
        )
        idle = np.zeros(n, dtype=bool)
        on = np.flatnonzero(running & (self._size_q[:n] > 0))
        if len(on):
            util = gpu_utilization(
                self._keys[on],
                self._util_base[on],
                self._util_amp[on],
                self._idle_prob[on],
                self._idle_block[on],
                self._zombie[on],
                at // 60,
            )
            idle[on] = util == 0
        guaranteed = running & (self._guarantee[:n] > 0)
        guaranteed_end = np.where(guaranteed, last_start + self._guarantee[:n], -1)
        deleted = self._deleted_at[:n] <= at
        gpus = self._size_q[:n] / 4
        idle_gpus = np.where(idle, gpus, 0.0)
        state = _State(
            phase=phase,
            phase_updated=phase_updated,
            running=running,
            started=started,
            run_total=run_total,
            pend_total=pend_total,
            idle=idle,
            guaranteed_end=guaranteed_end,
            deleted=deleted,
        )
        varying = {
            "index": pa.array(np.arange(n, dtype=np.int64)),
            "deleted": pa.array(deleted),
            "deletedAt": _ts_column(self._deleted_at[:n], deleted),
            "phase": pa.array(PHASES).take(pa.array(phase.astype(np.int64))),
            "completedAt": _ts_column(end, terminal),
            "allocatedGPU": pa.array(np.where(running, gpus, 0.0)),
            "idleGpus": pa.array(np.floor(idle_gpus).astype(np.int64)),
            "idleAllocatedGpus": pa.array(idle_gpus),
            "phaseUpdatedAt": _ts_column(phase_updated),
            "totalPendingTimeSeconds": pa.array(pend_total.astype(np.int64)),
            "totalRunningTimeSeconds": pa.array(run_total.astype(np.int64)),
            "guaranteedRuntimeEndsAt": _ts_column(guaranteed_end, guaranteed),
        }
        columns = {
            name: varying[name] if name in varying else self._static[name].slice(0, n)
            for name in SNAPSHOT_COLUMNS
        }
        table = pa.table(columns)
        return Snapshot(at=_EPOCH + timedelta(seconds=at), table=table, _state=state)

    def _profile(self, i: int) -> Profile:
        cpu, mem = self._cpu_totals(i)
        return Profile(
            key=int(self._keys[i]),
            type=int(self._type[i]),
            gpus=float(self._size_q[i]) / 4,
            pods=int(self._pods[i]),
            gpu_memory_request=float(self._gpu_mem_pod_gib(i) * self._pods[i] * _GIB),
            cpu_request=cpu,
            cpu_limit=cpu * float(self._cpu_limit_factor[i]),
            cpu_memory_request=mem,
            cpu_memory_limit=mem * int(self._mem_limit_factor[i]),
            util_base=float(self._util_base[i]),
            util_amp=float(self._util_amp[i]),
            idle_prob=float(self._idle_prob[i]),
            idle_block=int(self._idle_block[i]),
            zombie=bool(self._zombie[i]),
            gpu_mem_frac=float(self._gpu_mem_frac[i]),
            cpu_frac=float(self._cpu_frac[i]),
            cpu_mem_frac=float(self._cpu_mem_frac[i]),
            nim_rate=float(self._nim_rate[i]),
            nim_fail=float(self._nim_fail[i]),
            nim_max=int(self._nim_max[i]),
        )

    def _gpu_mem_pod_gib(self, i: int) -> int:
        return int(self._q_pod[i] * _POOL_GPU_MEMORY_GIB[self._pool[i]] // 4)

    def _cpu_totals(self, i: int) -> tuple[float, float]:
        """Workload totals: CPU cores and CPU memory bytes requested."""
        pods = int(self._pods[i])
        unit = _GIB if self._mem_unit[i] == 0 else 1_000_000
        return float(self._cpu_pod[i]) * pods, float(self._mem_val[i] * unit * pods)

    # ------------------------------------------------------------------ JSON

    def _resources(self, i: int, pods: int) -> dict[str, Any]:
        """``WorkloadRequestResources`` for ``pods`` pods of workload i."""
        q = int(self._q_pod[i]) * pods
        unit = "Gi" if self._mem_unit[i] == 0 else "M"
        mem = int(self._mem_val[i]) * pods
        cpu = float(self._cpu_pod[i]) * pods
        gpu_mem = self._gpu_mem_pod_gib(i) * pods
        resources: dict[str, Any] = {"gpuRequestType": "portion"} if q > 0 else {}
        return {
            **resources,  # optional, and its enum has no null: absent for CPU-only requests
            "gpu": {"request": q / 4, "limit": q / 4},
            "gpuMemory": {"request": f"{gpu_mem}Gi", "limit": f"{gpu_mem}Gi"} if q > 0 else None,
            "cpu": {"request": cpu, "limit": cpu * float(self._cpu_limit_factor[i])},
            "cpuMemory": {
                "request": f"{mem}{unit}",
                "limit": f"{mem * int(self._mem_limit_factor[i])}{unit}",
            },
        }

    def _workload_json(self, i: int, st: _State) -> dict[str, Any]:
        typ, level, pool = int(self._type[i]), int(self._level[i]), int(self._pool[i])
        proj = int(self._proj[i])
        dept = int(self._proj_dept[proj])
        phase = int(st.phase[i])
        running = bool(st.running[i])
        phase_updated = _iso(st.phase_updated[i])
        deleted = bool(st.deleted[i])
        terminal = phase in (COMPLETED, FAILED, STOPPED)
        pods = int(self._pods[i])
        q = int(self._size_q[i])
        pool_names = [NODEPOOLS[pool].name]
        if self._second_pool[i] >= 0:
            pool_names.append(NODEPOOLS[int(self._second_pool[i])].name)
        updated = max(int(st.phase_updated[i]), int(self._deleted_at[i]) if deleted else 0)
        cli = bool(self._source_cli[i])
        doc: dict[str, Any] = {
            "tenantId": TENANT_ID,
            "id": self._ids[i],
            "name": self._names[i],
            "type": TYPES[typ],
            "category": CATEGORIES[typ],
            "source": "CLI" if cli else "Control-plane",
            "priority": PRIORITIES[level],
            "priorityClassName": PRIORITY_CLASSES[level],
            "preemptible": PREEMPTIBLE[level],
            "clusterId": CLUSTERS[int(_POOL_CLUSTER[pool])].id,
            "projectId": self._proj_ids[proj],
            "projectName": self._proj_names[proj],
            "departmentId": self._dept_ids[dept],
            "departmentName": self._dept_names[dept],
            "namespace": f"runai-{self._proj_names[proj]}",
            "submittedBy": self._users[int(self._user[i])],
            "createdAt": _iso(self._created[i]),
            "updatedAt": _iso(updated),
            "deletedAt": _iso(self._deleted_at[i]) if deleted else None,
            "phase": PHASES[phase],
            "phaseUpdatedAt": phase_updated,
            "k8sPhase": _K8S_PHASES[phase],
            "k8sPhaseUpdatedAt": phase_updated,
            "conditions": [self._condition(phase, bool(st.started[i]), phase_updated)],
            "runningPods": pods if running else 0,
            "requestedPods": _requested_pods(typ, pods),
            "workloadRequestedResources": self._resources(i, pods),
            "podsRequestedResources": self._resources(i, 1),
            "allocatedResources": self._allocated(i, running, bool(st.started[i])),
            "requestedNodePools": pool_names,
            "currentNodePools": [NODEPOOLS[pool].name] if running else [],
            "completedAt": phase_updated if terminal else None,
            "images": [_IMAGES[typ]],
            "idleGpus": int(q // 4) if st.idle[i] else 0,
            "idleAllocatedGpus": q / 4 if st.idle[i] else 0.0,
            "totalPendingTimeSeconds": int(st.pend_total[i]),
            "totalRunningTimeSeconds": int(st.run_total[i]),
            "guaranteedRuntimeEndsAt": (
                _iso(st.guaranteed_end[i]) if st.guaranteed_end[i] >= 0 else None
            ),
            "actionsSupport": {"delete": True, "suspend": typ != T_DISTRIBUTED},
        }
        # Optional fields whose schemas admit no null are left out rather than sent as null:
        # ``sourceApi`` (absent for CLI submissions) and ``phaseReason`` (never set here).
        if not cli:
            doc["sourceApi"] = "WorkloadsV2"
        if phase == PENDING:
            doc["phaseMessage"] = (
                "Preempted by a higher-priority workload; waiting to resume"
                if st.started[i]
                else "Not enough resources in the requested nodepool"
            )
        elif phase == FAILED:
            doc["phaseMessage"] = "Container exited with code 1"
        if self._framework[i]:
            doc["distributedFramework"] = ("PyTorch", "MPI")[int(self._framework[i]) - 1]
        if self._app[i] >= 0:
            app = int(self._app[i])
            doc["aiApplicationId"] = self._app_ids[proj * 3 + app]
            doc["aiApplicationName"] = _APPS[(proj + app) % len(_APPS)]
        if typ in (T_WORKSPACE, T_INFERENCE):
            cluster_name = CLUSTERS[int(_POOL_CLUSTER[pool])].name
            doc["urls"] = [f"https://{cluster_name}.example.com/{doc['namespace']}/{doc['name']}"]
        else:
            doc["command"] = "torchrun" if typ == T_DISTRIBUTED else "python"
            doc["arguments"] = (
                f"train.py --model {_MODELS[self._model[i]]} --epochs {self._command_epochs[i]}"
            )
        return doc

    def _allocated(self, i: int, running: bool, started: bool) -> dict[str, Any] | None:
        if not started:
            return None
        if not running:
            return {"gpu": 0.0, "gpuMemory": "0", "cpu": 0.0, "cpuMemory": "0"}
        req = self._resources(i, int(self._pods[i]))
        return {
            "gpu": req["gpu"]["request"],
            "gpuMemory": req["gpuMemory"]["request"] if req["gpuMemory"] else "0",
            "cpu": req["cpu"]["request"],
            "cpuMemory": req["cpuMemory"]["request"],
        }

    @staticmethod
    def _condition(phase: int, started: bool, since: str) -> dict[str, Any]:
        if phase == PENDING:
            reason = "Preempted" if started else "Unschedulable"
            return {
                "type": "Ready",
                "status": "False",
                "reason": reason,
                "lastTransitionTime": since,
            }
        if phase == RUNNING:
            return {"type": "Ready", "status": "True", "lastTransitionTime": since}
        if phase == FAILED:
            return {
                "type": "Failed",
                "status": "True",
                "reason": "PodFailure",
                "message": "Container exited with code 1",
                "lastTransitionTime": since,
            }
        return {"type": PHASES[phase], "status": "True", "lastTransitionTime": since}


def _requested_pods(typ: int, pods: int) -> dict[str, Any]:
    if typ == T_INFERENCE:
        return {"number": pods, "min": 1, "max": max(pods, 2)}
    if typ == T_DISTRIBUTED:
        return {"number": pods, "min": pods, "max": pods}
    return {"number": 1}


def _null_where(values: pa.Array, mask: pa.Array) -> pa.Array:
    return pc.if_else(mask, pa.scalar(None, type=values.type), values)


def _simulate_pool(
    cap: int,
    order: list[int],
    ready: list[int],
    size: list[int],
    level: list[int],
    work: list[int],
    guarantee: list[int],
    iv_w: list[int],
    iv_s: list[int],
    iv_e: list[int],
    end: np.ndarray,
) -> None:
    """Event-driven scheduling of one node pool; appends run intervals, sets end times.

    ``order``: the pool's workloads by the time they become schedulable (``ready``),
    index breaking ties. Capacity and sizes in quarter GPUs; ``work`` is the running time
    a workload needs (``NEVER``: it runs until the end of time).

    Pending workloads start by level (priority class), then first come first served;
    a smaller one may overtake a blocked one of its level (backfill) unless the blocked
    one has waited ``RESERVE_AFTER_SECONDS``: then nothing of its level or below starts
    before it. A blocked workload of level > 0 preempts lower-level preemptible ones.
    CPU-only workloads (size 0) need no capacity and start when ready.
    """
    free = cap
    remaining: dict[int, int] = {}
    run_start: dict[int, int] = {}
    since: dict[int, int] = {}  # pending since
    version: dict[int, int] = {}
    finish: list[tuple[int, int, int]] = []  # (time, workload, version)
    queues: list[dict[int, list[int]]] = [{} for _ in range(_N_LEVELS)]  # size -> heap of w
    victims: list[dict[int, int]] = [{} for _ in range(_N_LEVELS)]  # running, by start order
    victim_q = [0] * _N_LEVELS

    def start(w: int, t: int) -> None:
        nonlocal free
        free -= size[w]
        run_start[w] = t
        v = version[w] = version.get(w, 0) + 1
        if remaining[w] < NEVER:
            heapq.heappush(finish, (t + remaining[w], w, v))
        lv = level[w]
        if PREEMPTIBLE[lv] and size[w] > 0:
            victims[lv][w] = t
            victim_q[lv] += size[w]

    def stop(w: int, t: int) -> None:
        nonlocal free
        s = run_start.pop(w)
        iv_w.append(w)
        iv_s.append(s)
        iv_e.append(t)
        free += size[w]
        lv = level[w]
        if w in victims[lv]:
            del victims[lv][w]
            victim_q[lv] -= size[w]
        if remaining[w] < NEVER:
            remaining[w] -= t - s

    def enqueue(w: int, t: int) -> None:
        since[w] = t
        heapq.heappush(queues[level[w]].setdefault(size[w], []), w)

    def preempt_for(lv: int, need: int, t: int) -> bool:
        """Free ``need`` quarters from lower preemptible levels, or change nothing."""
        chosen: list[int] = []
        got = 0
        for low in range(lv):
            for w, s in reversed(victims[low].items()):
                if s < t and s + guarantee[w] <= t:
                    chosen.append(w)
                    got += size[w]
                    if got >= need:
                        break
            if got >= need:
                break
        if got < need:
            return False
        for w in chosen:
            stop(w, t)
            version[w] += 1  # its finish event is void
            enqueue(w, t)
        return True

    def schedule(t: int) -> None:
        for lv in range(_N_LEVELS - 1, -1, -1):
            q = queues[lv]
            while q:
                head = best = -1
                head_size = best_size = 0
                for s, heap in q.items():
                    w = heap[0]
                    if head < 0 or w < head:
                        head, head_size = w, s
                    if s <= free and (best < 0 or w < best):
                        best, best_size = w, s
                reserved = t - since[head] >= RESERVE_AFTER_SECONDS
                if best != head and (best < 0 or reserved):
                    if head_size > free and not (
                        head_size <= free + sum(victim_q[:lv])
                        and preempt_for(lv, head_size - free, t)
                    ):
                        if reserved:
                            return  # the head holds the capacity that frees up next
                        break
                    best, best_size = head, head_size
                heap = q[best_size]
                heapq.heappop(heap)
                if not heap:
                    del q[best_size]
                start(best, t)

    ai, n = 0, len(order)
    while ai < n or finish:
        t = ready[order[ai]] if ai < n else NEVER
        if finish and finish[0][0] < t:
            t = finish[0][0]
        freed = False
        while finish and finish[0][0] == t:
            _, w, v = heapq.heappop(finish)
            if version[w] == v:
                stop(w, t)
                end[w] = t
                freed = True
        arrived = False
        while ai < n and ready[order[ai]] == t:
            w = order[ai]
            ai += 1
            remaining[w] = work[w]
            if size[w] == 0:
                start(w, t)
            else:
                enqueue(w, t)
                arrived = True
        if freed or arrived:
            schedule(t)
    for w, s in run_start.items():  # still running at the end of time
        iv_w.append(w)
        iv_s.append(s)
        iv_e.append(NEVER)


@lru_cache(maxsize=1)
def _metric_types() -> frozenset[str]:
    return frozenset(enum_values("WorkloadMetricType"))
