"""Load lake partitions into the DuckDB warehouse (``<root>/warehouse.duckdb``, schema ``raw``).

One table per dataset, created from the Arrow schemas of :mod:`workloads_etl.lake.schemas`.
A partition is loaded in one transaction: delete the partition's rows, insert the Parquet
file with ``INSERT ... SELECT ... FROM read_parquet(?)`` and record the load in
``raw._loads``. Loading the same partition again gives the same table content.

DuckDB allows one writing process per database file (it holds an OS lock).
:meth:`Warehouse.open` waits with backoff for a busy file and then raises
:class:`WarehouseLockedError`; readers use :meth:`Warehouse.connect_read_only`.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType

import duckdb
import pyarrow as pa

from workloads_etl.lake.datasets import DATASETS
from workloads_etl.lake.parquet import DATA_FILE, partition_path, read_manifest
from workloads_etl.lake.schemas import SCHEMA_VERSION
from workloads_etl.settings import DataPaths

log = logging.getLogger(__name__)

SCHEMA = "raw"
LOADS_TABLE = f"{SCHEMA}._loads"


class WarehouseLockedError(RuntimeError):
    """Another process holds the warehouse's write lock."""


class PartitionNotFoundError(FileNotFoundError):
    """The lake has no such partition."""


def duckdb_type(t: pa.DataType) -> str:
    """The DuckDB column type for an Arrow type of the contract."""
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    if pa.types.is_date32(t):
        return "DATE"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "VARCHAR"
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_int32(t):
        return "INTEGER"
    if pa.types.is_float64(t):
        return "DOUBLE"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"{duckdb_type(t.value_type)}[]"
    raise TypeError(f"no DuckDB type for Arrow type {t}")


def table_ddl(dataset: str) -> str:
    ds = DATASETS[dataset]
    cols = ",\n  ".join(
        f'"{f.name}" {duckdb_type(f.type)}{"" if f.nullable else " NOT NULL"}' for f in ds.schema
    )
    return f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{dataset} (\n  {cols}\n)"


LOADS_DDL = f"""
CREATE TABLE IF NOT EXISTS {LOADS_TABLE} (
  dataset VARCHAR NOT NULL,
  "partition" VARCHAR NOT NULL,
  rows BIGINT NOT NULL,
  loaded_at TIMESTAMPTZ NOT NULL,
  run_id VARCHAR,
  schema_version INTEGER NOT NULL,
  file_sha256 VARCHAR
)
"""


def _session(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    con.execute("SET TimeZone='UTC'")
    return con


def _is_lock_error(exc: BaseException) -> bool:
    return "lock" in str(exc).lower()


@dataclass(frozen=True)
class LoadResult:
    dataset: str
    day: date
    rows: int
    run_id: str | None


class Warehouse:
    """The single writer of the warehouse. Use :meth:`open` as a context manager."""

    def __init__(self, paths: DataPaths, con: duckdb.DuckDBPyConnection) -> None:
        self.paths = paths
        self.con = con

    # ------------------------------------------------------------------ connections

    @classmethod
    def open(cls, paths: DataPaths, wait_seconds: float = 30) -> Warehouse:
        """Open for writing, waiting up to ``wait_seconds`` for another writer to finish."""
        paths.root.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + max(0.0, wait_seconds)
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(paths.warehouse))
                break
            except duckdb.IOException as exc:
                if not _is_lock_error(exc):
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    holder = re.search(r"\(PID (\d+)\)", str(exc))
                    raise WarehouseLockedError(
                        f"the warehouse {paths.warehouse} is locked by another process"
                        + (f" (PID {holder.group(1)})" if holder else "")
                        + f" (waited {wait_seconds:g}s). Only one process may write at a time: "
                        "wait for the other run to finish (the Parquet lake under "
                        f"{paths.lake} stays readable meanwhile)"
                    ) from None
                time.sleep(min(remaining, delay * (1 + random.random() / 2)))
                delay = min(delay * 2, 1.0)
        wh = cls(paths, _session(con))
        wh.ensure_schema()
        return wh

    @staticmethod
    def connect_read_only(paths: DataPaths) -> duckdb.DuckDBPyConnection:
        if not paths.warehouse.exists():
            raise FileNotFoundError(f"no warehouse at {paths.warehouse}: load something first")
        return _session(duckdb.connect(str(paths.warehouse), read_only=True))

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def ensure_schema(self) -> None:
        self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        for name in DATASETS:
            self.con.execute(table_ddl(name))
        self.con.execute(LOADS_DDL)

    # ------------------------------------------------------------------ loading

    def _load_file(
        self,
        dataset: str,
        day: date,
        where: dict[str, object],
        file: Path | None,
        run_id: str | None,
        sha256: str | None,
        partition_label: str,
    ) -> int:
        ds = DATASETS[dataset]
        cond = " AND ".join(f'"{k}" = ?' for k in where)
        # Identifiers come from the DATASETS registry; values are bound parameters.
        delete = f"DELETE FROM {SCHEMA}.{dataset} WHERE {cond}"  # noqa: S608
        self.con.execute(delete, list(where.values()))
        rows = 0
        if file is not None:
            select = []
            params: list[object] = []
            for f in ds.schema:
                if f.name in where:
                    select.append(f'?::{duckdb_type(f.type)} AS "{f.name}"')
                    params.append(where[f.name])
                else:
                    select.append(f'"{f.name}"')
            params.append(str(file))
            names = ", ".join(f'"{n}"' for n in ds.schema.names)
            insert = (
                f"INSERT INTO {SCHEMA}.{dataset} ({names}) SELECT {', '.join(select)} "  # noqa: S608
                "FROM read_parquet(?, hive_partitioning = false)"
            )
            self.con.execute(insert, params)
            rows = int(self.con.fetchall()[0][0])
        self.con.execute(
            f"INSERT INTO {LOADS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            [dataset, partition_label, rows, datetime.now(UTC), run_id, SCHEMA_VERSION, sha256],
        )
        return rows

    def load_partition(self, dataset: str, day: date) -> LoadResult:
        """(Re)load one lake partition and its quarantine partition, in one transaction."""
        if dataset not in DATASETS or dataset == "quarantine":
            raise ValueError(f"unknown dataset {dataset!r}")
        ds = DATASETS[dataset]
        directory = partition_path(self.paths.lake, dataset, day)
        file = directory / DATA_FILE
        manifest = read_manifest(self.paths.lake, dataset, day)
        if not file.is_file():
            raise PartitionNotFoundError(f"no lake partition {dataset} {day}: {file} is missing")
        q_keys = {"dataset": dataset}
        q_file = partition_path(self.paths.lake, "quarantine", day, q_keys) / DATA_FILE
        q_manifest = read_manifest(self.paths.lake, "quarantine", day, q_keys)
        self.con.execute("BEGIN TRANSACTION")
        try:
            rows = self._load_file(
                dataset,
                day,
                {ds.partition_key: day},
                file,
                manifest.run_id if manifest else None,
                manifest.sha256 if manifest else None,
                f"{ds.partition_key}={day.isoformat()}",
            )
            self._load_file(
                "quarantine",
                day,
                {"dataset": dataset, "quarantine_date": day},
                q_file if q_file.is_file() else None,
                q_manifest.run_id if q_manifest else None,
                q_manifest.sha256 if q_manifest else None,
                f"dataset={dataset}/quarantine_date={day.isoformat()}",
            )
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        result = LoadResult(dataset, day, rows, manifest.run_id if manifest else None)
        log.info("loaded %s %s: %d rows", dataset, day, rows)
        return result

    def load_partitions(self, dataset: str, days: Iterable[date]) -> list[LoadResult]:
        return [self.load_partition(dataset, d) for d in days]
