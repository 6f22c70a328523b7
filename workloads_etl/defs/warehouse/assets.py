"""Warehouse assets: each day's lake partitions loaded into DuckDB's ``raw`` schema."""

# No `from __future__ import annotations` here: Dagster reads the annotations of the asset
# functions (the context type) at definition time.

from collections.abc import Iterator
from datetime import date

import dagster as dg
from dagster import AssetExecutionContext

from workloads_etl.defs.failure import named_failure
from workloads_etl.defs.partitions import backfill_policy, partition_days
from workloads_etl.defs.resources import DataDirResource
from workloads_etl.lake.datasets import DATASETS, EXTRACTED
from workloads_etl.lake.parquet import read_manifest
from workloads_etl.settings import DEFAULT_DUCKDB_MEMORY_LIMIT
from workloads_etl.warehouse.loader import Warehouse

GROUP = "warehouse"
# Only one process may write the DuckDB file: every writing step takes a slot of this pool
# (limit 1, see dagster.yaml); a second run waits for the slot instead of failing.
WRITER_POOL = "duckdb_writer"


def raw_table_key(dataset: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", dataset])


def build_warehouse_assets(
    partitions: dg.PartitionsDefinition,
    lock_wait: float,
    memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT,
    upstream: dict[str, dg.AssetKey] | None = None,
) -> list[dg.AssetsDefinition]:
    """One multi-asset loading every extracted dataset's days into ``raw.<dataset>``; a load
    waits up to ``lock_wait`` seconds for another process holding the warehouse, and DuckDB
    holds at most ``memory_limit`` while loading. ``upstream`` names the daily asset a
    dataset's day comes from when it is not the dataset's own (extraction by cluster: the
    day's commit)."""
    upstream = upstream or {}

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                raw_table_key(ds),
                deps=[upstream.get(ds, dg.AssetKey(["runai", ds]))],
                group_name=GROUP,
                kinds={"duckdb"},
                partitions_def=partitions,
                description=f"`raw.{ds}` in the DuckDB warehouse, loaded from the lake partition.",
                skippable=True,
            )
            for ds in EXTRACTED
        ],
        check_specs=[
            dg.AssetCheckSpec(
                "matches_lake",
                asset=raw_table_key(ds),
                description="Warehouse rows of each loaded day equal the lake manifest's rows.",
            )
            for ds in EXTRACTED
        ],
        partitions_def=partitions,
        backfill_policy=backfill_policy,
        pool=WRITER_POOL,
        can_subset=True,
    )
    def raw_tables(
        context: AssetExecutionContext, data: DataDirResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        """Load each selected dataset/day in its own transaction (delete the day, insert it)."""
        paths = data.paths()
        days = partition_days(context)
        selected = [ds for ds in EXTRACTED if raw_table_key(ds) in context.selected_asset_keys]
        with (
            named_failure(),
            Warehouse.open(paths, wait_seconds=lock_wait, memory_limit=memory_limit) as wh,
        ):
            for ds in selected:
                loads = [wh.load_partition(ds, day) for day in days]
                per_day = {str(r.day): r.rows for r in loads}
                yield dg.MaterializeResult(
                    asset_key=raw_table_key(ds),
                    metadata={
                        "dagster/row_count": sum(per_day.values()),
                        "rows_per_day": dg.MetadataValue.json(per_day),
                        "table": f"raw.{ds}",
                        "warehouse": dg.MetadataValue.path(str(paths.warehouse)),
                    },
                )
                in_table = _rows_per_day(wh, ds, days)
                manifests = {str(d): read_manifest(paths.lake, ds, d) for d in days}
                in_lake = {k: (m.rows if m else None) for k, m in manifests.items()}
                yield dg.AssetCheckResult(
                    asset_key=raw_table_key(ds),
                    check_name="matches_lake",
                    passed=in_table == in_lake,
                    metadata={
                        "lake_manifest_rows": dg.MetadataValue.json(in_lake),
                        "warehouse_rows": dg.MetadataValue.json(in_table),
                    },
                )

    return [raw_tables]


def _rows_per_day(wh: Warehouse, dataset: str, days: list[date]) -> dict[str, int]:
    key = DATASETS[dataset].partition_key
    rows = wh.con.execute(
        f"select {key}, count(*) from raw.{dataset} where {key} between ? and ? group by 1",  # noqa: S608
        [days[0], days[-1]],
    ).fetchall()
    counts = {str(d): int(n) for d, n in rows}
    return {str(d): counts.get(str(d), 0) for d in days}
