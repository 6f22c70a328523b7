"""The data contract: one explicit Arrow schema per dataset of the lake and the warehouse.

Every Parquet partition and every ``raw.<dataset>`` table in DuckDB has exactly the schema
declared here, in this column order; :mod:`workloads_etl.lake.datasets` says which dataset has
which schema. Bump ``SCHEMA_VERSION`` whenever a schema changes, and say how data of the
previous version is read (:func:`workloads_etl.lake.parquet.conform`) and how a warehouse
built at it migrates (:data:`workloads_etl.warehouse.loader.MIGRATIONS`).

Versions
- 1: the first contract.
- 2: ``workload_metrics.fetched_at`` added (when the control plane answered, as for the
  other datasets; null in data of version 1); ``workload_metrics.step_seconds`` widened from
  int32 to int64 like every other integer of the contract.

Conventions
- Column names are the snake_case of the Run:ai field names (``phaseUpdatedAt`` ->
  ``phase_updated_at``); nested objects are flattened with a prefix. A workload column is
  declared once (:class:`Column`), with the API field it comes from and how that is parsed;
  the normaliser derives its mapping from these declarations.
- Timestamps are ``timestamp[us, tz=UTC]``; Kubernetes quantities are parsed to bytes
  (``*_bytes``, float64 since quantities may be fractional) or cores (``*_cores``).
- Lists of strings stay Arrow lists; structured lists/maps the reports do not need are
  kept as JSON text (``*_json``). Fields the contract does not know land in
  ``extra_fields_json`` so nothing is lost.
- Each dataset is partitioned Hive-style by a date column (``partition_key``); quarantine
  first by source dataset, then by date, so each source partition owns its quarantine rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from workloads_etl.lake import bounds
from workloads_etl.runai import values

SCHEMA_VERSION = 2

TS = values.TS


@dataclass(frozen=True)
class Column:
    """One column of a workload row and where it comes from in the API's ``Workload``.

    ``source`` is the dotted path of the field in the record (``allocatedResources.gpu``);
    None for columns the pipeline sets. ``parse`` says how the API value becomes the column:
    ``string``, ``integer``, ``number``, ``boolean``, ``date-time`` (ISO text parsed to a
    UTC timestamp), ``quantity`` (a Kubernetes quantity parsed to bytes or cores),
    ``strings`` (an array of strings), ``json`` (any value, kept as canonical JSON text) or
    ``id`` (the workload's uuid, without which a record cannot be a row). ``enum`` names the
    spec schema whose enum the value belongs to (values outside it are kept and counted).
    ``kind`` names the physical quantity (:mod:`workloads_etl.lake.bounds`) whose bounds the
    value must respect.
    """

    name: str
    type: pa.DataType
    source: str | None = None
    parse: str = ""
    nullable: bool = True
    enum: str | None = None
    kind: str | None = None

    @property
    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=self.nullable)


def _str(name: str, source: str, enum: str | None = None) -> Column:
    return Column(name, pa.string(), source, "string", enum=enum)


def _int(name: str, source: str, kind: str | None = None) -> Column:
    return Column(name, pa.int64(), source, "integer", kind=kind)


def _num(name: str, source: str, kind: str) -> Column:
    return Column(name, pa.float64(), source, "number", kind=kind)


def _qty(name: str, source: str) -> Column:
    """A Kubernetes quantity of memory, parsed to bytes."""
    return Column(name, pa.float64(), source, "quantity", kind=bounds.BYTES)


def _ts(name: str, source: str) -> Column:
    return Column(name, TS, source, "date-time")


def _json(name: str, source: str) -> Column:
    return Column(name, pa.string(), source, "json")


def _resources(prefix: str, obj: str) -> list[Column]:
    """Flattened ``WorkloadRequestResources`` (requested by the workload or by its pods)."""
    return [
        _str(f"{prefix}_gpu_request_type", f"{obj}.gpuRequestType", "GpuRequestType"),
        _num(f"{prefix}_gpu_request", f"{obj}.gpu.request", bounds.GPUS),
        _num(f"{prefix}_gpu_limit", f"{obj}.gpu.limit", bounds.GPUS),
        _qty(f"{prefix}_gpu_memory_request_bytes", f"{obj}.gpuMemory.request"),
        _qty(f"{prefix}_gpu_memory_limit_bytes", f"{obj}.gpuMemory.limit"),
        _num(f"{prefix}_cpu_request_cores", f"{obj}.cpu.request", bounds.CORES),
        _num(f"{prefix}_cpu_limit_cores", f"{obj}.cpu.limit", bounds.CORES),
        _qty(f"{prefix}_cpu_memory_request_bytes", f"{obj}.cpuMemory.request"),
        _qty(f"{prefix}_cpu_memory_limit_bytes", f"{obj}.cpuMemory.limit"),
        _json(f"{prefix}_extended_resources_json", f"{obj}.extendedResources"),
    ]


# One row per workload per snapshot, each column declared once with its API source. Shared
# by `workload_snapshots` and `deleted_workloads` (`GET /api/v1/workloads?deleted=true`).
WORKLOAD_COLUMNS: tuple[Column, ...] = (
    Column("snapshot_date", pa.date32(), nullable=False),  # partition: the run's logical day
    Column("snapshot_at", TS, nullable=False),  # when the list was fetched (server clock)
    Column("run_id", pa.string(), nullable=False),
    Column("workload_id", pa.string(), "id", "id", nullable=False),
    _str("name", "name"),
    _str("type", "type"),
    _str("category", "category"),
    _str("phase", "phase", "Phase"),
    _str("k8s_phase", "k8sPhase"),
    _str("phase_message", "phaseMessage"),
    _str("phase_reason", "phaseReason", "PhaseReason"),
    _str("source", "source", "Source"),
    _str("source_api", "sourceApi", "SourceApi"),
    _int("tenant_id", "tenantId"),
    _str("cluster_id", "clusterId"),
    _str("project_id", "projectId"),
    _str("project_name", "projectName"),
    _str("department_id", "departmentId"),
    _str("department_name", "departmentName"),
    _str("namespace", "namespace"),
    _str("submitted_by", "submittedBy"),
    _int("priority", "priority"),
    _str("priority_class_name", "priorityClassName"),
    Column("preemptible", pa.bool_(), "preemptible", "boolean"),
    _str("distributed_framework", "distributedFramework"),
    _int("running_pods", "runningPods", bounds.COUNT),
    _ts("created_at", "createdAt"),
    _ts("updated_at", "updatedAt"),
    _ts("phase_updated_at", "phaseUpdatedAt"),
    _ts("k8s_phase_updated_at", "k8sPhaseUpdatedAt"),
    _ts("completed_at", "completedAt"),
    _ts("deleted_at", "deletedAt"),
    _ts("guaranteed_runtime_ends_at", "guaranteedRuntimeEndsAt"),
    _int("idle_gpus", "idleGpus", bounds.GPUS),
    _num("idle_allocated_gpus", "idleAllocatedGpus", bounds.GPUS),
    _int("total_pending_time_seconds", "totalPendingTimeSeconds", bounds.SECONDS),
    _int("total_running_time_seconds", "totalRunningTimeSeconds", bounds.SECONDS),
    _str("ai_application_id", "aiApplicationId"),
    _str("ai_application_name", "aiApplicationName"),
    Column("requested_node_pools", pa.list_(pa.string()), "requestedNodePools", "strings"),
    Column("current_node_pools", pa.list_(pa.string()), "currentNodePools", "strings"),
    Column("images", pa.list_(pa.string()), "images", "strings"),
    _int("requested_pods_number", "requestedPods.number", bounds.COUNT),
    _int("requested_pods_min", "requestedPods.min", bounds.COUNT),
    _int("requested_pods_max", "requestedPods.max", bounds.COUNT),
    _int("requested_pods_parallelism", "requestedPods.parallelism", bounds.COUNT),
    _int("requested_pods_completions", "requestedPods.completions", bounds.COUNT),
    *_resources("requested", "workloadRequestedResources"),
    *_resources("pods_requested", "podsRequestedResources"),
    _num("allocated_gpu", "allocatedResources.gpu", bounds.GPUS),
    _qty("allocated_gpu_memory_bytes", "allocatedResources.gpuMemory"),
    _num("allocated_cpu_cores", "allocatedResources.cpu", bounds.CORES),
    _qty("allocated_cpu_memory_bytes", "allocatedResources.cpuMemory"),
    _json("allocated_extended_resources_json", "allocatedResources.extendedResources"),
    _json("conditions_json", "conditions"),
    _json("actions_support_json", "actionsSupport"),
    _json("topology_json", "topology"),
    _json("additional_fields_json", "additionalFields"),
    _json("environment_variables_json", "environmentVariables"),
    _json("datasources_json", "datasources"),
    _json("environments_json", "environments"),
    _json("external_connections_json", "externalConnections"),
    _json("urls_json", "urls"),
    _str("command", "command"),
    _str("arguments", "arguments"),
    Column("extra_fields_json", pa.string()),  # fields the contract does not know, as JSON
)

WORKLOADS = pa.schema([c.field for c in WORKLOAD_COLUMNS])
WORKLOADS_KEY = ("snapshot_date", "workload_id")

# Long format: one row per (workload, metric type, labels, timestamp).
WORKLOAD_METRICS = pa.schema(
    [
        pa.field("usage_date", pa.date32(), nullable=False),  # partition: UTC day of ts
        pa.field("workload_id", pa.string(), nullable=False),
        pa.field("metric_type", pa.string(), nullable=False),
        pa.field("labels_json", pa.string()),  # canonical JSON (sorted keys) or null
        pa.field("ts", TS, nullable=False),  # the sample stands for [ts, ts + step)
        pa.field("value", pa.float64()),
        pa.field("step_seconds", pa.int64(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        # When the control plane answered (its Date header); null in data of version 1.
        pa.field("fetched_at", TS),
    ]
)

WORKLOAD_METRICS_KEY = ("usage_date", "workload_id", "metric_type", "labels_json", "ts")

# One row per telemetry value (GET /api/v1/workloads/telemetry), group keys flattened.
TELEMETRY = pa.schema(
    [
        pa.field("snapshot_date", pa.date32(), nullable=False),  # partition: run's logical day
        pa.field("fetched_at", TS, nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("telemetry_type", pa.string(), nullable=False),
        pa.field("group_by", pa.string()),  # the groupBy requested, comma-joined, or null
        pa.field("timestamp", TS),  # TelemetryResponse.timestamp
        pa.field("value", pa.float64()),
        pa.field("group1_key", pa.string()),
        pa.field("group1_value", pa.string()),
        pa.field("group1_name", pa.string()),
        pa.field("group2_key", pa.string()),
        pa.field("group2_value", pa.string()),
        pa.field("group2_name", pa.string()),
    ]
)

TELEMETRY_KEY = (
    "snapshot_date",
    "telemetry_type",
    "group_by",
    "group1_value",
    "group2_value",
    "timestamp",
)

# Records that break the contract: kept with the reason, never dropped silently.
QUARANTINE = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),  # partition: the source dataset
        pa.field("quarantine_date", pa.date32(), nullable=False),  # partition: the source day
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw_record", pa.string(), nullable=False),  # the offending JSON, as received
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("quarantined_at", TS, nullable=False),
    ]
)
