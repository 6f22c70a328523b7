"""Metric values of one simulated workload as pure functions of (seed, workload, type, instant).

Every value that varies over time is a function of the whole UTC minute containing the
instant (hashed with the workload's key), of whether the workload runs at that instant
and, for counters, of its cumulative running time. Nothing depends on the query window,
so two requests covering the same instant return the same value.

Inputs are arrays over the requested instants: ``minute`` (UTC epoch minute), ``alive``
(created <= t < end, and t before the cluster clock), ``running``, ``run_seconds``
(cumulative running seconds at t) and ``since_start`` (seconds since the run interval
holding t began).
A value is NaN where the series has no sample.

Pods start one after the other: ``RUNNING_POD_COUNT`` is 0 while the workload is not
running and, at the start of each run interval (first start and every resumption), pod
``k`` (``k = 1..pods``) becomes Running ``k - 1`` minutes after the interval began, so a
multi-pod workload (distributed, inference with 2 pods) counts 1, 2, ... pods in its first
minutes. The workload's GPUs are reserved for the whole interval all the same (gang
scheduling), so ``GPU_ALLOCATION`` and everything else derived from running is the whole
workload's from the interval's first second on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from workloads_etl.simulator import rng

# Salts of the hashed per-minute draws.
_S_UTIL = 11
_S_IDLE = 12
_S_GPU_MEM = 13
_S_CPU = 14
_S_CPU_MEM = 15
_S_NIM = 16

UTIL_JITTER = 8.0  # +- percentage points of per-minute noise around the workload's level
PEAK_HOUR_UTC = 14  # hour of the day when interactive use peaks
POD_START_STAGGER = 60  # seconds between the starts of a workload's pods in a run interval

T_TRAINING, T_WORKSPACE, T_INFERENCE, T_DISTRIBUTED = range(4)

NIM_TYPES = frozenset(
    {
        "NIM_NUM_REQUESTS_RUNNING",
        "NIM_NUM_REQUESTS_WAITING",
        "NIM_NUM_REQUEST_MAX",
        "NIM_REQUEST_SUCCESS_TOTAL",
        "NIM_REQUEST_FAILURE_TOTAL",
        "NIM_GPU_CACHE_USAGE_PERC",
        "NIM_TIME_TO_FIRST_TOKEN_SECONDS",
        "NIM_E2E_REQUEST_LATENCY_SECONDS",
        "NIM_TIME_TO_FIRST_TOKEN_SECONDS_PERCENTILES",
        "NIM_E2E_REQUEST_LATENCY_SECONDS_PERCENTILES",
    }
)
_PERCENTILES = (("p50", 1.0), ("p90", 1.9), ("p99", 3.2))

Series = list[tuple[dict[str, str] | None, np.ndarray]]
_Raw = list[tuple[dict[str, str] | None, np.ndarray | float]]


def gpu_utilization(
    key: np.ndarray | int,
    base: np.ndarray | float,
    amp: np.ndarray | float,
    idle_prob: np.ndarray | float,
    idle_block: np.ndarray | int,
    zombie: np.ndarray | bool,
    minute: np.ndarray | int,
) -> np.ndarray:
    """Average GPU utilisation (0-100, one decimal) of a *running* workload in a minute.

    Broadcasts: one workload over many minutes, or many workloads at one minute.
    A level per workload, a daily rhythm peaking at ``PEAK_HOUR_UTC``, per-minute
    jitter, idle stretches of ``idle_block`` whole minutes with utilisation 0, and
    zombies (workloads that hold GPUs and never use them) at 0 throughout.
    """
    m = np.asarray(minute, dtype=np.int64)
    idle = rng.uniform(key, _S_IDLE, m // np.asarray(idle_block, dtype=np.int64)) < idle_prob
    hour = (m // 60) % 24
    rhythm = 1.0 + np.asarray(amp) * np.cos(2.0 * np.pi * (hour - PEAK_HOUR_UTC) / 24.0)
    noise = (rng.uniform(key, _S_UTIL, m) - 0.5) * (2.0 * UTIL_JITTER)
    level = np.round(np.clip(np.asarray(base) * rhythm + noise, 1.0, 100.0), 1)
    return np.asarray(np.where(idle | np.asarray(zombie), 0.0, level), dtype=np.float64)


@dataclass(frozen=True)
class Profile:
    """What the metric functions need to know about one workload (totals over its pods)."""

    key: int
    type: int
    gpus: float
    pods: int
    gpu_memory_request: float  # bytes
    cpu_request: float  # cores
    cpu_limit: float
    cpu_memory_request: float  # bytes
    cpu_memory_limit: float
    util_base: float
    util_amp: float
    idle_prob: float
    idle_block: int
    zombie: bool
    gpu_mem_frac: float  # typical GPU memory use / request
    cpu_frac: float  # typical CPU use / request
    cpu_mem_frac: float  # typical CPU memory use / request
    nim_rate: float  # requests per running second (inference only)
    nim_fail: float  # failed share of requests
    nim_max: int  # max concurrent requests

    def utilization(self, minute: np.ndarray) -> np.ndarray:
        """GPU utilisation in the given minutes, were the workload running in them."""
        key = self.key
        usage = (self.util_base, self.util_amp, self.idle_prob, self.idle_block, self.zombie)
        return gpu_utilization(key, *usage, minute)


def _u(p: Profile, salt: int, minute: np.ndarray) -> np.ndarray:
    return rng.uniform(p.key, salt, minute)


def series(
    p: Profile,
    metric_type: str,
    minute: np.ndarray,
    alive: np.ndarray,
    running: np.ndarray,
    run_seconds: np.ndarray,
    since_start: np.ndarray,
    memo: dict[str, np.ndarray] | None = None,
) -> Series:
    """The series of ``metric_type`` for the workload at the given instants.

    Every series has a value wherever the workload is alive (NaN elsewhere), except the
    NIM latencies, which have none while no pod runs. An empty list: the type does not
    apply to this workload. ``memo``: shared by calls for the same workload and instants,
    it keeps what several types derive from (utilisation, NIM jitter and latencies) for the
    next call.
    """
    if metric_type == "RUNNING_POD_COUNT":
        started = np.minimum(p.pods, np.maximum(since_start, 0) // POD_START_STAGGER + 1)
        raw: _Raw = [(None, running * started.astype(np.float64))]
    else:
        run = _kept(memo, "run", lambda: running.astype(np.float64))
        raw = _raw(p, metric_type, minute, run, run_seconds, memo)
    return [
        (labels, np.where(alive, v, np.nan).astype(np.float64, copy=False)) for labels, v in raw
    ]


def _raw(
    p: Profile,
    metric_type: str,
    minute: np.ndarray,
    run: np.ndarray,
    run_seconds: np.ndarray,
    memo: dict[str, np.ndarray] | None = None,
) -> _Raw:
    def util() -> np.ndarray:
        return _kept(
            memo,
            "util",
            lambda: p.utilization(minute) * run if p.gpus > 0 else np.zeros(minute.shape),
        )

    if metric_type == "GPU_UTILIZATION":
        return [(None, util())]
    if metric_type == "GPU_ALLOCATION":
        return [(None, run * p.gpus)]
    if metric_type == "POD_COUNT":
        return [(None, float(p.pods))]
    if metric_type == "GPU_MEMORY_REQUEST_BYTES":
        return [(None, p.gpu_memory_request)]
    if metric_type == "CPU_REQUEST_CORES":
        return [(None, p.cpu_request)]
    if metric_type == "CPU_LIMIT_CORES":
        return [(None, p.cpu_limit)]
    if metric_type == "CPU_MEMORY_REQUEST_BYTES":
        return [(None, p.cpu_memory_request)]
    if metric_type == "CPU_MEMORY_LIMIT_BYTES":
        return [(None, p.cpu_memory_limit)]
    if metric_type == "GPU_MEMORY_USAGE_BYTES":
        frac = np.clip(p.gpu_mem_frac + 0.06 * (_u(p, _S_GPU_MEM, minute) - 0.5), 0.01, 1.1)
        return [(None, np.round(run * frac * p.gpu_memory_request))]
    if metric_type == "CPU_USAGE_CORES":
        busy = 0.35 + 0.65 * (util() > 0) if p.gpus > 0 else 1.0
        level = p.cpu_request * p.cpu_frac * (0.6 + 0.8 * _u(p, _S_CPU, minute)) * busy
        return [(None, np.round(run * np.clip(level, 0.01, p.cpu_limit), 3))]
    if metric_type == "CPU_MEMORY_USAGE_BYTES":
        frac = p.cpu_mem_frac + 0.1 * (_u(p, _S_CPU_MEM, minute) - 0.5)
        top = p.cpu_memory_limit / max(p.cpu_memory_request, 1.0)
        return [(None, np.round(run * np.clip(frac, 0.02, top) * p.cpu_memory_request))]
    if metric_type == "NVLINK_BANDWIDTH_TOTAL":
        if p.gpus < 2:
            return []
        per_gpu = 18e9 if p.type == T_DISTRIBUTED else 4e9  # bytes/s at full utilisation
        return [(None, np.round(util() / 100.0 * p.gpus * per_gpu))]
    if metric_type in NIM_TYPES and p.type == T_INFERENCE:
        return _nim(p, metric_type, minute, run, util(), run_seconds, memo)
    return []


def _kept(
    memo: dict[str, np.ndarray] | None, name: str, make: Callable[[], np.ndarray]
) -> np.ndarray:
    """``make()``, made once per ``memo`` (read-only then: every series shares it)."""
    if memo is None:
        return make()
    value = memo.get(name)
    if value is None:
        value = memo[name] = make()
        value.flags.writeable = False
    return value


def _nim(
    p: Profile,
    metric_type: str,
    minute: np.ndarray,
    run: np.ndarray,
    util: np.ndarray,
    run_seconds: np.ndarray,
    memo: dict[str, np.ndarray] | None = None,
) -> _Raw:
    load = util / 100.0

    def jitter() -> np.ndarray:
        return _kept(memo, "nim_jitter", lambda: _u(p, _S_NIM, minute))

    if metric_type == "NIM_NUM_REQUESTS_RUNNING":
        return [(None, np.round(run * load * 0.8 * p.nim_max))]
    if metric_type == "NIM_NUM_REQUESTS_WAITING":
        return [(None, np.round(run * np.maximum(0.0, (util - 85.0) / 15.0) * 0.5 * p.nim_max))]
    if metric_type == "NIM_NUM_REQUEST_MAX":
        return [(None, float(p.nim_max))]
    if metric_type == "NIM_REQUEST_SUCCESS_TOTAL":
        return [(None, np.floor(p.nim_rate * (1.0 - p.nim_fail) * run_seconds))]
    if metric_type == "NIM_REQUEST_FAILURE_TOTAL":
        return [(None, np.floor(p.nim_rate * p.nim_fail * run_seconds))]
    if metric_type == "NIM_GPU_CACHE_USAGE_PERC":  # a fraction, 1 = full, as NIM reports it
        return [(None, np.round(run * np.clip(0.9 * load + 0.05 * jitter(), 0.0, 1.0), 4))]

    def latency(first_token: bool) -> np.ndarray:
        serving = np.where(run > 0, 1.0, np.nan)  # latencies exist only while a pod serves
        low, high = (0.04, 0.25) if first_token else (0.8, 3.0)
        return np.round((low + high * load**2) * (0.9 + 0.2 * jitter()), 4) * serving

    first_token = metric_type.startswith("NIM_TIME_TO_FIRST_TOKEN_SECONDS")
    base = _kept(memo, "nim_ttft" if first_token else "nim_e2e", lambda: latency(first_token))
    if not metric_type.endswith("_PERCENTILES"):
        return [(None, base)]
    return [({"percentile": name}, np.round(base * f, 4)) for name, f in _PERCENTILES]
