"""Rendering the scheduled workloads as the API shows them at an instant.

The snapshot table (``SNAPSHOT_COLUMNS``: ours, then the spec's filterBy/sortBy fields)
of every workload visible at an instant, the time-dependent ``State`` behind it, and one
``Workload`` object with its requested and allocated resources and its condition. Static
columns (names, ...) are built once over all workloads; the time-dependent ones (phase,
running and pending totals, idleness, deletion, ...) are derived per instant from the run
intervals of the ``Timeline``. Project, department and node pool are built twice, before
and after a workload's move (``moves``), and picked per instant: the new ones show when
``at > M``. After a node-pool move ``requestedNodePools`` lists the new pool first, then
the pools asked for before (without it); ``currentNodePools`` is the pool it runs in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workloads_etl.simulator.catalogue import (
    APPS,
    CATEGORIES,
    COMPLETED,
    EPOCH,
    FAILED,
    IMAGES,
    K8S_PHASES,
    MODELS,
    NEVER,
    PENDING,
    PHASES,
    PREEMPTIBLE,
    PRIORITIES,
    PRIORITY_CLASSES,
    RUNNING,
    STOPPED,
    TENANT_ID,
    TYPES,
)
from workloads_etl.simulator.draws import Draws
from workloads_etl.simulator.metrics import (
    T_DISTRIBUTED,
    T_INFERENCE,
    T_WORKSPACE,
    gpu_utilization,
)
from workloads_etl.simulator.scheduler import Timeline

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


def _iso(seconds: int) -> str:
    return (EPOCH + timedelta(seconds=int(seconds))).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _ts_column(seconds: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    if valid is None:
        micros = pa.array(seconds.astype(np.int64) * 1_000_000)
    else:
        micros = pa.array(np.where(valid, seconds, 0).astype(np.int64) * 1_000_000, mask=~valid)
    return micros.cast(pa.timestamp("us", tz="UTC"))


@dataclass(frozen=True)
class State:
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
    moved: np.ndarray  # bool: shows its project / node pool after its move


class Renderer:
    """Snapshot tables and workload objects of the drawn, scheduled workloads."""

    def __init__(self, draws: Draws, timeline: Timeline) -> None:
        self.draws = draws
        self.timeline = timeline
        self.catalogue = draws.catalogue
        self._pool_names = [p.name for p in self.catalogue.nodepools]
        self._static = self._static_columns()
        self._after = self._moving_columns(timeline.moves.proj, timeline.moves.pool)
        self._any_moves = bool(np.any(timeline.moves.at < NEVER))

    def _static_columns(self) -> dict[str, pa.Array]:
        """The static columns of the snapshot table, over all workloads."""
        d = self.draws
        proj = d.proj  # the AI application stays the one of the project it was created in
        cluster = self.catalogue.pool_cluster[d.pool]
        app = d.app
        app_code = np.where(app >= 0, proj * 3 + np.maximum(app, 0), 0)
        has_app = pa.array(app < 0)
        return {
            **self._moving_columns(d.proj, d.pool),
            "id": pa.array(d.ids, type=pa.string()),
            "type": _vocab(TYPES, d.type),
            "name": pa.array(d.names, type=pa.string()),
            "clusterId": _vocab([c.id for c in self.catalogue.clusters], cluster),
            "createdAt": _ts_column(d.created),
            "submittedBy": _vocab(d.users, d.user),
            "distributedFramework": _null_where(
                _vocab(["", "PyTorch", "MPI"], d.framework), pa.array(d.framework == 0)
            ),
            "category": _vocab(CATEGORIES, d.type),
            "priority": pa.array(np.asarray(PRIORITIES)[d.level], type=pa.int64()),
            "priorityClassName": _vocab(PRIORITY_CLASSES, d.level),
            "aiApplicationId": _null_where(_vocab(d.app_ids, app_code), has_app),
            "aiApplicationName": _null_where(
                _vocab(APPS, (proj + np.maximum(app, 0)) % len(APPS)), has_app
            ),
        }

    def _moving_columns(self, proj: np.ndarray, pool: np.ndarray) -> dict[str, pa.Array]:
        """The columns a move changes, for the given project and node pool per workload."""
        d = self.draws
        dept = d.proj_dept[proj]
        return {
            "projectId": _vocab(d.proj_ids, proj),
            "projectName": _vocab(d.proj_names, proj),
            "departmentId": _vocab(d.dept_ids, dept),
            "departmentName": _vocab(d.dept_names, dept),
            "nodepool": _vocab(self._pool_names, pool),
        }

    def snapshot(self, at: int) -> tuple[pa.Table, State]:
        """The snapshot table at epoch second ``at`` and the state it was rendered from."""
        d, tl = self.draws, self.timeline
        n = int(np.searchsorted(d.created, at, side="right"))  # visible: a prefix
        off = tl.iv_off[: n + 1]
        m = int(off[-1])  # their run intervals: a prefix too
        begun = np.concatenate([[0], np.cumsum(tl.iv_start[:m] <= at)])
        count = begun[off[1:]] - begun[off[:-1]]  # intervals begun by `at`, per workload
        started = count > 0
        k = np.where(started, off[:-1] + count - 1, 0)  # the latest of them

        def latest(values: np.ndarray) -> np.ndarray:
            return np.where(started, values[k], 0) if m else np.zeros(n, dtype=np.int64)

        last_start, last_end = latest(tl.iv_start), latest(tl.iv_end)
        running = started & (at < last_end)
        run_total = latest(tl.iv_cum) + np.where(started, np.minimum(at, last_end) - last_start, 0)
        created, end = d.created[:n], tl.end[:n]
        terminal = at >= end
        pend_total = np.minimum(at, end) - created - run_total
        phase = np.where(running, RUNNING, PENDING)
        phase = np.where(terminal, d.outcome[:n], phase).astype(np.int8)
        phase_updated = np.select(
            [terminal, running, started], [end, last_start, last_end], default=created
        )
        idle = np.zeros(n, dtype=bool)
        on = np.flatnonzero(running & (d.size_q[:n] > 0))
        if len(on):
            util = gpu_utilization(
                d.keys[on],
                d.util_base[on],
                d.util_amp[on],
                d.idle_prob[on],
                d.idle_block[on],
                d.zombie[on],
                at // 60,
            )
            idle[on] = util == 0
        guaranteed = running & (tl.guarantee[:n] > 0)
        guaranteed_end = np.where(guaranteed, last_start + tl.guarantee[:n], -1)
        deleted = tl.deleted_at[:n] <= at
        moved = tl.moves.moved(at, n)
        gpus = d.size_q[:n] / 4
        idle_gpus = np.where(idle, gpus, 0.0)
        state = State(
            phase=phase,
            phase_updated=phase_updated,
            running=running,
            started=started,
            run_total=run_total,
            pend_total=pend_total,
            idle=idle,
            guaranteed_end=guaranteed_end,
            deleted=deleted,
            moved=moved,
        )
        varying = {
            "index": pa.array(np.arange(n, dtype=np.int64)),
            "deleted": pa.array(deleted),
            "deletedAt": _ts_column(tl.deleted_at[:n], deleted),
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
        if self._any_moves and moved.any():
            mask = pa.array(moved)
            for name, after in self._after.items():
                varying[name] = pc.if_else(mask, after.slice(0, n), self._static[name].slice(0, n))
        columns = {
            name: varying[name] if name in varying else self._static[name].slice(0, n)
            for name in SNAPSHOT_COLUMNS
        }
        return pa.table(columns), state

    def _resources(self, i: int, pods: int) -> dict[str, Any]:
        """``WorkloadRequestResources`` for ``pods`` pods of workload i."""
        d = self.draws
        q = int(d.q_pod[i]) * pods
        unit = "Gi" if d.mem_unit[i] == 0 else "M"
        mem = int(d.mem_val[i]) * pods
        cpu = float(d.cpu_pod[i]) * pods
        gpu_mem = d.gpu_mem_pod_gib(i) * pods
        resources: dict[str, Any] = {"gpuRequestType": "portion"} if q > 0 else {}
        return {
            **resources,  # optional, and its enum has no null: absent for CPU-only requests
            "gpu": {"request": q / 4, "limit": q / 4},
            "gpuMemory": {"request": f"{gpu_mem}Gi", "limit": f"{gpu_mem}Gi"} if q > 0 else None,
            "cpu": {"request": cpu, "limit": cpu * float(d.cpu_limit_factor[i])},
            "cpuMemory": {
                "request": f"{mem}{unit}",
                "limit": f"{mem * int(d.mem_limit_factor[i])}{unit}",
            },
        }

    def workload_json(self, i: int, st: State) -> dict[str, Any]:
        """One ``Workload`` object: workload i in the state ``st``."""
        d, tl = self.draws, self.timeline
        moved = bool(st.moved[i])
        typ, level = int(d.type[i]), int(d.level[i])
        pool = int(tl.moves.pool[i] if moved else d.pool[i])
        proj = int(tl.moves.proj[i] if moved else d.proj[i])
        dept = int(d.proj_dept[proj])
        phase = int(st.phase[i])
        running = bool(st.running[i])
        phase_updated = _iso(st.phase_updated[i])
        deleted = bool(st.deleted[i])
        terminal = phase in (COMPLETED, FAILED, STOPPED)
        pods = int(d.pods[i])
        q = int(d.size_q[i])
        requested = [int(d.pool[i])] + ([int(d.second_pool[i])] if d.second_pool[i] >= 0 else [])
        pool_names = [self._pool_names[p] for p in [pool, *(p for p in requested if p != pool)]]
        cluster = self.catalogue.clusters[int(self.catalogue.pool_cluster[pool])]
        updated = max(int(st.phase_updated[i]), int(tl.deleted_at[i]) if deleted else 0)
        cli = bool(d.source_cli[i])
        doc: dict[str, Any] = {
            "tenantId": TENANT_ID,
            "id": d.ids[i],
            "name": d.names[i],
            "type": TYPES[typ],
            "category": CATEGORIES[typ],
            "source": "CLI" if cli else "Control-plane",
            "priority": PRIORITIES[level],
            "priorityClassName": PRIORITY_CLASSES[level],
            "preemptible": PREEMPTIBLE[level],
            "clusterId": cluster.id,
            "projectId": d.proj_ids[proj],
            "projectName": d.proj_names[proj],
            "departmentId": d.dept_ids[dept],
            "departmentName": d.dept_names[dept],
            "namespace": f"runai-{d.proj_names[proj]}",
            "submittedBy": d.users[int(d.user[i])],
            "createdAt": _iso(d.created[i]),
            "updatedAt": _iso(updated),
            "deletedAt": _iso(tl.deleted_at[i]) if deleted else None,
            "phase": PHASES[phase],
            "phaseUpdatedAt": phase_updated,
            "k8sPhase": K8S_PHASES[phase],
            "k8sPhaseUpdatedAt": phase_updated,
            "conditions": [self._condition(phase, bool(st.started[i]), phase_updated)],
            "runningPods": pods if running else 0,
            "requestedPods": _requested_pods(typ, pods),
            "workloadRequestedResources": self._resources(i, pods),
            "podsRequestedResources": self._resources(i, 1),
            "allocatedResources": self._allocated(i, running, bool(st.started[i])),
            "requestedNodePools": pool_names,
            "currentNodePools": [self._pool_names[pool]] if running else [],
            "completedAt": phase_updated if terminal else None,
            "images": [IMAGES[typ]],
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
        if d.framework[i]:
            doc["distributedFramework"] = ("PyTorch", "MPI")[int(d.framework[i]) - 1]
        if d.app[i] >= 0:  # the application stays the one of the project it was created in
            app, home = int(d.app[i]), int(d.proj[i])
            doc["aiApplicationId"] = d.app_ids[home * 3 + app]
            doc["aiApplicationName"] = APPS[(home + app) % len(APPS)]
        if typ in (T_WORKSPACE, T_INFERENCE):
            doc["urls"] = [f"https://{cluster.name}.example.com/{doc['namespace']}/{doc['name']}"]
        else:
            doc["command"] = "torchrun" if typ == T_DISTRIBUTED else "python"
            doc["arguments"] = (
                f"train.py --model {MODELS[d.model[i]]} --epochs {d.command_epochs[i]}"
            )
        return doc

    def _allocated(self, i: int, running: bool, started: bool) -> dict[str, Any] | None:
        if not started:
            return None
        if not running:
            return {"gpu": 0.0, "gpuMemory": "0", "cpu": 0.0, "cpuMemory": "0"}
        req = self._resources(i, int(self.draws.pods[i]))
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


def _vocab(values: list[str] | tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.string()).take(pa.array(codes, type=pa.int64()))


def _null_where(values: pa.Array, mask: pa.Array) -> pa.Array:
    return pc.if_else(mask, pa.scalar(None, type=values.type), values)
