"""Questions asked of a written lake partition, for the data-quality checks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import duckdb

from workloads_etl.lake.datasets import DATASETS
from workloads_etl.lake.parquet import (
    LakeLocation,
    PartitionNotFoundError,
    file_uri,
    read_commit,
)
from workloads_etl.lake.store import Store


def _connect(lake: LakeLocation) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that reads the lake's files (on an object store too)."""
    con = duckdb.connect()
    Store.at(lake).register_with(con)
    return con


def _scalar(lake: LakeLocation, sql: str, params: Sequence[object]) -> int:
    with _connect(lake) as con:
        row = con.execute(sql, list(params)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _files(lake: LakeLocation, dataset: str, day: date, cluster: str | None = None) -> list[str]:
    """The data files the partition's manifest names (with ``cluster``: that cluster's
    segment)."""
    manifest = read_commit(lake, dataset, day, cluster)
    if manifest is None:
        of = "" if cluster is None else f" (cluster {cluster})"
        raise PartitionNotFoundError(f"no lake partition {dataset} {day.isoformat()}{of}")
    return [file_uri(lake, f) for f in manifest.data_files]


def workloads_with_metrics(lake: LakeLocation, day: date, cluster: str | None = None) -> int:
    """Distinct workloads with at least one GPU_ALLOCATION sample in the day's partition
    (with ``cluster``: in that cluster's segment)."""
    return _scalar(
        lake,
        "select count(distinct workload_id) from read_parquet(?) "
        "where metric_type = 'GPU_ALLOCATION'",
        [_files(lake, "workload_metrics", day, cluster)],
    )


def duplicate_keys(lake: LakeLocation, dataset: str, day: date, cluster: str | None = None) -> int:
    """Rows of the lake partition (with ``cluster``: of that cluster's segment) that repeat
    its primary key (0 when the contract holds).

    A partition written in chunks is checked file by file (each file is small), then across
    files only for the workloads found in more than one file: so the check's memory is a
    file's, not the day's, and nothing is missed.
    """
    ds = DATASETS[dataset]
    cols = ", ".join(k for k in ds.primary_key if k != ds.partition_key)
    files = _files(lake, dataset, day, cluster)
    if len(files) == 1:
        return _scalar(
            lake,
            f"select count(*) - count(distinct ({cols})) from read_parquet(?)",  # noqa: S608
            [files],
        )
    with _connect(lake) as con:
        con.execute(
            "create temp table shared as select workload_id "
            "from (select distinct filename, workload_id from read_parquet(?, filename = true)) "
            "group by workload_id having count(*) > 1",
            [files],
        )
        duplicates = 0
        for f in files:  # workloads of one file only: their repeats are all inside it
            row = con.execute(
                f"select count(*) - count(distinct ({cols})) from read_parquet(?) "  # noqa: S608
                "where workload_id not in (select workload_id from shared)",
                [f],
            ).fetchone()
            duplicates += int(row[0]) if row else 0
        row = con.execute(  # workloads in several files: checked together
            f"select count(*) - count(distinct ({cols})) from read_parquet(?) "  # noqa: S608
            "where workload_id in (select workload_id from shared)",
            [files],
        ).fetchone()
        return duplicates + (int(row[0]) if row else 0)
