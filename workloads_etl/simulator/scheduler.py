"""The event-driven scheduler that turns the drawn submissions into run intervals.

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
of the pool over the timeline (within ``SCALE_BOUNDS``): busy hours queue, nights drain,
whatever ``workloads`` is. At 100,000 workloads runs last minutes, at a few hundred hours.

Once scheduled, some workloads move to another project or node pool at a UTC midnight
(``moves``); a pool's allocation steps count a moved workload's run in the old pool up to
the move and in the new one after it.
"""

from __future__ import annotations

import heapq

import numpy as np

from workloads_etl.simulator.catalogue import (
    N_LEVELS,
    NEVER,
    PREEMPTIBLE,
)
from workloads_etl.simulator.draws import Draws
from workloads_etl.simulator.moves import Moves

TARGET_LOAD = 0.5  # offered GPU load per node pool, as a share of its capacity
MIN_WORK_SECONDS = 60
SCALE_BOUNDS = (0.002, 2.0)  # how far durations may be stretched to reach TARGET_LOAD
FOREVER_SHARE = 0.25  # at most this share of a pool is held by never-ending workloads
RESERVE_AFTER_SECONDS = 4 * 3600  # a workload pending this long is no longer overtaken


class Timeline:
    """The run intervals of every drawn workload, and what follows from them.

    ``iv_w``, ``iv_start``, ``iv_end``: all run intervals ``[start, end)`` (end ``NEVER``:
    it runs on forever), ordered by workload, then start; workload i's are
    ``iv_off[i]:iv_off[i + 1]`` and ``iv_cum`` holds its running seconds before each.
    Per workload: ``work`` (running time it needs), ``guarantee`` (guaranteed runtime, s),
    ``end`` and ``deleted_at`` (epoch s, ``NEVER``: not ever). ``moves``: the project and
    node-pool moves (``Moves``). ``pool_steps``: per node pool, keyed by ``(cluster id, pool
    name)`` (a name alone is ambiguous), the allocation (quarter GPUs) after each change
    time, moves included (a move at midnight ``M`` changes the pools at ``M + 1 s``).
    """

    def __init__(self, draws: Draws) -> None:
        n = draws.config.workloads
        ready = draws.created + draws.ready_delay
        work = np.full(n, NEVER, dtype=np.int64)
        guarantee = np.zeros(n, dtype=np.int64)
        iv_w: list[int] = []
        iv_s: list[int] = []
        iv_e: list[int] = []
        end = np.full(n, NEVER, dtype=np.int64)
        catalogue = draws.catalogue
        pools = [np.flatnonzero(draws.pool == p) for p in range(len(catalogue.nodepools))]
        for p, members in enumerate(pools):
            cap = int(catalogue.pool_capacity_q[p])
            # Never-ending workloads hold at most FOREVER_SHARE of the pool (earliest kept).
            fm = members[draws.forever[members]]
            held = np.cumsum(draws.size_q[fm])
            forever = np.zeros(n, dtype=bool)
            forever[fm[held <= FOREVER_SHARE * cap]] = True
            scale = _duration_scale(draws, members, ready, forever, cap)
            finite = members[~forever[members]]
            work[finite] = np.maximum(
                MIN_WORK_SECONDS,
                np.rint(scale * draws.duration[finite] * draws.work_share[finite]),
            ).astype(np.int64)
            guarantee[members] = np.rint(scale * draws.guarantee_raw[members]).astype(np.int64)
        columns = (
            ready.tolist(),
            draws.size_q.tolist(),
            draws.level.tolist(),
            work.tolist(),
            guarantee.tolist(),
        )
        for p, members in enumerate(pools):
            order = members[np.lexsort((members, ready[members]))]
            cap = int(catalogue.pool_capacity_q[p])
            simulate_pool(cap, order.tolist(), *columns, iv_w, iv_s, iv_e, end)
        w = np.asarray(iv_w, dtype=np.int64)
        s = np.asarray(iv_s, dtype=np.int64)
        e = np.asarray(iv_e, dtype=np.int64)
        order = np.lexsort((s, w))
        self.iv_w, self.iv_start, self.iv_end = w[order], s[order], e[order]
        self.iv_off = np.searchsorted(self.iv_w, np.arange(n + 1)).astype(np.int64)
        closed = np.where(self.iv_end < NEVER, self.iv_end - self.iv_start, 0)
        csum = np.concatenate([[0], np.cumsum(closed)])
        self.iv_cum = csum[:-1] - csum[self.iv_off[self.iv_w]]  # running before interval
        self.work, self.guarantee, self.end = work, guarantee, end
        self.deleted_at = np.where(
            draws.delete & (end < NEVER), end + draws.delete_delay, NEVER
        ).astype(np.int64)
        base = _allocation_steps(
            draws, self.iv_w, self.iv_start, self.iv_end, draws.pool[self.iv_w]
        )
        self.moves = Moves(draws, self.iv_off, self.iv_start, end, work == NEVER, base)
        split = self.moves.split(self.iv_w, self.iv_start, self.iv_end, offset=1)
        self.pool_steps: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {
            (pool.cluster_id, pool.name): steps
            for pool, steps in zip(
                catalogue.nodepools, _allocation_steps(draws, *split), strict=True
            )
        }

    def intervals(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Workload i's run intervals: starts, ends and running seconds before each."""
        a, b = self.iv_off[i], self.iv_off[i + 1]
        return self.iv_start[a:b], self.iv_end[a:b], self.iv_cum[a:b]


def _allocation_steps(
    draws: Draws, w: np.ndarray, start: np.ndarray, end: np.ndarray, pool: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per pool index: allocation (quarter GPUs) after each change time, of the run
    intervals ``[start, end)`` of workloads ``w`` in pools ``pool``."""
    out = []
    size = draws.size_q[w]
    for p in range(len(draws.catalogue.nodepools)):
        sel = (pool == p) & (size > 0)
        closed = sel & (end < NEVER)
        t = np.concatenate([start[sel], end[closed]])
        d = np.concatenate([size[sel], -size[closed]])
        order = np.argsort(t, kind="stable")
        t, alloc = t[order], np.cumsum(d[order])
        last = np.append(t[1:] != t[:-1], True) if len(t) else np.zeros(0, dtype=bool)
        out.append((t[last], alloc[last]))
    return out


def _duration_scale(
    draws: Draws, members: np.ndarray, ready: np.ndarray, forever: np.ndarray, cap: int
) -> float:
    """Factor on the pool's durations that makes its offered load TARGET_LOAD.

    Offered load: quarter-GPU-seconds asked for before submissions end, i.e. per
    workload size x min(scale x duration, time left); never-ending ones ask for all
    the time left. Piecewise linear in the scale, solved by bisection on sorted
    saturation points.
    """
    size = draws.size_q[members].astype(np.float64)
    left = (draws.horizon - ready[members]).astype(np.float64)
    endless = forever[members]
    fixed = float(np.dot(size[endless], left[endless]))
    dur = (draws.duration[members] * draws.work_share[members])[~endless]
    size, left = size[~endless], left[~endless]
    order = np.argsort(left / dur)
    saturate = (left / dur)[order]  # scale above which a workload asks for all time left
    full = np.concatenate([[0.0], np.cumsum((size * left)[order])])
    rate = np.concatenate([[0.0], np.cumsum((size * dur)[order])])
    target = TARGET_LOAD * cap * (draws.horizon - draws.start)

    def load(scale: float) -> float:
        k = int(np.searchsorted(saturate, scale, side="right"))
        return fixed + float(full[k]) + scale * float(rate[-1] - rate[k])

    lo, hi = SCALE_BOUNDS
    if load(hi) <= target:
        return hi
    if load(lo) >= target:
        return lo
    for _ in range(60):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if load(mid) < target else (lo, mid)
    return (lo * hi) ** 0.5


def simulate_pool(
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
    queues: list[dict[int, list[int]]] = [{} for _ in range(N_LEVELS)]  # size -> heap of w
    victims: list[dict[int, int]] = [{} for _ in range(N_LEVELS)]  # running, by start order
    victim_q = [0] * N_LEVELS

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
        for lv in range(N_LEVELS - 1, -1, -1):
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
