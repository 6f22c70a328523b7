"""Workloads that move to another project or node pool at a UTC midnight.

Drawn once the scheduler has run (``Moves``), from a Philox stream of their own, so the
other draws do not shift. A workload moves at most once, at the first UTC midnight ``M``
after its first start (``M`` strictly after it), and only if it is still alive after ``M``:

* Project moves: of the workloads alive after their ``M``, about ``PROJECT_MOVE_SHARE``
  (those with the lowest draws; at least one when any qualifies) move to another project
  of the same cluster. Their department follows the new project.
* Node-pool moves: of the never-ending GPU workloads of a non-preemptible priority class
  (inference, build) in the source pool of a ``Catalogue.pool_moves`` pair (prod-east's
  ``a100``), about ``POOL_MOVE_SHARE`` (at least one) move to the target pool (prod-east's
  ``h100-80gb``: GPUs of the same memory, so GPU-memory requests stay the same). A
  catalogue without such pairs has project moves only. They are
  tried in the order of their draws until that many have moved; one moves only if the
  target has room for it at every instant after ``M`` (the target's allocation steps plus
  the moves accepted before stay within its capacity), else it stays. Both pools keep
  their schedules (the GPUs freed in the source stay free), so no pool ever exceeds its
  capacity. A workload's project and pool moves both happen at its ``M``.

Semantics: a move at ``M`` applies to instants strictly after ``M``. The model resolves
instants to whole seconds (floor), so what the API shows at ``at`` is the new state when
``floor(at) > M``, i.e. from ``M + 1 s`` on: a listing at exactly ``M`` still shows the old
project and pool; step functions (a pool's allocation) change at ``M + 1 s``
(``split(..., offset=1)``). Integrals (ground truth) split the run intervals at ``M``
itself: ``[s, M)`` counts in the old state, ``[M, e)`` in the new one (``pieces``), so
daily sums over ``[M, M + 1 day)`` see one state only. Metric series are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from workloads_etl.simulator import rng
from workloads_etl.simulator.catalogue import (
    DAY,
    EPOCH,
    NEVER,
    PREEMPTIBLE,
)
from workloads_etl.simulator.draws import Draws

PROJECT_MOVE_SHARE = 0.04  # of the workloads alive after their first midnight
POOL_MOVE_SHARE = 1 / 3  # of the eligible never-ending workloads of a source pool

_P_MOVES = 7  # Philox purpose of the move draws (the build draws use 1..6)


@dataclass(frozen=True)
class Move:
    """One workload's move at the UTC midnight ``at``: the new state holds after ``at``.

    Project and department ids, node pool names; a field pair is equal when that part
    does not change (a project move keeps the pool, a pool move may keep the project).
    """

    index: int
    workload_id: str
    at: datetime
    cluster_id: str
    project_from: str
    project_to: str
    department_from: str
    department_to: str
    nodepool_from: str
    nodepool_to: str


def _lowest(u: np.ndarray, mask: np.ndarray, share: float) -> np.ndarray:
    """Indexes of the ``share`` of ``mask`` with the lowest ``u`` (at least one if any)."""
    idx = np.flatnonzero(mask)
    if not len(idx):
        return idx
    take = max(1, round(share * len(idx)))
    return idx[np.argsort(u[idx], kind="stable")[:take]]


def _peak_from(
    times: np.ndarray, alloc: np.ndarray, extra_t: list[int], extra_q: list[int], t0: int
) -> int:
    """Highest allocation at or after ``t0``: the steps plus the extra (from-time, size)."""
    points = np.concatenate([[t0], times[times > t0], [t for t in extra_t if t > t0]])
    k = np.searchsorted(times, points, side="right") - 1
    base = np.where(k >= 0, alloc[np.maximum(k, 0)] if len(alloc) else 0, 0)
    if extra_t:
        held = np.asarray(extra_t)[None, :] <= points[:, None]
        base = base + held.astype(np.int64) @ np.asarray(extra_q, dtype=np.int64)
    return int(base.max())


class Moves:
    """Per workload (row == index): ``at`` (epoch s of the midnight it moves at, ``NEVER``:
    it does not move), ``proj`` and ``pool`` after ``at`` (the drawn ones before it, and
    after it when that part does not change).

    ``iv_off``/``iv_start``: the timeline's run intervals (see ``Timeline``); ``end``: when
    each workload ends; ``forever``: it never ends; ``steps``: per pool index, the
    allocation (quarter GPUs) after each change time, without moves.
    """

    def __init__(
        self,
        draws: Draws,
        iv_off: np.ndarray,
        iv_start: np.ndarray,
        end: np.ndarray,
        forever: np.ndarray,
        steps: list[tuple[np.ndarray, np.ndarray]],
    ) -> None:
        self.draws = draws
        n = draws.config.workloads
        g = rng.stream(draws.config.seed, _P_MOVES)
        u_proj, u_pick, u_pool = g.random(n), g.random(n), g.random(n)
        has_run = iv_off[1:] > iv_off[:-1]
        first = np.zeros(n, dtype=np.int64)
        first[has_run] = iv_start[iv_off[:-1][has_run]]
        midnight = np.where(has_run, (first // DAY + 1) * DAY, NEVER)
        self.at = np.full(n, NEVER, dtype=np.int64)
        self.proj = draws.proj.copy()
        self.pool = draws.pool.copy()

        alive = has_run & (end > midnight)
        projects = np.arange(len(draws.proj_names))
        for i in _lowest(u_proj, alive, PROJECT_MOVE_SHARE).tolist():
            p = int(draws.proj[i])
            others = np.flatnonzero((draws.proj_cluster == draws.proj_cluster[p]) & (projects != p))
            if len(others):
                self.proj[i] = others[int(u_pick[i] * len(others))]
                self.at[i] = midnight[i]

        steady = ~np.asarray(PREEMPTIBLE)[draws.level]
        catalogue = draws.catalogue
        for src, dst in catalogue.pool_moves:
            cap = int(catalogue.pool_capacity_q[dst])
            eligible = (
                has_run
                & forever
                & steady
                & (draws.pool == src)
                & (draws.size_q > 0)
                & (draws.size_q <= cap // 2)  # no workload asks for more than half its pool
            )
            quota = len(_lowest(u_pool, eligible, POOL_MOVE_SHARE))
            times, alloc = steps[dst]
            added_t: list[int] = []
            added_q: list[int] = []
            for i in _lowest(u_pool, eligible, 1.0).tolist():  # all, in order of their draws
                t0, q = int(midnight[i]) + 1, int(draws.size_q[i])
                if (
                    len(added_t) < quota
                    and _peak_from(times, alloc, added_t, added_q, t0) + q <= cap
                ):
                    self.pool[i] = dst
                    self.at[i] = midnight[i]
                    added_t.append(t0)
                    added_q.append(q)

    def moved(self, at: int, n: int | None = None) -> np.ndarray:
        """Whether each of the first ``n`` workloads shows its new state at epoch second
        ``at`` (``at > M``)."""
        return np.asarray(at > self.at[:n])

    def split(
        self, iv_w: np.ndarray, iv_s: np.ndarray, iv_e: np.ndarray, offset: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Run intervals split at each workload's ``M + offset`` where its pool changes:
        (workload, start, end, pool index), the old pool before the cut, the new after."""
        cut = self.at[iv_w] + offset
        before, after = self.draws.pool[iv_w], self.pool[iv_w]
        straddle = (iv_s < cut) & (cut < iv_e) & (before != after)  # only pools matter
        late = iv_s >= cut
        return (
            np.concatenate([iv_w, iv_w[straddle]]),
            np.concatenate([iv_s, cut[straddle]]),
            np.concatenate([np.where(straddle, cut, iv_e), iv_e[straddle]]),
            np.concatenate([np.where(late, after, before), after[straddle]]),
        )

    def pieces(
        self, i: int, starts: np.ndarray, ends: np.ndarray
    ) -> list[tuple[int, int, int, int]]:
        """Workload i's run intervals split at ``M``: (start, end, project, pool index)."""
        d = self.draws
        m = int(self.at[i])
        old = (int(d.proj[i]), int(d.pool[i]))
        new = (int(self.proj[i]), int(self.pool[i]))
        out: list[tuple[int, int, int, int]] = []
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            if e <= m:
                out.append((s, e, *old))
            elif s >= m:
                out.append((s, e, *new))
            else:
                out += [(s, m, *old), (m, e, *new)]
        return out

    def listing(self) -> list[Move]:
        """Every move of the timeline, by workload index."""
        d = self.draws
        pools = d.catalogue.nodepools
        out = []
        for i in np.flatnonzero(self.at < NEVER).tolist():
            p0, p1 = int(d.proj[i]), int(self.proj[i])
            out.append(
                Move(
                    index=i,
                    workload_id=d.ids[i],
                    at=EPOCH + timedelta(seconds=int(self.at[i])),
                    cluster_id=pools[int(d.pool[i])].cluster_id,
                    project_from=d.proj_ids[p0],
                    project_to=d.proj_ids[p1],
                    department_from=d.dept_ids[int(d.proj_dept[p0])],
                    department_to=d.dept_ids[int(d.proj_dept[p1])],
                    nodepool_from=pools[int(d.pool[i])].name,
                    nodepool_to=pools[int(self.pool[i])].name,
                )
            )
        return out
