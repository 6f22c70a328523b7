"""Serving assets: the read-only serving database readers use, published after the models."""

# No `from __future__ import annotations` here: Dagster reads the annotations of the asset
# functions (the context type) at definition time.

from collections.abc import Sequence
from datetime import timedelta

import dagster as dg
from dagster import AssetExecutionContext

from workloads_etl.defs.failure import named_failure
from workloads_etl.defs.partitions import backfill_policy, partition_days
from workloads_etl.defs.resources import DataDirResource
from workloads_etl.defs.warehouse.assets import WRITER_POOL
from workloads_etl.warehouse.report import write_report
from workloads_etl.warehouse.serving import SERVED_SCHEMAS, publish

SERVING_KEY = dg.AssetKey(["serving", "warehouse"])
REPORT_KEY = dg.AssetKey(["serving", "report"])
# The report of a run covers this many days, ending with the run's last day.
REPORT_DAYS = 30


def served_keys(keys: Sequence[dg.AssetKey]) -> list[dg.AssetKey]:
    """The asset keys of the tables the serving database copies (marts, reference seeds)."""
    return [k for k in keys if k.path[0] in SERVED_SCHEMAS]


def build_serving_assets(
    partitions: dg.PartitionsDefinition, upstream: Sequence[dg.AssetKey]
) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=SERVING_KEY,
        deps=served_keys(upstream),
        group_name="serving",
        kinds={"duckdb"},
        partitions_def=partitions,
        backfill_policy=backfill_policy,
        pool=WRITER_POOL,
        description=(
            "The read-only serving database for BI tools and analysts (`serving/warehouse."
            "duckdb`): marts, dimensions and reference seeds with their descriptions, swapped "
            "in atomically once the models are built and tested."
        ),
    )
    def serving_warehouse(
        context: AssetExecutionContext, data: DataDirResource
    ) -> dg.MaterializeResult:
        with named_failure():
            publication = publish(data.paths(), run_id=context.run.run_id)
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(publication.path)),
                "tables": len(publication.tables),
                "dagster/row_count": sum(publication.tables.values()),
                "rows_per_table": dg.MetadataValue.json(publication.tables),
                "published_at": publication.published_at.isoformat(),
            }
        )

    @dg.asset(
        key=REPORT_KEY,
        deps=[SERVING_KEY],
        group_name="serving",
        kinds={"html"},
        partitions_def=partitions,
        backfill_policy=backfill_policy,
        description=(
            f"The HTML report of the {REPORT_DAYS} days up to the run's last day "
            "(`serving/report.html`): cost and idle cost per department, allocation against "
            "capacity, utilisation per node pool, top idle workloads, pending time, chargeback."
        ),
    )
    def serving_report(
        context: AssetExecutionContext, data: DataDirResource
    ) -> dg.MaterializeResult:
        paths = data.paths()
        end = partition_days(context)[-1]
        start = end - timedelta(days=REPORT_DAYS - 1)
        with named_failure():
            path = write_report(paths, start, end, paths.serving / "report.html")
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(path)),
                "url": dg.MetadataValue.url(path.as_uri()),
                "window": f"{start} .. {end}",
                "bytes": path.stat().st_size,
            }
        )

    return [serving_warehouse, serving_report]
