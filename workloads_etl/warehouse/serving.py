"""The serving database: a read-only copy of the marts for BI tools and analysts.

After every successful run the marts, the dimensions and the reference seeds are copied into
``<data>/serving/warehouse.duckdb``, with every table's and column's description as a DuckDB
``COMMENT`` and a small catalogue (schema ``meta``). Readers never wait for the pipeline:

- the copy is built beside the published file and swapped in with one atomic rename, so a
  reader opens either the previous state or the new one, never a half-written file;
- a reader that already has the file open keeps its snapshot (the old file stays readable
  through the reader's open handle until it closes it);
- nobody ever writes the published file itself, so no reader is ever locked out.

The file is written in DuckDB's storage format ``v1.4.0``, readable by DuckDB 1.4 clients
(which many BI drivers still bundle) as well as 2.x.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from workloads_etl.lake.store import fsync_dir
from workloads_etl.settings import DataPaths
from workloads_etl.warehouse.dbt import target_dir

SERVED_SCHEMAS = ("marts", "reference")
STORAGE_VERSION = "v1.4.0"
SERVING_FILE = "warehouse.duckdb"


class ServingNotPublishedError(FileNotFoundError):
    """No serving database has been published yet."""


@dataclass(frozen=True)
class Publication:
    path: Path
    published_at: datetime
    run_id: str | None
    tables: dict[str, int]  # "schema.table" -> rows


def serving_path(paths: DataPaths) -> Path:
    return paths.serving / SERVING_FILE


def _literal(text: str) -> str:
    """A SQL string literal (COMMENT ON takes no parameters)."""
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _date_columns(paths: DataPaths) -> dict[str, str]:
    """``{model name: date column}`` from the dbt manifest (the models' ``meta.date_column``)."""
    manifest = target_dir(paths) / "manifest.json"
    if not manifest.is_file():
        return {}
    nodes = json.loads(manifest.read_text(encoding="utf-8")).get("nodes", {})
    out = {}
    for node in nodes.values():
        column = (node.get("config") or {}).get("meta", {}).get("date_column")
        if node.get("resource_type") == "model" and column:
            out[node["name"]] = column
    return out


def publish(paths: DataPaths, run_id: str | None = None) -> Publication:
    """Copy the served schemas of the warehouse into a new serving database and swap it in.

    The caller holds the warehouse's writer slot (nothing else writes it meanwhile)."""
    directory = paths.serving
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / SERVING_FILE
    tmp = directory / f".{SERVING_FILE}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    published_at = datetime.now(UTC)
    try:
        tables = _build(paths, tmp, published_at, run_id)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    return Publication(final, published_at, run_id, tables)


def _build(
    paths: DataPaths, target: Path, published_at: datetime, run_id: str | None
) -> dict[str, int]:
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("ATTACH ? AS wh (READ_ONLY)", [str(paths.warehouse)])
        con.execute(f"ATTACH ? AS srv (STORAGE_VERSION '{STORAGE_VERSION}')", [str(target)])
        schemas = list(SERVED_SCHEMAS)
        tables = con.execute(
            "select schema_name, table_name, comment from duckdb_tables() "
            "where database_name = 'wh' and list_contains(?, schema_name) "
            "order by schema_name, table_name",
            [schemas],
        ).fetchall()
        columns = con.execute(
            "select schema_name, table_name, column_name, data_type, comment, column_index "
            "from duckdb_columns() "
            "where database_name = 'wh' and list_contains(?, schema_name) "
            "order by schema_name, table_name, column_index",
            [schemas],
        ).fetchall()
        date_columns = _date_columns(paths)
        rows: dict[str, int] = {}
        for schema in SERVED_SCHEMAS:
            con.execute(f"CREATE SCHEMA srv.{_ident(schema)}")
        for schema, table, comment in tables:
            name = f"{_ident(schema)}.{_ident(table)}"
            con.execute(f"CREATE TABLE srv.{name} AS FROM wh.{name}")
            if comment:
                con.execute(f"COMMENT ON TABLE srv.{name} IS {_literal(comment)}")
            count = con.execute(f"select count(*) from srv.{name}").fetchone()  # noqa: S608
            rows[f"{schema}.{table}"] = int(count[0]) if count else 0
        for schema, table, column, _, comment, _ in columns:
            if comment:
                con.execute(
                    f"COMMENT ON COLUMN srv.{_ident(schema)}.{_ident(table)}.{_ident(column)} "
                    f"IS {_literal(comment)}"
                )
        _catalogue(con, tables, columns, rows, date_columns, published_at, run_id)
        con.execute("DETACH srv")
    finally:
        con.close()
    return rows


def _catalogue(
    con: duckdb.DuckDBPyConnection,
    tables: list[tuple[Any, ...]],
    columns: list[tuple[Any, ...]],
    rows: dict[str, int],
    date_columns: dict[str, str],
    published_at: datetime,
    run_id: str | None,
) -> None:
    """``meta.tables``, ``meta.columns`` and ``meta.publication``: what the file holds."""
    con.execute("CREATE SCHEMA srv.meta")
    con.execute(
        "CREATE TABLE srv.meta.tables (schema_name VARCHAR, table_name VARCHAR, "
        "description VARCHAR, date_column VARCHAR, row_count BIGINT)"
    )
    con.executemany(
        "INSERT INTO srv.meta.tables VALUES (?, ?, ?, ?, ?)",
        [(s, t, c, date_columns.get(t), rows[f"{s}.{t}"]) for s, t, c in tables],
    )
    con.execute(
        "CREATE TABLE srv.meta.columns (schema_name VARCHAR, table_name VARCHAR, "
        "column_name VARCHAR, data_type VARCHAR, description VARCHAR, ordinal INTEGER)"
    )
    con.executemany(
        "INSERT INTO srv.meta.columns VALUES (?, ?, ?, ?, ?, ?)",
        [(s, t, c, d, comment, i) for s, t, c, d, comment, i in columns],
    )
    con.execute(
        "CREATE TABLE srv.meta.publication (published_at TIMESTAMPTZ, run_id VARCHAR, "
        "storage_version VARCHAR)"
    )
    con.execute(
        "INSERT INTO srv.meta.publication VALUES (?, ?, ?)",
        [published_at, run_id, STORAGE_VERSION],
    )
    con.execute(
        "COMMENT ON TABLE srv.meta.tables IS "
        "'The tables of this database: description, the date column exports filter on, rows.'"
    )
    con.execute(
        "COMMENT ON TABLE srv.meta.columns IS 'Every column of this database, with its type "
        "and description.'"
    )
    con.execute(
        "COMMENT ON TABLE srv.meta.publication IS "
        "'When this copy was published, by which run, in which storage format.'"
    )


# A reader needs no file but the database: no reads or writes of other files, no ATTACH, no
# extension installs, and the configuration locked so no statement can undo it.
SANDBOX = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


@contextmanager
def connect(paths: DataPaths) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only, sandboxed connection to the published serving database."""
    path = serving_path(paths)
    if not path.is_file():
        raise ServingNotPublishedError(
            f"no serving database at {path}: run the pipeline first "
            "(workloads-etl demo, or workloads-etl run --start ... --end ...)"
        )
    con = duckdb.connect(str(path), read_only=True, config=dict(SANDBOX))
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET lock_configuration = true")
        yield con
    finally:
        with suppress(duckdb.Error):
            con.close()
