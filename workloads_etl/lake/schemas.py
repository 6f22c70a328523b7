"""The data contract: one explicit Arrow schema per dataset of the lake and the warehouse.

Every Parquet partition and every ``raw.<dataset>`` table in DuckDB has exactly the schema
declared here, in this column order. Bump ``SCHEMA_VERSION`` whenever a schema changes.

Conventions
- Column names are the snake_case of the Run:ai field names (``phaseUpdatedAt`` ->
  ``phase_updated_at``); nested objects are flattened with a prefix.
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

SCHEMA_VERSION = 1

TS = pa.timestamp("us", tz="UTC")


def _resources(prefix: str) -> list[pa.Field]:
    """Flattened ``WorkloadRequestResources`` (requested by the workload or by its pods)."""
    return [
        pa.field(f"{prefix}_gpu_request_type", pa.string()),
        pa.field(f"{prefix}_gpu_request", pa.float64()),
        pa.field(f"{prefix}_gpu_limit", pa.float64()),
        pa.field(f"{prefix}_gpu_memory_request_bytes", pa.float64()),
        pa.field(f"{prefix}_gpu_memory_limit_bytes", pa.float64()),
        pa.field(f"{prefix}_cpu_request_cores", pa.float64()),
        pa.field(f"{prefix}_cpu_limit_cores", pa.float64()),
        pa.field(f"{prefix}_cpu_memory_request_bytes", pa.float64()),
        pa.field(f"{prefix}_cpu_memory_limit_bytes", pa.float64()),
        pa.field(f"{prefix}_extended_resources_json", pa.string()),
    ]


# One row per workload per snapshot. Shared by `workload_snapshots` and
# `deleted_workloads` (the latter from `GET /api/v1/workloads?deleted=true`).
WORKLOAD_FIELDS: list[pa.Field] = [
    pa.field("snapshot_date", pa.date32(), nullable=False),  # partition: the run's logical day
    pa.field("snapshot_at", TS, nullable=False),  # when the list was fetched
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("workload_id", pa.string(), nullable=False),  # Workload.id
    pa.field("name", pa.string()),
    pa.field("type", pa.string()),
    pa.field("category", pa.string()),
    pa.field("phase", pa.string()),
    pa.field("k8s_phase", pa.string()),
    pa.field("phase_message", pa.string()),
    pa.field("phase_reason", pa.string()),
    pa.field("source", pa.string()),
    pa.field("source_api", pa.string()),
    pa.field("tenant_id", pa.int64()),
    pa.field("cluster_id", pa.string()),
    pa.field("project_id", pa.string()),
    pa.field("project_name", pa.string()),
    pa.field("department_id", pa.string()),
    pa.field("department_name", pa.string()),
    pa.field("namespace", pa.string()),
    pa.field("submitted_by", pa.string()),
    pa.field("priority", pa.int64()),
    pa.field("priority_class_name", pa.string()),
    pa.field("preemptible", pa.bool_()),
    pa.field("distributed_framework", pa.string()),
    pa.field("running_pods", pa.int64()),
    pa.field("created_at", TS),
    pa.field("updated_at", TS),
    pa.field("phase_updated_at", TS),
    pa.field("k8s_phase_updated_at", TS),
    pa.field("completed_at", TS),
    pa.field("deleted_at", TS),
    pa.field("guaranteed_runtime_ends_at", TS),
    pa.field("idle_gpus", pa.int64()),
    pa.field("idle_allocated_gpus", pa.float64()),
    pa.field("total_pending_time_seconds", pa.int64()),
    pa.field("total_running_time_seconds", pa.int64()),
    pa.field("ai_application_id", pa.string()),
    pa.field("ai_application_name", pa.string()),
    pa.field("requested_node_pools", pa.list_(pa.string())),
    pa.field("current_node_pools", pa.list_(pa.string())),
    pa.field("images", pa.list_(pa.string())),
    pa.field("requested_pods_number", pa.int64()),
    pa.field("requested_pods_min", pa.int64()),
    pa.field("requested_pods_max", pa.int64()),
    pa.field("requested_pods_parallelism", pa.int64()),
    pa.field("requested_pods_completions", pa.int64()),
    *_resources("requested"),  # workloadRequestedResources
    *_resources("pods_requested"),  # podsRequestedResources
    pa.field("allocated_gpu", pa.float64()),  # allocatedResources.gpu
    pa.field("allocated_gpu_memory_bytes", pa.float64()),
    pa.field("allocated_cpu_cores", pa.float64()),
    pa.field("allocated_cpu_memory_bytes", pa.float64()),
    pa.field("allocated_extended_resources_json", pa.string()),
    pa.field("conditions_json", pa.string()),
    pa.field("actions_support_json", pa.string()),
    pa.field("topology_json", pa.string()),
    pa.field("additional_fields_json", pa.string()),
    pa.field("environment_variables_json", pa.string()),
    pa.field("datasources_json", pa.string()),
    pa.field("environments_json", pa.string()),
    pa.field("external_connections_json", pa.string()),
    pa.field("urls_json", pa.string()),
    pa.field("command", pa.string()),
    pa.field("arguments", pa.string()),
    pa.field("extra_fields_json", pa.string()),  # fields the contract does not know
]

WORKLOAD_SNAPSHOTS = pa.schema(WORKLOAD_FIELDS)
DELETED_WORKLOADS = pa.schema(WORKLOAD_FIELDS)

# Long format: one row per (workload, metric type, labels, timestamp).
WORKLOAD_METRICS = pa.schema(
    [
        pa.field("usage_date", pa.date32(), nullable=False),  # partition: UTC day of ts
        pa.field("workload_id", pa.string(), nullable=False),
        pa.field("metric_type", pa.string(), nullable=False),
        pa.field("labels_json", pa.string()),  # canonical JSON (sorted keys) or null
        pa.field("ts", TS, nullable=False),  # the sample stands for [ts, ts + step)
        pa.field("value", pa.float64()),
        pa.field("step_seconds", pa.int32(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)

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


@dataclass(frozen=True)
class Dataset:
    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...]  # Hive keys, outermost first: <name>/<k1>=<v1>/[<k2>=<v2>/]
    primary_key: tuple[str, ...]

    @property
    def partition_key(self) -> str:
        """The date key every dataset is partitioned by (the innermost one)."""
        return self.partition_by[-1]


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "workload_snapshots",
            WORKLOAD_SNAPSHOTS,
            ("snapshot_date",),
            ("snapshot_date", "workload_id"),
        ),
        Dataset(
            "deleted_workloads",
            DELETED_WORKLOADS,
            ("snapshot_date",),
            ("snapshot_date", "workload_id"),
        ),
        Dataset(
            "workload_metrics",
            WORKLOAD_METRICS,
            ("usage_date",),
            ("usage_date", "workload_id", "metric_type", "labels_json", "ts"),
        ),
        Dataset(
            "telemetry",
            TELEMETRY,
            ("snapshot_date",),
            (
                "snapshot_date",
                "telemetry_type",
                "group_by",
                "group1_value",
                "group2_value",
                "timestamp",
            ),
        ),
        Dataset("quarantine", QUARANTINE, ("dataset", "quarantine_date"), ()),
    )
}
