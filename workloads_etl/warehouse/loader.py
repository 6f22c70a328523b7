"""Load lake partitions into the DuckDB warehouse (``<root>/warehouse.duckdb``, schema ``raw``).

One table per dataset, created from the Arrow schemas of :mod:`workloads_etl.lake.schemas`.
A partition is loaded from the files its manifest names, and only after every one of them
matched the sha256 the manifest records (a mismatch stops the load, naming the file and the
command that rebuilds the partition). Then, in one transaction: delete the partition's rows
and its quarantine rows, insert the files with ``INSERT ... SELECT ... FROM read_parquet(?)``
and record the load in ``raw._loads``. Loading the same partition again gives the same
table content. Files of an older schema version are conformed as they are read: a column
they lack is null, a narrower type is widened.

The warehouse records its schema version in ``raw._schema_versions``. Opening a warehouse
built at an older version migrates it in one transaction (columns added, types widened, see
:data:`MIGRATIONS`); one that cannot be migrated (built by a newer version, or a table that
does not match the contract) stops with one line naming the command that rebuilds it from
the lake.

DuckDB allows one writing process per database file (it holds an OS lock).
:meth:`Warehouse.open` waits with backoff for a busy file and then raises
:class:`WarehouseLockedError`; readers use :meth:`Warehouse.connect_read_only`.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from workloads_etl.lake.datasets import DATASETS
from workloads_etl.lake.parquet import (
    Manifest,
    ManifestFile,
    PartitionNotFoundError,
    file_uri,
    partition_uri,
    read_manifest,
    rebuild_command_of,
    verify_files,
)
from workloads_etl.lake.schemas import SCHEMA_VERSION
from workloads_etl.settings import DEFAULT_DUCKDB_MEMORY_LIMIT, DataPaths
from workloads_etl.warehouse.dbt import duckdb_temp_dir
from workloads_etl.writer import current_holder, is_part_of, process_line

log = logging.getLogger(__name__)

SCHEMA = "raw"
LOADS_TABLE = f"{SCHEMA}._loads"
VERSIONS = "_schema_versions"
VERSIONS_TABLE = f"{SCHEMA}.{VERSIONS}"


class WarehouseLockedError(RuntimeError):
    """Another process holds the warehouse's write lock."""


def _who_holds(paths: DataPaths, exc: Exception) -> str:
    """Who holds the warehouse's write lock, from DuckDB's error: a run of this data
    directory (the writer lock's holder or its dbt), or a reader that opened the warehouse
    itself instead of the serving database."""
    found = re.search(r"\(PID (\d+)\)", str(exc))
    if found is None:
        return f"the warehouse {paths.warehouse} is locked by another process"
    pid = int(found.group(1))
    holder = current_holder(paths.root)
    if is_part_of(pid, holder) and holder is not None:
        return f"the warehouse {paths.warehouse} is being written by {holder.describe()}"
    return (
        f"the warehouse {paths.warehouse} is held open by a reader, {process_line(pid)}, "
        "not by a run; readers should open the serving database "
        f"{paths.serving / 'warehouse.duckdb'}, which is never locked. Close that reader"
    )


class WarehouseSchemaError(RuntimeError):
    """The warehouse's tables are at a schema version this code cannot migrate from."""


class LakeSchemaError(RuntimeError):
    """A lake partition was written at a schema version newer than this code's."""


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


def _information_schema_type(typ: str) -> str:
    """A DuckDB type as ``information_schema.columns`` spells it."""
    return "TIMESTAMP WITH TIME ZONE" if typ == "TIMESTAMPTZ" else typ


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


VERSIONS_DDL = f"""
CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (
  version INTEGER NOT NULL,
  applied_at TIMESTAMPTZ NOT NULL,
  change VARCHAR NOT NULL
)
"""


def _migrate_1_to_2(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"ALTER TABLE {SCHEMA}.workload_metrics ALTER COLUMN step_seconds TYPE BIGINT")
    con.execute(
        f"ALTER TABLE {SCHEMA}.workload_metrics ADD COLUMN IF NOT EXISTS fetched_at TIMESTAMPTZ"
    )


# version -> (what the step to version + 1 changes, the step); each runs in the migration's
# transaction. A version without a step here cannot be migrated.
MIGRATIONS: dict[int, tuple[str, Callable[[duckdb.DuckDBPyConnection], None]]] = {
    1: (
        "workload_metrics: step_seconds widened to BIGINT; fetched_at added "
        "(null for rows loaded before)",
        _migrate_1_to_2,
    ),
}


def rebuild_hint(paths: DataPaths) -> str:
    """How to rebuild the warehouse from the lake, in one line."""
    return (
        f"move {paths.warehouse} aside and reload each partition from the lake with "
        "`workloads-etl renormalise --dataset DATASET --day DAY`"
    )


def _session(
    con: duckdb.DuckDBPyConnection, memory_limit: str | None = None, temp_dir: Path | None = None
) -> duckdb.DuckDBPyConnection:
    con.execute("SET TimeZone='UTC'")
    if memory_limit is not None:  # the writer: bounded memory, spilling to disk beyond it
        con.execute("SET memory_limit = ?", [memory_limit])
        con.execute("SET threads = 2")
        con.execute("SET preserve_insertion_order = false")
        if temp_dir is not None:
            con.execute("SET temp_directory = ?", [str(temp_dir)])
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
    def open(
        cls,
        paths: DataPaths,
        wait_seconds: float = 30,
        memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT,
    ) -> Warehouse:
        """Open for writing, waiting up to ``wait_seconds`` for another writer to finish.
        DuckDB holds at most ``memory_limit`` and spills beyond it (under the data
        directory), so loading a day of any size takes bounded memory."""
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
                    raise WarehouseLockedError(
                        _who_holds(paths, exc) + f" (waited {wait_seconds:g} s)"
                    ) from None
                time.sleep(min(remaining, delay * (1 + random.random() / 2)))
                delay = min(delay * 2, 1.0)
        wh = cls(paths, _session(con, memory_limit, duckdb_temp_dir(paths)))
        paths.lake.register_with(wh.con)  # read_parquet of s3:// URLs, through fsspec
        try:
            wh.ensure_schema()
        except BaseException:
            wh.close()  # a warehouse that cannot be migrated is not held open
            raise
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
        """Create the tables, or migrate them to :data:`SCHEMA_VERSION`; check the result."""
        self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        version = self.schema_version()
        if version is not None and version > SCHEMA_VERSION:
            raise WarehouseSchemaError(
                f"the warehouse was built at schema version {version}, newer than this "
                f"workloads-etl's {SCHEMA_VERSION}: upgrade, or {rebuild_hint(self.paths)}"
            )
        recorded = VERSIONS in self._tables()
        self.con.execute("BEGIN TRANSACTION")
        try:
            self.con.execute(VERSIONS_DDL)
            if version is None:
                self._record_version(SCHEMA_VERSION, "created")
            else:
                if not recorded:
                    self._record_version(version, "found, built before versions were recorded")
                self._migrate(version)
            for name in DATASETS:
                self.con.execute(table_ddl(name))
            self.con.execute(LOADS_DDL)
            self._check_tables()
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def _tables(self) -> set[str]:
        rows = self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [SCHEMA]
        ).fetchall()
        return {r[0] for r in rows}

    def schema_version(self) -> int | None:
        """The warehouse's schema version; None for a new one. A warehouse with tables but
        no version table was built at version 1."""
        tables = self._tables()
        if VERSIONS in tables:
            row = self.con.execute(f"SELECT max(version) FROM {VERSIONS_TABLE}").fetchone()  # noqa: S608
            if row and row[0] is not None:
                return int(row[0])
        return 1 if tables & {*DATASETS, "_loads"} else None

    def _record_version(self, version: int, change: str) -> None:
        self.con.execute(
            f"INSERT INTO {VERSIONS_TABLE} VALUES (?, ?, ?)",  # noqa: S608
            [version, datetime.now(UTC), change],
        )

    def _migrate(self, version: int) -> None:
        while version < SCHEMA_VERSION:
            if version not in MIGRATIONS:
                raise WarehouseSchemaError(
                    f"the warehouse is at schema version {version}, which this workloads-etl "
                    f"cannot migrate to {SCHEMA_VERSION}: {rebuild_hint(self.paths)}"
                )
            change, step = MIGRATIONS[version]
            try:
                step(self.con)
            except duckdb.Error as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise WarehouseSchemaError(
                    f"the warehouse could not be migrated from schema version {version} to "
                    f"{version + 1} ({reason}): {rebuild_hint(self.paths)}"
                ) from exc
            version += 1
            self._record_version(version, change)
            log.info("warehouse migrated to schema version %d: %s", version, change)

    def _check_tables(self) -> None:
        """Every raw table has the contract's columns and types, in its order."""
        for name, ds in DATASETS.items():
            have = self.con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                [SCHEMA, name],
            ).fetchall()
            want = [(f.name, _information_schema_type(duckdb_type(f.type))) for f in ds.schema]
            if [(n, t.upper()) for n, t in have] != want:
                raise WarehouseSchemaError(
                    f"raw.{name} does not match schema version {SCHEMA_VERSION} of the "
                    f"contract: {rebuild_hint(self.paths)}"
                )

    # ------------------------------------------------------------------ loading

    def _load_files(
        self,
        dataset: str,
        where: dict[str, object],
        files: tuple[ManifestFile, ...],
        run_id: str | None,
        schema_version: int,
        digests: list[str],
        partition_label: str,
    ) -> int:
        ds = DATASETS[dataset]
        cond = " AND ".join(f'"{k}" = ?' for k in where)
        # Identifiers come from the DATASETS registry; values are bound parameters.
        delete = f"DELETE FROM {SCHEMA}.{dataset} WHERE {cond}"  # noqa: S608
        self.con.execute(delete, list(where.values()))
        rows = 0
        if files:
            lake = self.paths.lake
            present = set()
            for f in files:
                with lake.open(f.path) as source:
                    present.update(pq.read_schema(source).names)
            select = []
            params: list[object] = []
            for f in ds.schema:
                typ = duckdb_type(f.type)
                if f.name in where:
                    select.append(f'?::{typ} AS "{f.name}"')
                    params.append(where[f.name])
                elif f.name in present:
                    select.append(f'CAST("{f.name}" AS {typ}) AS "{f.name}"')
                else:  # written at an older schema version, before the column existed
                    select.append(f'NULL::{typ} AS "{f.name}"')
            params.append([file_uri(lake, f) for f in files])
            names = ", ".join(f'"{n}"' for n in ds.schema.names)
            insert = (
                f"INSERT INTO {SCHEMA}.{dataset} ({names}) SELECT {', '.join(select)} "  # noqa: S608
                "FROM read_parquet(?, hive_partitioning = false, union_by_name = true)"
            )
            self.con.execute(insert, params)
            rows = int(self.con.fetchall()[0][0])
        self.con.execute(
            f"INSERT INTO {LOADS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            [
                dataset,
                partition_label,
                rows,
                datetime.now(UTC),
                run_id,
                schema_version,
                ",".join(digests) or None,
            ],
        )
        return rows

    def load_partition(self, dataset: str, day: date) -> LoadResult:
        """(Re)load one lake partition and its quarantine rows, in one transaction."""
        if dataset not in DATASETS or dataset == "quarantine":
            raise ValueError(f"unknown dataset {dataset!r}")
        ds = DATASETS[dataset]
        manifest = read_manifest(self.paths.lake, dataset, day)
        if manifest is None:
            missing = partition_uri(self.paths.lake, dataset, day)
            raise PartitionNotFoundError(
                f"no lake partition {dataset} {day}: {missing} has no manifest"
            )
        self._check_partition(manifest)
        verify_files(self.paths.lake, manifest)  # before anything is deleted
        self.con.execute("BEGIN TRANSACTION")
        try:
            rows = self._load_files(
                dataset,
                {ds.partition_key: day},
                manifest.data_files,
                manifest.run_id,
                manifest.schema_version,
                [f.sha256 for f in manifest.data_files],
                f"{ds.partition_key}={day.isoformat()}",
            )
            self._load_files(
                "quarantine",
                {"dataset": dataset, "quarantine_date": day},
                manifest.quarantine_files,
                manifest.run_id,
                manifest.schema_version,
                [f.sha256 for f in manifest.quarantine_files],
                f"dataset={dataset}/quarantine_date={day.isoformat()}",
            )
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        result = LoadResult(dataset, day, rows, manifest.run_id)
        log.info("loaded %s %s: %d rows", dataset, day, rows)
        return result

    def _check_partition(self, manifest: Manifest) -> None:
        if manifest.schema_version > SCHEMA_VERSION:
            raise LakeSchemaError(
                f"lake partition {manifest.dataset} {manifest.day} was written at schema "
                f"version {manifest.schema_version}, newer than this workloads-etl's "
                f"{SCHEMA_VERSION}: upgrade, or rebuild it with "
                f"{rebuild_command_of(manifest)}"
            )

    def load_partitions(self, dataset: str, days: Iterable[date]) -> list[LoadResult]:
        return [self.load_partition(dataset, d) for d in days]
