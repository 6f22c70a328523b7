"""The FOCUS 1.2 cost and usage export for FinOps tools.

The dataset itself is the mart ``marts.focus_cost_and_usage`` (built and tested by dbt, its
billed cost conserved against the daily fact); this module writes the rows of a range of
days from the serving database. In CSV, date-times are written as ``2026-11-17T00:00:00Z``
and decimals keep their point, as FOCUS readers expect; Parquet keeps the typed columns.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from workloads_etl.settings import DataPaths
from workloads_etl.warehouse import serving
from workloads_etl.warehouse.exports import BATCH_ROWS, ExportResult, write_batches

FOCUS_TABLE = "focus_cost_and_usage"
DATE_COLUMN = "x_UsageDate"


def export_focus(
    paths: DataPaths,
    output: Path,
    fmt: str,
    start: date | None = None,
    end: date | None = None,
) -> ExportResult:
    """Write the FOCUS charges of ``[start, end]`` (every day when not given)."""
    with serving.connect(paths) as con:
        columns = [
            (name, kind)
            for name, kind in con.execute(
                "select column_name, data_type from duckdb_columns() "
                "where schema_name = 'marts' and table_name = ? order by column_index",
                [FOCUS_TABLE],
            ).fetchall()
        ]
        select = ", ".join(
            f"strftime(\"{name}\" at time zone 'UTC', '%Y-%m-%dT%H:%M:%SZ') as \"{name}\""
            if fmt == "csv" and kind.startswith("TIMESTAMP")
            else f'"{name}"'
            for name, kind in columns
        )
        reader = con.sql(
            f"select {select} from marts.{FOCUS_TABLE} "  # noqa: S608 - names from the catalogue
            f'where "{DATE_COLUMN}" between ? and ? '
            f'order by "{DATE_COLUMN}", "ResourceId", "SkuId"',
            params=[start or date.min, end or date.max],
        ).to_arrow_reader(BATCH_ROWS)
        rows = write_batches(reader, output, fmt)
    return ExportResult(output, rows, f"marts.{FOCUS_TABLE} (FOCUS 1.2)")
