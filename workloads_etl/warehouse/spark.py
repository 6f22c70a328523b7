"""The dbt project on Spark: the ``raw`` tables of a Spark warehouse, loaded from the lake.

DuckDB is the warehouse of the pipeline; the same dbt project also builds on Spark (dbt-spark,
``method: session``: dbt runs Spark inside its own process), over the same lake. This module
is plain Python and imports pyspark only when a Spark session is made, so the package works
without it (install it with ``uv sync --group spark``).

The Spark warehouse lives under the data directory (``<data>/.spark``): its tables
(``warehouse/``, Parquet) and its catalog (an embedded Derby metastore, ``metastore_db``),
so tables outlive the process and an incremental run finds the tables of the previous one.
The embedded metastore admits one process at a time: Spark runs of a data directory take
turns, like the DuckDB warehouse's single writer.

The ``raw`` tables are the loader's (:mod:`workloads_etl.warehouse.loader`), in Spark: one
table per dataset with the contract's columns and types (:mod:`workloads_etl.lake.schemas`),
filled from exactly the files each partition's ``_manifest.json`` names, after each was
checked against it (files of no commit are never read); ``raw.quarantine`` holds the quarantine rows
the manifests name, and ``raw._loads`` one row per partition loaded. The session computes in
UTC (``spark.sql.session.timeZone``), as the DuckDB warehouse does. A lake on an object
store (``WORKLOADS_ETL_LAKE_URL=s3://...``) is read through Hadoop's S3A connector, as
``s3a://`` URLs: the session needs its jars (``hadoop-aws``) on the classpath.

:func:`run` is what ``python -m workloads_etl.warehouse.spark`` does: load ``raw`` from the
lake, record the window of the run (``raw._dbt_window``, see ``dbt/macros/usage_window.sql``)
and run dbt with the arguments given, in one process and one Spark session.
:func:`workloads_etl.warehouse.dbt.run_dbt` with ``target="spark"`` starts it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from workloads_etl.lake.datasets import DATASETS, EXTRACTED
from workloads_etl.lake.parquet import Manifest, file_uri, manifests, verify_files
from workloads_etl.lake.store import Store
from workloads_etl.settings import DataPaths, PipelineSettings

SCHEMA = "raw"
WINDOW_TABLE = f"{SCHEMA}._dbt_window"
LOADS_TABLE = f"{SCHEMA}._loads"
# A small local session: two cores, a few shuffle partitions (the data of a day is small for
# Spark), a modest driver.
MASTER = "local[2]"
SHUFFLE_PARTITIONS = 4
DRIVER_MEMORY = "1g"


def spark_dir(paths: DataPaths) -> Path:
    """Where the Spark warehouse of a data directory lives (tables and catalog)."""
    return paths.root / ".spark"


def spark_conf(paths: DataPaths) -> dict[str, str]:
    """The configuration of every Spark session on ``paths``: dbt's (the profile's
    ``server_side_parameters``) and this module's are the same session."""
    home = spark_dir(paths)
    return {
        "spark.master": MASTER,
        "spark.app.name": "workloads-etl",
        "spark.driver.memory": DRIVER_MEMORY,
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": str(SHUFFLE_PARTITIONS),
        "spark.default.parallelism": "2",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": (
            f"-Duser.timezone=UTC -Dderby.system.home={home} "
            f"-Dderby.stream.error.file={home / 'derby.log'}"
        ),
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": str(home / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={home / 'metastore_db'};create=true"
        ),
        # Parquet timestamps as the lake writes them (not the legacy INT96).
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    }


def spark_session(paths: DataPaths) -> Any:
    """The Spark session of ``paths`` (created, or the one this process already has)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise RuntimeError(
            "Spark is not installed: `uv sync --group spark` installs pyspark and dbt-spark"
        ) from exc
    spark_dir(paths).mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder.enableHiveSupport()
    for key, value in spark_conf(paths).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


# Where Spark's name of a type differs from DuckDB's (loader.duckdb_type, the one mapping of
# the contract's Arrow types): timestamps with a time zone are instants, TIMESTAMP in Spark,
# read in the session's UTC.
_SPARK_NAMES = {
    "TIMESTAMPTZ": "TIMESTAMP",
    "TIMESTAMP": "TIMESTAMP_NTZ",
    "VARCHAR": "STRING",
    "INTEGER": "INT",
}


def spark_type(t: pa.DataType) -> str:
    """The Spark SQL type of an Arrow type of the contract, derived from its DuckDB type."""
    from workloads_etl.warehouse.loader import duckdb_type  # the loader imports dbt, dbt this

    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"ARRAY<{spark_type(t.value_type)}>"
    name = duckdb_type(t)
    return _SPARK_NAMES.get(name, name)


def schema_ddl(dataset: str) -> str:
    """The contract's columns of ``dataset`` as a Spark DDL schema, in the contract's order."""
    return ", ".join(f"`{f.name}` {spark_type(f.type)}" for f in DATASETS[dataset].schema)


def _write_table(spark: Any, dataset: str, frame: Any) -> None:
    ds = DATASETS[dataset]
    (
        frame.select(*[f"`{name}`" for name in ds.schema.names])
        .write.format("parquet")
        .mode("overwrite")
        .partitionBy(*ds.partition_by)
        .saveAsTable(f"{SCHEMA}.{dataset}")
    )


def _read_files(spark: Any, lake: Store, dataset: str, files: list[str]) -> Any:
    """The rows of ``files`` (partitions of ``dataset``) with the contract's columns: the
    partition columns come from the Hive paths, a column a file of an older schema version
    lacks is null."""
    schema = schema_ddl(dataset)
    if not files:
        return spark.createDataFrame([], schema)
    urls = [_hadoop_url(f) for f in files]
    return (
        spark.read.schema(schema).option("basePath", _hadoop_url(lake.uri(dataset))).parquet(*urls)
    )


def _hadoop_url(url: str) -> str:
    """A lake URL as Spark's Hadoop filesystems name it (S3 through the S3A connector)."""
    return "s3a://" + url.removeprefix("s3://") if url.startswith("s3://") else url


def load_raw(spark: Any, paths: DataPaths) -> dict[str, int]:
    """Replace the ``raw`` tables of the Spark warehouse with the lake's committed partitions:
    the files their manifests name, each checked against its sha256 first. Returns the rows
    per table."""
    lake = paths.lake
    spark.sql(f"create schema if not exists {SCHEMA}")
    loaded_at = datetime.now(UTC)
    loads: list[tuple[Any, ...]] = []
    quarantine_files: list[str] = []
    counts: dict[str, int] = {}
    for dataset in EXTRACTED:
        found: list[Manifest] = manifests(lake, dataset)
        for manifest in found:
            verify_files(lake, manifest)
        files = [file_uri(lake, f) for m in found for f in m.data_files]
        quarantine_files += [file_uri(lake, f) for m in found for f in m.quarantine_files]
        _write_table(spark, dataset, _read_files(spark, lake, dataset, files))
        counts[dataset] = sum(m.rows for m in found)
        key = DATASETS[dataset].partition_key
        for m in found:
            for role, label, chosen in (
                ("data", f"{key}={m.day.isoformat()}", m.data_files),
                (
                    "quarantine",
                    f"dataset={dataset}/quarantine_date={m.day.isoformat()}",
                    m.quarantine_files,
                ),
            ):
                loads.append(
                    (
                        dataset if role == "data" else "quarantine",
                        label,
                        sum(f.rows for f in chosen),
                        loaded_at,
                        m.run_id,
                        m.schema_version,
                        ",".join(f.sha256 for f in chosen) or None,
                    )
                )
    _write_table(spark, "quarantine", _read_files(spark, lake, "quarantine", quarantine_files))
    counts["quarantine"] = sum(r[2] for r in loads if r[0] == "quarantine")
    spark.createDataFrame(
        loads,
        "dataset STRING, `partition` STRING, rows BIGINT, loaded_at TIMESTAMP, "
        "run_id STRING, schema_version INT, file_sha256 STRING",
    ).write.format("parquet").mode("overwrite").saveAsTable(LOADS_TABLE)
    return counts


def write_window(spark: Any, window: tuple[date, date] | None) -> None:
    """Record the window of the next dbt invocation in ``raw._dbt_window`` (``None``: every
    day), like :func:`workloads_etl.warehouse.dbt.write_window` does in DuckDB."""
    from workloads_etl.warehouse.dbt import WINDOW_COLUMNS  # dbt imports this module

    rows = [] if window is None else [(*window, None)]
    frame = spark.createDataFrame(rows, WINDOW_COLUMNS)
    frame.write.format("parquet").mode("overwrite").saveAsTable(WINDOW_TABLE)


def run(paths: DataPaths, dbt_args: Sequence[str], window: tuple[date, date] | None = None) -> int:
    """Load ``raw`` from the lake, record ``window`` and run ``dbt <dbt_args>`` in this
    process's Spark session (dbt-spark's session method finds it). Returns dbt's exit code."""
    spark = spark_session(paths)
    load_raw(spark, paths)
    write_window(spark, window)
    from dbt.cli.main import dbtRunner

    result = dbtRunner().invoke(list(dbt_args))
    if result.exception is not None:
        print(f"dbt failed: {result.exception}", file=sys.stderr)
        return 2
    return 0 if result.success else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workloads_etl.warehouse.spark",
        description="Load the raw tables of the Spark warehouse from the lake and run dbt.",
    )
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--start-date", type=date.fromisoformat)
    parser.add_argument("--end-date", type=date.fromisoformat)
    parser.add_argument("dbt_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if (args.start_date is None) != (args.end_date is None):
        parser.error("--start-date and --end-date go together")
    window = None if args.start_date is None else (args.start_date, args.end_date)
    dbt_args = args.dbt_args[1:] if args.dbt_args[:1] == ["--"] else args.dbt_args
    return run(PipelineSettings.read(data_dir=args.data_dir).paths, dbt_args, window)


if __name__ == "__main__":
    sys.exit(main())
