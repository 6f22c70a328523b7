"""The Parquet lake: one ``data.parquet`` plus ``_manifest.json`` per Hive partition.

Layout (Hive style, readable as is by DuckDB, Spark, Trino, pandas/pyarrow)::

    <lake>/<dataset>/<key>=<value>/data.parquet
    <lake>/quarantine/dataset=<source dataset>/quarantine_date=<day>/data.parquet

Following the Hive convention the partition columns live in the directory names only, not
inside the files (``read_parquet(..., hive_partitioning=true)`` adds them back).

Writes are atomic and deterministic: rows are sorted by the primary key, the file is written
to ``.data.parquet.<pid>.tmp`` in the partition directory (no ``*.parquet`` glob matches it),
fsynced and renamed over ``data.parquet``; a crash leaves the previous version intact. The
file holds no wall-clock time, so the same table gives a byte-identical file. The manifest
(rows, schema version, run id, sha256 of the file, ``written_at``) is written after the data.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from workloads_etl.lake.datasets import DATASETS, Dataset
from workloads_etl.lake.raw import fsync_dir
from workloads_etl.lake.schemas import SCHEMA_VERSION

DATA_FILE = "data.parquet"
MANIFEST_FILE = "_manifest.json"
ROW_GROUP_SIZE = 512 * 1024
ZSTD_LEVEL = 3


@dataclass(frozen=True)
class Manifest:
    dataset: str
    partition: dict[str, str]
    rows: int
    schema_version: int
    run_id: str
    written_at: str
    file: str
    sha256: str
    bytes: int
    columns: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        return cls(**d)


def _partition_values(ds: Dataset, day: date, extra_keys: dict[str, str] | None) -> dict[str, str]:
    extra = dict(extra_keys or {})
    values: dict[str, str] = {}
    for key in ds.partition_by:
        if key == ds.partition_key:
            values[key] = day.isoformat()
        elif key in extra:
            values[key] = str(extra.pop(key))
        else:
            raise ValueError(f"{ds.name} is partitioned by {key!r}: pass it in extra_keys")
    if extra:
        raise ValueError(f"{ds.name} has no partition keys {sorted(extra)}")
    for k, v in values.items():
        if not v or "/" in v or v in (".", ".."):
            raise ValueError(f"invalid partition value {k}={v!r}")
    return values


def partition_path(
    lake_dir: Path | str, dataset: str, day: date, extra_keys: dict[str, str] | None = None
) -> Path:
    ds = DATASETS[dataset]
    path = Path(lake_dir) / dataset
    for k, v in _partition_values(ds, day, extra_keys).items():
        path = path / f"{k}={v}"
    return path


def file_schema(dataset: str) -> pa.Schema:
    """The schema of the Parquet files: the dataset's schema minus its partition columns."""
    ds = DATASETS[dataset]
    schema = ds.schema
    for key in ds.partition_by:
        schema = schema.remove(schema.get_field_index(key))
    return schema.with_metadata({"workloads_etl.schema_version": str(SCHEMA_VERSION)})


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def prepare_table(dataset: str, table: pa.Table, day: date) -> pa.Table:
    """Conform ``table`` to the file schema: check, drop partition columns, sort by key."""
    ds = DATASETS[dataset]
    target = file_schema(dataset)
    missing = [n for n in target.names if n not in table.column_names]
    if missing:
        raise ValueError(f"{dataset}: table lacks columns {missing}")
    for key in ds.partition_by:
        if key in table.column_names and key == ds.partition_key and table.num_rows:
            bad = pc.sum(pc.not_equal(table[key], pa.scalar(day, table.schema.field(key).type)))
            if bad.as_py():
                raise ValueError(f"{dataset}: {bad.as_py()} rows have {key} != {day.isoformat()}")
    table = table.select(target.names).cast(target)
    sort_keys = [k for k in ds.primary_key if k in target.names] or target.names[:1]
    if table.num_rows > 1:
        codes = [_order_codes(table.column(k)) for k in sort_keys]
        if not _is_sorted(codes):
            # Stable, like Arrow's sort: equal keys keep their order.
            table = table.take(pa.array(np.lexsort(codes[::-1])))
    return table.replace_schema_metadata(target.metadata)


def _order_codes(column: pa.ChunkedArray) -> np.ndarray:
    """int64 codes whose order is the column's ascending order with nulls last (Arrow's
    default), so multi-key sorting and sortedness checks work on integers, not strings."""
    arr = column.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    typ = arr.type
    if (
        pa.types.is_string(typ)
        or pa.types.is_large_string(typ)
        or pa.types.is_binary(typ)
        or pa.types.is_large_binary(typ)
    ):
        enc = pc.dictionary_encode(arr)
        dict_rank = pc.rank(enc.dictionary, sort_keys="ascending", tiebreaker="dense")
        ranks = np.asarray(dict_rank.to_numpy(), dtype=np.int64) - 1  # 1-based ranks
        ranks = np.append(ranks, ranks.size)  # nulls after every value
        idx = pc.fill_null(enc.indices.cast(pa.int64()), ranks.size - 1).to_numpy()
        return ranks[idx]
    if (
        pa.types.is_integer(typ) or pa.types.is_temporal(typ) or pa.types.is_boolean(typ)
    ) and arr.null_count == 0:
        ints = (
            arr.cast(pa.int64())
            if not pa.types.is_temporal(typ)
            else arr.view(pa.int64() if typ.bit_width == 64 else pa.int32()).cast(pa.int64())
        )
        return np.asarray(ints.to_numpy(), dtype=np.int64)
    ranks = pc.rank(arr, sort_keys="ascending", null_placement="at_end", tiebreaker="dense")
    return np.asarray(ranks.to_numpy(), dtype=np.int64)


def _is_sorted(codes: list[np.ndarray]) -> bool:
    """Whether rows are in ascending lexicographic order of the key codes."""
    ok = np.ones(len(codes[0]) - 1, dtype=bool)  # equal on every key: in order
    for c in reversed(codes):
        a, b = c[:-1], c[1:]
        ok = (a < b) | ((a == b) & ok)
    return bool(ok.all())


def write_partition(
    lake_dir: Path | str,
    dataset: str,
    table: pa.Table,
    day: date,
    run_id: str,
    extra_keys: dict[str, str] | None = None,
) -> Manifest:
    """Atomically replace one partition with ``table``; return its manifest."""
    directory = partition_path(lake_dir, dataset, day, extra_keys)
    directory.mkdir(parents=True, exist_ok=True)
    prepared = prepare_table(dataset, table, day)
    final = directory / DATA_FILE
    tmp = directory / f".{DATA_FILE}.{os.getpid()}.tmp"
    try:
        with tmp.open("wb") as sink:
            pq.write_table(
                prepared,
                sink,
                row_group_size=ROW_GROUP_SIZE,
                compression="zstd",
                compression_level=ZSTD_LEVEL,
                use_dictionary=True,
                write_statistics=True,
                version="2.6",
            )
            sink.flush()
            os.fsync(sink.fileno())
        digest = _sha256(tmp)
        size = tmp.stat().st_size
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    manifest = Manifest(
        dataset=dataset,
        partition=_partition_values(DATASETS[dataset], day, extra_keys),
        rows=prepared.num_rows,
        schema_version=SCHEMA_VERSION,
        run_id=run_id,
        written_at=datetime.now(UTC).isoformat(),
        file=DATA_FILE,
        sha256=digest,
        bytes=size,
        columns=prepared.column_names,
    )
    _atomic_write_text(directory / MANIFEST_FILE, manifest.to_json())
    return manifest


def read_manifest(
    lake_dir: Path | str, dataset: str, day: date, extra_keys: dict[str, str] | None = None
) -> Manifest | None:
    path = partition_path(lake_dir, dataset, day, extra_keys) / MANIFEST_FILE
    if not path.is_file():
        return None
    return Manifest.from_dict(json.loads(path.read_text(encoding="utf-8")))


def read_partition(
    lake_dir: Path | str, dataset: str, day: date, extra_keys: dict[str, str] | None = None
) -> pa.Table:
    """The partition's rows with the partition columns added back (full dataset schema)."""
    ds = DATASETS[dataset]
    directory = partition_path(lake_dir, dataset, day, extra_keys)
    table = pq.ParquetFile(directory / DATA_FILE).read()
    values = _partition_values(ds, day, extra_keys)
    for key in ds.partition_by:
        typ = ds.schema.field(key).type
        scalar = pa.scalar(day, typ) if key == ds.partition_key else pa.scalar(values[key], typ)
        table = table.append_column(ds.schema.field(key), pa.repeat(scalar, table.num_rows))
    return table.select(ds.schema.names).cast(ds.schema)


def list_partitions(lake_dir: Path | str, dataset: str) -> list[dict[str, str]]:
    """Partitions of ``dataset`` that hold a data file, as ``{key: value}``, sorted."""
    ds = DATASETS[dataset]
    base = Path(lake_dir) / dataset
    pattern = "/".join(f"{k}=*" for k in ds.partition_by) + f"/{DATA_FILE}"
    found = []
    for p in base.glob(pattern):
        rel = p.parent.relative_to(base).parts
        found.append(dict(part.split("=", 1) for part in rel))
    return sorted(found, key=lambda d: [d[k] for k in ds.partition_by])
