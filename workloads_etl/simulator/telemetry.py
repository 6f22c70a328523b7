"""Telemetry of the simulated control plane: aggregating a snapshot into ``values``.

* Telemetry's ``CurrentNodepools`` group and ``nodepoolName`` filter use the node pool a
  workload currently runs in, as its ``currentNodePools`` says. Workloads that are not
  running (pending, finished) run in no pool: grouped by ``CurrentNodepools`` they form
  one group with value ``""`` (so groups still add up to the ungrouped total; for
  ``GPU_ALLOCATION`` that group is 0), and ``nodepoolName`` never selects them.
* A pool is named uniquely only within its cluster (both clusters have an ``a100``), and
  the API knows pools by name only: grouped by ``CurrentNodepools`` alone, same-named
  pools of the two clusters form one group, and ``nodepoolName`` selects both. Grouped by
  ``ClusterId,CurrentNodepools`` (or filtered by ``clusterId`` too) they stay apart.
* ``PENDING_TIME_DISTRIBUTION`` groups pending workloads into the buckets of
  :data:`PENDING_BUCKETS` (group key ``PendingTime``). The response allows at most two
  groups per value, so this type accepts at most one ``groupBy`` field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workloads_etl.simulator.responses import format_value

PENDING_BUCKETS: tuple[tuple[str, float], ...] = (
    ("0-5m", 300.0),
    ("5m-1h", 3600.0),
    ("1h-1d", 86400.0),
    (">1d", float("inf")),
)
CURRENT_NODEPOOL = "currentNodepool"  # derived per request: see current_nodepool()
GROUP_COLUMNS = {
    "ClusterId": "clusterId",
    "DepartmentId": "departmentId",
    "ProjectId": "projectId",
    "Type": "type",
    "CurrentNodepools": CURRENT_NODEPOOL,
    "Phase": "phase",
    "Category": "category",
}
GROUP_NAME_COLUMNS = {"DepartmentId": "departmentName", "ProjectId": "projectName"}


def current_nodepool(table: pa.Table) -> pa.Array:
    """The node pool each snapshot row currently runs in, ``""`` when it is not running.

    A running workload runs in exactly one pool (its ``currentNodePools`` has one entry);
    pending and finished ones run nowhere (``currentNodePools: []``).
    """
    running = pc.equal(table.column("phase"), "Running").combine_chunks()
    pool = table.column("nodepool").combine_chunks()
    return pc.if_else(running, pool, pa.scalar("", type=pool.type))


def telemetry_values(
    table: pa.Table,
    telemetry_type: str,
    group_by: list[str],
    at: datetime,
    cluster_names: dict[str, str],
) -> list[dict[str, Any]]:
    """Aggregate the filtered snapshot rows into TelemetryResponse ``values``.

    ``CurrentNodepools`` groups by the ``currentNodepool`` column the caller adds (see
    :func:`current_nodepool`).
    """
    keys: list[str] = []
    if telemetry_type == "PENDING_TIME_DISTRIBUTION":
        phase = table.column("phase").to_numpy(zero_copy_only=False)
        table = table.take(pa.array(np.flatnonzero(phase == "Pending"), type=pa.int64()))
        updated = table.column("phaseUpdatedAt").cast(pa.timestamp("us", tz="UTC"))
        now_us = np.datetime64(at.astimezone(UTC).replace(tzinfo=None), "us")
        stamps = updated.to_numpy().astype("datetime64[us]")
        age = np.nan_to_num((now_us - stamps) / np.timedelta64(1, "s"), nan=0.0)
        edges = np.array([limit for _, limit in PENDING_BUCKETS[:-1]])
        labels = np.array([name for name, _ in PENDING_BUCKETS], dtype=object)
        work = pa.table({"PendingTime": labels[np.searchsorted(edges, age, side="right")]})
        keys.append("PendingTime")
    else:
        work = pa.table({"_rows": np.arange(table.num_rows)})
    if telemetry_type == "GPU_ALLOCATION":
        gpus = table.column("allocatedGPU").cast(pa.float64()).fill_null(0.0)
        work = work.append_column("_w", gpus)
    else:
        work = work.append_column("_w", pa.array(np.ones(table.num_rows)))
    names: dict[str, str] = {}
    for g in group_by:
        work = work.append_column(g, pc.cast(table.column(GROUP_COLUMNS[g]), pa.string()))
        keys.append(g)
        if g in GROUP_NAME_COLUMNS:
            names[g] = f"_name_{g}"
            work = work.append_column(names[g], table.column(GROUP_NAME_COLUMNS[g]))
    if not keys:
        return [{"value": format_value(float(pc.sum(work.column("_w")).as_py() or 0.0))}]
    grouped = work.group_by([*keys, *names.values()]).aggregate([("_w", "sum")]).to_pylist()
    totals: dict[tuple[Any, ...], float] = {}
    labels_of: dict[tuple[str, Any], str] = {
        ("ClusterId", cid): name for cid, name in cluster_names.items()
    }
    for row in grouped:
        combo = tuple(row[k] for k in keys)
        totals[combo] = totals.get(combo, 0.0) + float(row["_w_sum"])
        for g, n in names.items():
            labels_of[(g, row[g])] = row[n]
    if "PendingTime" in keys:  # every bucket is reported, also when empty
        rests = {combo[1:] for combo in totals} if group_by else {()}
        for bucket, _ in PENDING_BUCKETS:
            for rest in rests:
                totals.setdefault((bucket, *rest), 0.0)
    order = {name: i for i, (name, _) in enumerate(PENDING_BUCKETS)}

    def sort_key(combo: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(
            (order.get(v, 0), "") if k == "PendingTime" else (0, "" if v is None else str(v))
            for k, v in zip(keys, combo, strict=True)
        )

    out: list[dict[str, Any]] = []
    for combo in sorted(totals, key=sort_key):
        groups = []
        for k, v in zip(keys, combo, strict=True):
            value = "" if v is None else str(v)
            name = labels_of.get((k, v))
            groups.append({"key": k, "value": value, "name": name if name else value})
        out.append({"value": format_value(totals[combo]), "groups": groups})
    return out
