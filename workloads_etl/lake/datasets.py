"""The dataset registry: every dataset of the raw landing, the lake and the warehouse's ``raw``
schema, declared once.

A :class:`Dataset` gives its name, the API operations whose answers become its rows, its Arrow
schema (the data contract of :mod:`workloads_etl.lake.schemas`), its Hive partition keys, its
primary key and its normaliser. Everything else (raw paths, lake paths, warehouse tables,
Dagster assets, command-line choices) is derived from this registry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Protocol

import pyarrow as pa

from workloads_etl.lake import schemas
from workloads_etl.lake.bounds import Limits
from workloads_etl.lake.normalise.metrics import normalise_metrics
from workloads_etl.lake.normalise.records import Normalised
from workloads_etl.lake.normalise.telemetry import normalise_telemetry
from workloads_etl.lake.normalise.workloads import normalise_workloads
from workloads_etl.runai.models import RawResponse


class Normaliser(Protocol):
    """(dataset name, the answers of one raw run, day, run id, the physical bounds) -> rows,
    quarantine and counts."""

    def __call__(
        self,
        dataset: str,
        responses: Iterable[RawResponse],
        day: date,
        run_id: str,
        *,
        limits: Limits,
    ) -> Normalised: ...


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    schema: pa.Schema
    partition_by: tuple[str, ...]  # Hive keys, outermost first: <name>/<k1>=<v1>/[<k2>=<v2>/]
    primary_key: tuple[str, ...]
    operations: frozenset[str] = frozenset()  # operationIds whose answers become rows
    normalise: Normaliser | None = None  # None: not extracted from the API (quarantine)

    @property
    def partition_key(self) -> str:
        """The date key every dataset is partitioned by (the innermost one)."""
        return self.partition_by[-1]

    @property
    def extracted(self) -> bool:
        """Fetched from the API, landed raw and normalised (every dataset but quarantine)."""
        return self.normalise is not None


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "workload_snapshots",
            "Every workload the control plane lists, as seen by the run for each day.",
            schemas.WORKLOADS,
            ("snapshot_date",),
            schemas.WORKLOADS_KEY,
            frozenset({"get_workloads"}),
            normalise_workloads,
        ),
        Dataset(
            "deleted_workloads",
            "Deleted workloads (`deleted=true`), so work deleted before the run is charged.",
            schemas.WORKLOADS,
            ("snapshot_date",),
            schemas.WORKLOADS_KEY,
            frozenset({"get_workloads"}),
            normalise_workloads,
        ),
        Dataset(
            "workload_metrics",
            "Per-workload metric samples at a fixed step for every workload alive at any "
            "time of the day.",
            schemas.WORKLOAD_METRICS,
            ("usage_date",),
            schemas.WORKLOAD_METRICS_KEY,
            frozenset({"get_workload_metrics"}),
            normalise_metrics,
        ),
        Dataset(
            "telemetry",
            "Telemetry: GPU allocation per node pool, workload counts, pending times.",
            schemas.TELEMETRY,
            ("snapshot_date",),
            schemas.TELEMETRY_KEY,
            frozenset({"get_workloads_telemetry"}),
            normalise_telemetry,
        ),
        Dataset(
            "quarantine",
            "Records that broke the data contract, with the reason, per source partition.",
            schemas.QUARANTINE,
            ("dataset", "quarantine_date"),
            (),
        ),
    )
}

# The datasets fetched from the API, in the order the data flows.
EXTRACTED: tuple[str, ...] = tuple(name for name, d in DATASETS.items() if d.extracted)
# The workload lists: the snapshot of live workloads and the deleted list.
WORKLOAD_LISTS: tuple[str, ...] = tuple(
    name for name, d in DATASETS.items() if "get_workloads" in d.operations
)
