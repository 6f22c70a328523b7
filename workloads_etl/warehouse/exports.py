"""Exports from the serving database: any mart for a range of days, as CSV or Parquet, and the
FOCUS 1.2 cost and usage dataset (:mod:`workloads_etl.warehouse.focus`).

Files are streamed in record batches (a mart of any size fits in memory) and published
atomically: a reader of the output path sees the previous file or the whole new one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from workloads_etl.settings import DataPaths
from workloads_etl.warehouse import serving

FORMATS = ("csv", "parquet")
BATCH_ROWS = 100_000


class ExportError(ValueError):
    """An export that cannot be made as asked; the message says why."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    rows: int
    table: str


def marts(con: duckdb.DuckDBPyConnection) -> dict[str, str | None]:
    """``{table: date column}`` of the exportable tables (the serving catalogue)."""
    rows = con.execute(
        "select table_name, date_column from meta.tables where schema_name = 'marts' "
        "order by table_name"
    ).fetchall()
    return {name: column for name, column in rows}


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed over it when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_batches(reader: pa.RecordBatchReader, path: Path, fmt: str) -> int:
    """Stream ``reader`` into ``path`` as CSV (header, ISO dates) or Parquet (zstd)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    rows = 0
    with atomic_output(path) as tmp:
        if fmt == "parquet":
            with pq.ParquetWriter(tmp, reader.schema, compression="zstd") as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        else:
            with pacsv.CSVWriter(tmp, reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    rows += batch.num_rows
    return rows


def export_mart(
    paths: DataPaths,
    table: str,
    output: Path,
    fmt: str,
    start: date | None = None,
    end: date | None = None,
) -> ExportResult:
    """Write ``marts.<table>`` (its rows of ``[start, end]`` when it has a date column)."""
    with serving.connect(paths) as con:
        available = marts(con)
        if table not in available:
            raise ExportError(f"no mart {table!r}; one of {', '.join(available)}")
        column = available[table]
        where, params = "", []
        if column and (start or end):
            where = f' where "{column}" between ? and ?'
            params = [start or date.min, end or date.max]
        elif start or end:
            raise ExportError(f"marts.{table} has no date column: export it without --start/--end")
        reader = con.sql(
            f'select * from marts."{table}"{where} order by all',  # noqa: S608 - from the catalogue
            params=params,
        ).to_arrow_reader(BATCH_ROWS)
        rows = write_batches(reader, output, fmt)
    return ExportResult(output, rows, f"marts.{table}")
