"""The build-time draws of the synthetic cluster: its org chart and every workload.

``Draws(config, anchor)`` draws, once and for the whole timeline, an org chart
(departments, projects, users and project membership) and the workload submissions over
``[anchor, anchor + days + 1 day)`` with a daily and weekly rhythm, each with its project,
submitter, node pool, priority class, requests (GPUs, pods, CPU, memory), running time it
needs, outcome, deletion, and the parameters of its usage profile (see ``metrics``).
Everything is a column over the workload index, in submission order.

All randomness comes from ``rng`` (Philox streams for the build, one per purpose), so
equal configs give identical draws.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from workloads_etl.simulator import rng
from workloads_etl.simulator.catalogue import (
    COMPLETED,
    DAY,
    FAILED,
    FIRST_NAMES,
    GIB,
    LAST_NAMES,
    MODELS,
    STOPPED,
    Catalogue,
    to_seconds,
)
from workloads_etl.simulator.config import SimulatorConfig
from workloads_etl.simulator.metrics import (
    T_DISTRIBUTED,
    T_INFERENCE,
    T_TRAINING,
    T_WORKSPACE,
    Profile,
)

_TYPE_SHARE = (0.42, 0.25, 0.11, 0.22)

# Philox purposes of the build draws.
_P_ORG, _P_TIMES, _P_SPEC, _P_RUN, _P_USE, _P_IDS = range(1, 7)

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


class Draws:
    """The org chart and all workloads of one config, drawn once; row == workload index.

    ``start`` is the first second of the timeline (``anchor``), ``horizon`` the second
    submissions end. ``catalogue``: the clusters and node pools workloads are drawn into.
    """

    def __init__(self, config: SimulatorConfig, anchor: datetime, catalogue: Catalogue) -> None:
        self.config = config
        self.catalogue = catalogue
        self.anchor = anchor
        self.start = to_seconds(anchor)
        self.horizon = self.start + (config.days + 1) * DAY  # submissions end here
        self._draw_org()
        self._draw_workloads()
        self.names = self._make_names()

    def _draw_org(self) -> None:
        cat = self.catalogue
        g = rng.stream(self.config.seed, _P_ORG)
        names = list(cat.departments)
        n_dept = int(g.integers(*cat.dept_range))
        depts = [names[i] for i in g.permutation(len(names))[:n_dept]]
        proj_names: list[str] = []
        proj_dept: list[int] = []
        for d, dept in enumerate(depts):
            pool = cat.departments[dept]
            for j in g.permutation(len(pool))[: int(g.integers(2, 5))]:
                proj_names.append(pool[j])
                proj_dept.append(d)
        n_proj = len(proj_names)
        lasts = g.permutation(len(LAST_NAMES))
        n_first, n_last = len(FIRST_NAMES), len(LAST_NAMES)
        users = [  # distinct (first, last) pairs; the first len(FIRST_NAMES) as ever
            f"{FIRST_NAMES[u % n_first]}.{LAST_NAMES[lasts[(u // n_first + u) % n_last]]}"
            "@example.com"
            for u in range(cat.n_users)
        ]
        members = np.full((n_proj, cat.max_members), -1, dtype=np.int64)
        n_members = g.integers(4, cat.max_members + 1, size=n_proj)
        for p in range(n_proj):
            members[p, : n_members[p]] = g.choice(len(users), size=n_members[p], replace=False)
        weights = g.lognormal(0.0, 0.6, size=n_proj)
        if cat.scaled_org:
            # Projects spread over the clusters by capacity (each has one at least), and
            # each cluster's projects ask for a share of the work equal to its GPU share.
            gpus = np.bincount(cat.pool_cluster, weights=cat.pool_capacity_q).astype(np.float64)
            n_clusters = len(cat.clusters)
            extra = np.floor(gpus / gpus.sum() * (n_proj - n_clusters)).astype(np.int64)
            counts = 1 + extra
            counts[np.argsort(-gpus, kind="stable")[: n_proj - int(counts.sum())]] += 1
            proj_cluster = g.permutation(np.repeat(np.arange(n_clusters), counts))
            in_cluster = np.bincount(proj_cluster, weights=weights, minlength=n_clusters)
            weights = weights / in_cluster[proj_cluster] * gpus[proj_cluster]
        else:
            proj_cluster = np.array([1 if p % 3 == 2 else 0 for p in range(n_proj)])
        self.dept_names = depts
        self.dept_ids = [str(d + 1) for d in range(n_dept)]
        self.proj_names = proj_names
        self.proj_ids = [str(p + 1) for p in range(n_proj)]
        self.proj_dept = np.array(proj_dept, dtype=np.int64)
        self.proj_cluster = proj_cluster
        self.proj_weights = weights / weights.sum()
        self.members = members
        self.n_members = n_members
        self.users = users

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
        created = self.start + hour * 3600 + g.integers(0, 3600, size=n)
        return np.sort(created)

    def _draw_workloads(self) -> None:
        n = self.config.workloads
        seed = self.config.seed
        self.created = self._draw_submissions(n)
        g = rng.stream(seed, _P_SPEC)
        typ = g.choice(4, size=n, p=_TYPE_SHARE)
        proj = g.choice(len(self.proj_names), size=n, p=self.proj_weights)
        pick = (g.random(n) * self.n_members[proj]).astype(np.int64)
        user = self.members[proj, pick]
        cluster = self.proj_cluster[proj]
        # Node pool within the project's cluster, by capacity; sometimes a second choice.
        pool = np.empty(n, dtype=np.int64)
        second = np.full(n, -1, dtype=np.int64)
        u_pool, u_second, u_other = g.random(n), g.random(n), g.random(n)
        capacity_q = self.catalogue.pool_capacity_q
        for c in range(len(self.catalogue.clusters)):
            local = np.flatnonzero(np.equal(self.catalogue.pool_cluster, c))
            cdf = np.cumsum(capacity_q[local]) / capacity_q[local].sum()
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
        half = capacity_q[pool] // 2
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
        self.cpu_limit_factor = g.choice((1.0, 2.0), size=n)
        self.mem_limit_factor = g.choice((1, 2), size=n)
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
        self.ready_delay = g.integers(2, 46, size=n)
        delete = g.random(n) < np.array([0.65, 0.5, 0.6, 0.6])[typ]
        delete_delay = np.where(
            g.random(n) < 0.1, 0, np.maximum(60, 8 * 3600 * np.exp(1.3 * g.standard_normal(n)))
        ).astype(np.int64)
        self.source_cli = g.random(n) < np.where(batch, 0.35, 0.1)
        self.framework = np.where(dist, np.where(g.random(n) < 0.7, 1, 2), 0)  # 0: none
        self.app = np.where(inf & (g.random(n) < 0.6), g.integers(0, 3, size=n), -1)
        self.model = g.integers(0, len(MODELS), size=n)
        self.command_epochs = g.integers(1, 50, size=n)

        # Usage profile (see metrics.py).
        h = rng.stream(seed, _P_USE)
        lo = np.array([55.0, 8.0, 15.0, 65.0])[typ]
        hi = np.array([95.0, 45.0, 70.0, 97.0])[typ]
        self.util_base = lo + (hi - lo) * h.random(n)
        self.util_amp = np.array([0.05, 0.6, 0.4, 0.03])[typ] * (0.5 + 0.5 * h.random(n))
        self.idle_prob = np.array([0.08, 0.6, 0.3, 0.05])[typ] * h.random(n)
        self.idle_block = h.integers(10, 91, size=n)
        self.zombie = (q_pod > 0) & (h.random(n) < 0.10)
        mem_frac = 0.25 + 0.72 * h.random(n)
        over_request = h.random(n) < 0.04
        mem_frac[over_request] = 0.97 + 0.08 * h.random(int(over_request.sum()))
        self.gpu_mem_frac = np.where(self.zombie, 0.02 + 0.08 * h.random(n), mem_frac)
        self.cpu_frac = 0.1 + 0.8 * h.random(n)
        self.cpu_mem_frac = 0.2 + 0.75 * h.random(n)
        self.nim_rate = 0.2 + 14.8 * h.random(n)
        self.nim_fail = 0.001 + 0.019 * h.random(n)
        self.nim_max = h.choice((64, 128, 256), size=n)

        self.type, self.proj, self.user, self.pool, self.second_pool = (
            typ,
            proj,
            user,
            pool,
            second,
        )
        self.level, self.q_pod, self.pods = level, q_pod, pods
        self.size_q = q_pod * pods
        self.cpu_pod, self.mem_val, self.mem_unit = cpu, mem_val, mem_unit
        self.outcome = outcome
        self.guarantee_raw = guarantee
        self.duration, self.work_share, self.forever = duration, work_share, forever
        self.delete, self.delete_delay = delete, delete_delay
        self.keys = rng.keys(seed, n)
        ids_g = rng.stream(seed, _P_IDS)
        words = ids_g.bit_generator.random_raw(size=(n, 2))
        self.ids = _uuid_strings(words[:, 0], words[:, 1])
        self.index_of = {w: i for i, w in enumerate(self.ids)}
        app_words = ids_g.bit_generator.random_raw(size=(len(self.proj_names) * 3, 2))
        self.app_ids = _uuid_strings(app_words[:, 0], app_words[:, 1])

    def _make_names(self) -> list[str]:
        """Unique names: a type-specific stem and a 5-character code bijective in the index."""
        n = self.config.workloads
        code_num = (np.arange(n, dtype=np.int64) * 7_919 + self.config.seed * 104_729) % 36**5
        codes = _strings((code_num[:, None] // 36 ** np.arange(4, -1, -1)) % 36)
        models = [MODELS[m] for m in self.model.tolist()]
        firsts = [u.split(".")[0] for u in self.users]
        names = []
        for t, m, u, c in zip(self.type.tolist(), models, self.user.tolist(), codes, strict=True):
            if t == T_TRAINING:
                names.append(f"train-{m}-{c}")
            elif t == T_DISTRIBUTED:
                names.append(f"ddp-{m}-{c}")
            elif t == T_INFERENCE:
                names.append(f"{m}-serve-{c}")
            else:
                names.append(f"ws-{firsts[u]}-{c}")
        return names

    def profile(self, i: int) -> Profile:
        """The usage profile of workload i that its metric series are computed from."""
        cpu, mem = self.cpu_totals(i)
        return Profile(
            key=int(self.keys[i]),
            type=int(self.type[i]),
            gpus=float(self.size_q[i]) / 4,
            pods=int(self.pods[i]),
            gpu_memory_request=float(self.gpu_mem_pod_gib(i) * self.pods[i] * GIB),
            cpu_request=cpu,
            cpu_limit=cpu * float(self.cpu_limit_factor[i]),
            cpu_memory_request=mem,
            cpu_memory_limit=mem * int(self.mem_limit_factor[i]),
            util_base=float(self.util_base[i]),
            util_amp=float(self.util_amp[i]),
            idle_prob=float(self.idle_prob[i]),
            idle_block=int(self.idle_block[i]),
            zombie=bool(self.zombie[i]),
            gpu_mem_frac=float(self.gpu_mem_frac[i]),
            cpu_frac=float(self.cpu_frac[i]),
            cpu_mem_frac=float(self.cpu_mem_frac[i]),
            nim_rate=float(self.nim_rate[i]),
            nim_fail=float(self.nim_fail[i]),
            nim_max=int(self.nim_max[i]),
        )

    def gpu_mem_pod_gib(self, i: int) -> int:
        return int(self.q_pod[i] * self.catalogue.pool_gpu_memory_gib[self.pool[i]] // 4)

    def cpu_totals(self, i: int) -> tuple[float, float]:
        """Workload totals: CPU cores and CPU memory bytes requested."""
        pods = int(self.pods[i])
        unit = GIB if self.mem_unit[i] == 0 else 1_000_000
        return float(self.cpu_pod[i]) * pods, float(self.mem_val[i] * unit * pods)
