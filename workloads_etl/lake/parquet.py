"""The Parquet lake: Hive partitions whose content is exactly what their manifest names.

Layout (Hive style, readable as is by DuckDB, Spark, Trino, pandas/pyarrow)::

    <lake>/<dataset>/<key>=<day>/part-<sha256 prefix>.parquet     the partition's rows
    <lake>/<dataset>/<key>=<day>/_manifest.json                   the partition's commit
    <lake>/quarantine/dataset=<dataset>/quarantine_date=<day>/part-<sha256 prefix>.parquet

Following the Hive convention the partition columns live in the directory names only, not
inside the files (``read_parquet(..., hive_partitioning=true)`` adds them back).

**One commit per partition.** A dataset-day and its quarantine rows are written as one
commit:

1. every file is written to ``.part.<pid>.tmp`` beside its final place (no ``*.parquet``
   glob matches it), fsynced and renamed to ``part-<first 16 hex digits of its
   sha256>.parquet``: a new name, so nothing the current manifest names is touched;
2. the directories are fsynced, then ONE manifest (format 2) naming every file of the
   commit (path relative to the lake, role, rows, bytes, sha256) is written to a temporary
   file, fsynced and renamed over ``_manifest.json``. That rename is the commit point;
3. the files of the previous commit that the new manifest no longer names are deleted.

A crash before step 2 leaves the previous commit (and files no manifest names); a crash
after it, the new one (and the previous commit's files). Readers trust only what the
manifest names; ``workloads-etl gc`` (:mod:`workloads_etl.lake.housekeeping`) removes the
files no manifest names.

**Quarantine files stay in the quarantine tree**, under content-addressed names like the
data: the quarantine remains a Hive dataset of its own (a glob over
``quarantine/**/*.parquet`` gives its ``dataset`` and ``quarantine_date`` columns), a glob
of a dataset never counts quarantine rows, and the source partition's manifest names them,
since each source partition owns its quarantine rows. A day without quarantine rows has no
quarantine file.

Writes are deterministic: rows are sorted by the primary key and the files hold no
wall-clock time, so the same table gives byte-identical files under the same names, and
re-running a day rewrites the same files. A partition may hold several data files: a large
day is written in chunks (:class:`PartitionWriter`), each a file sorted by the key, with the
chunks holding disjoint keys (the metrics of one workload are never split).

Manifests of format 1 (one ``file`` and ``sha256``, ``data.parquet``, and the quarantine
partition with a manifest of its own) are still read, as if they were one commit.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from workloads_etl.lake.datasets import DATASETS, EXTRACTED, Dataset
from workloads_etl.lake.raw import fsync_dir
from workloads_etl.lake.schemas import SCHEMA_VERSION

MANIFEST_FILE = "_manifest.json"
MANIFEST_FORMAT = 2
PART_PREFIX = "part-"
PART_SUFFIX = ".parquet"
DATA = "data"  # the role of a file holding the partition's rows
QUARANTINE = "quarantine"  # the role of a file holding its quarantine rows
ROW_GROUP_SIZE = 512 * 1024
ZSTD_LEVEL = 3


class ManifestError(ValueError):
    """A manifest that cannot be read: not JSON, an unknown format, a path outside the lake."""


class PartitionNotFoundError(FileNotFoundError):
    """The lake has no committed partition (no manifest) for the dataset and day."""


class LakeIntegrityError(RuntimeError):
    """A file a manifest names is missing or does not match its recorded sha256."""


def rebuild_command(dataset: str, day: date, run_id: str | None = None) -> str:
    """The command that rebuilds a partition (and its quarantine rows) from its raw run."""
    run = f" --run-id {run_id}" if run_id else ""
    return f"workloads-etl renormalise --dataset {dataset} --day {day.isoformat()}{run}"


@dataclass(frozen=True)
class ManifestFile:
    """One file of a partition commit."""

    path: str  # relative to the lake root, "/"-separated
    role: str  # DATA or QUARANTINE
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """One partition commit: every file of a dataset-day, its quarantine file included."""

    dataset: str
    partition: dict[str, str]
    rows: int  # rows of the data files
    schema_version: int
    run_id: str  # the raw run the partition was normalised from
    written_at: str
    files: tuple[ManifestFile, ...]
    columns: list[str] = field(default_factory=list)
    format: int = MANIFEST_FORMAT

    @property
    def data_files(self) -> tuple[ManifestFile, ...]:
        return tuple(f for f in self.files if f.role == DATA)

    @property
    def quarantine_files(self) -> tuple[ManifestFile, ...]:
        return tuple(f for f in self.files if f.role == QUARANTINE)

    @property
    def quarantined(self) -> int:
        return sum(f.rows for f in self.quarantine_files)

    @property
    def bytes(self) -> int:
        """Bytes of the data files."""
        return sum(f.bytes for f in self.data_files)

    @property
    def day(self) -> date:
        return date.fromisoformat(self.partition[DATASETS[self.dataset].partition_key])

    def to_json(self) -> str:
        doc = {
            "format": self.format,
            "dataset": self.dataset,
            "partition": self.partition,
            "rows": self.rows,
            "quarantined": self.quarantined,
            "schema_version": self.schema_version,
            "run_id": self.run_id,
            "written_at": self.written_at,
            "columns": self.columns,
            "files": [asdict(f) for f in self.files],
        }
        return json.dumps(doc, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any], directory: str) -> Manifest:
        """A manifest of either format; ``directory`` is its partition's, relative to the lake
        (format 1 names its file relative to it)."""
        fmt = int(d.get("format", 1))
        if fmt > MANIFEST_FORMAT:
            raise ManifestError(f"manifest format {fmt} is newer than this version reads")
        if fmt == 1:
            role = QUARANTINE if d["dataset"] == "quarantine" else DATA
            only = ManifestFile(
                f"{directory}/{d['file']}", role, int(d["rows"]), int(d["bytes"]), d["sha256"]
            )
            files: tuple[ManifestFile, ...] = (only,)
        else:
            files = tuple(
                ManifestFile(f["path"], f["role"], int(f["rows"]), int(f["bytes"]), f["sha256"])
                for f in d["files"]
            )
        return cls(
            dataset=d["dataset"],
            partition=dict(d["partition"]),
            rows=int(d["rows"]),
            schema_version=int(d["schema_version"]),
            run_id=d["run_id"],
            written_at=d["written_at"],
            files=files,
            columns=list(d.get("columns") or []),
            format=fmt,
        )


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
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


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


def _write_file(lake: Path, directory: Path, table: pa.Table, role: str) -> ManifestFile:
    """Write ``table`` under its content-addressed name in ``directory`` (fsynced)."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".part.{os.getpid()}.tmp"
    try:
        with tmp.open("wb") as sink:
            pq.write_table(
                table,
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
        final = directory / f"{PART_PREFIX}{digest[:16]}{PART_SUFFIX}"
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ManifestFile(final.relative_to(lake).as_posix(), role, table.num_rows, size, digest)


def _fsync_up_to(lake: Path, directory: Path) -> None:
    """Make the files renamed into ``directory``, and the directories made for it, durable."""
    fsync_dir(directory)
    for parent in directory.relative_to(lake).parents:
        fsync_dir(lake / parent)


def quarantine_path(lake_dir: Path | str, dataset: str, day: date) -> Path:
    """The quarantine directory of a dataset-day."""
    return partition_path(lake_dir, "quarantine", day, {"dataset": dataset})


class PartitionWriter:
    """Writes one partition commit in chunks: each :meth:`write` adds data files, and
    :meth:`commit` publishes them, with the quarantine rows, under one manifest.

    Memory stays bounded by the chunk: every chunk becomes a file of its own as it comes
    (sorted by the primary key within the file; chunks hold disjoint keys, see the
    normalisers). Quarantine rows are gathered and written as few files as their size allows.
    Nothing is visible to readers before the commit; a writer that is dropped without one
    leaves only files no manifest names, for ``workloads-etl gc``.
    """

    QUARANTINE_ROWS_PER_FILE = 100_000

    def __init__(self, lake_dir: Path | str, dataset: str, day: date, run_id: str) -> None:
        if dataset not in DATASETS or not DATASETS[dataset].extracted:
            raise ValueError(f"{dataset!r} is not a dataset of its own partitions")
        self.lake = Path(lake_dir)
        self.dataset = dataset
        self.day = day
        self.run_id = run_id
        self.directory = partition_path(self.lake, dataset, day)
        self.q_directory = quarantine_path(self.lake, dataset, day)
        self.rows = 0
        self.quarantined = 0
        self._files: list[ManifestFile] = []
        self._names: set[str] = set()
        self._quarantine: list[pa.Table] = []
        self._pending_quarantine = 0
        self._columns: list[str] = file_schema(dataset).names

    def write(self, table: pa.Table, quarantine: pa.Table | None = None) -> None:
        """Add ``table``'s rows as a data file (none for an empty table) and gather
        ``quarantine``'s rows."""
        if table.num_rows:
            self._add(self.directory, prepare_table(self.dataset, table, self.day), DATA)
        if quarantine is not None and quarantine.num_rows:
            self._quarantine.append(quarantine)
            self._pending_quarantine += quarantine.num_rows
            if self._pending_quarantine >= self.QUARANTINE_ROWS_PER_FILE:
                self._flush_quarantine()

    def _add(self, directory: Path, prepared: pa.Table, role: str) -> None:
        f = _write_file(self.lake, directory, prepared, role)
        if f.path in self._names:  # the same content twice: one file holds it
            raise ValueError(f"{self.dataset} {self.day}: two chunks hold identical rows")
        self._names.add(f.path)
        self._files.append(f)
        if role == DATA:
            self.rows += prepared.num_rows
        else:
            self.quarantined += prepared.num_rows

    def _flush_quarantine(self) -> None:
        if not self._quarantine:
            return
        rows = pa.concat_tables(self._quarantine)
        self._quarantine, self._pending_quarantine = [], 0
        self._add(self.q_directory, prepare_table("quarantine", rows, self.day), QUARANTINE)

    def commit(self) -> Manifest:
        """Publish the files written so far as the partition (one manifest rename)."""
        try:
            previous = read_manifest(self.lake, self.dataset, self.day)
        except ManifestError:
            previous = None  # unreadable: replaced; its files are left to gc
        self._flush_quarantine()
        if not any(f.role == DATA for f in self._files):  # an empty day: one empty file
            empty = DATASETS[self.dataset].schema.empty_table()
            self._add(self.directory, prepare_table(self.dataset, empty, self.day), DATA)
        if any(f.role == QUARANTINE for f in self._files):
            _fsync_up_to(self.lake, self.q_directory)
        _fsync_up_to(self.lake, self.directory)
        manifest = Manifest(
            dataset=self.dataset,
            partition=_partition_values(DATASETS[self.dataset], self.day, None),
            rows=self.rows,
            schema_version=SCHEMA_VERSION,
            run_id=self.run_id,
            written_at=datetime.now(UTC).isoformat(),
            files=tuple(sorted(self._files, key=lambda f: f.role)),  # data first
            columns=self._columns,
        )
        _atomic_write_text(self.directory / MANIFEST_FILE, manifest.to_json())  # the commit
        if previous is not None:
            _drop_previous(self.lake, previous, manifest)
        return manifest


def write_partition(
    lake_dir: Path | str,
    dataset: str,
    table: pa.Table,
    day: date,
    run_id: str,
    quarantine: pa.Table | None = None,
) -> Manifest:
    """Replace one partition and its quarantine rows with one commit; return its manifest.

    ``quarantine`` holds the rows of the quarantine schema (None: the day has none).
    """
    writer = PartitionWriter(lake_dir, dataset, day, run_id)
    writer.write(table, quarantine)
    return writer.commit()


def _drop_previous(lake: Path, previous: Manifest, current: Manifest) -> None:
    """Delete the files of ``previous`` that ``current`` no longer names (after the commit)."""
    named = {f.path for f in current.files}
    stale = [file_path(lake, f) for f in previous.files if f.path not in named]
    if previous.format == 1:  # the quarantine partition had a manifest of its own
        stale.append(quarantine_path(lake, previous.dataset, previous.day) / MANIFEST_FILE)
    for path in stale:
        path.unlink(missing_ok=True)


def file_path(lake_dir: Path | str, f: ManifestFile) -> Path:
    """Where a file a manifest names lives; refuses paths outside the lake."""
    rel = PurePosixPath(f.path)
    if not rel.parts or rel.is_absolute() or ".." in rel.parts:
        raise ManifestError(f"a manifest names a path outside the lake: {f.path!r}")
    return Path(lake_dir, *rel.parts)


def _load_manifest(lake: Path, directory: Path) -> Manifest | None:
    path = directory / MANIFEST_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        manifest = Manifest.from_dict(json.loads(text), directory.relative_to(lake).as_posix())
        for f in manifest.files:
            file_path(lake, f)
    except (ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"{path}: not a readable manifest ({exc})") from None
    return manifest


def read_manifest(lake_dir: Path | str, dataset: str, day: date) -> Manifest | None:
    """The committed manifest of a dataset-day (None: no partition), its quarantine file
    included. A format-1 partition is read with its quarantine partition's manifest."""
    if dataset == "quarantine":
        raise ValueError("quarantine rows are committed with their source partition's manifest")
    lake = Path(lake_dir)
    manifest = _load_manifest(lake, partition_path(lake, dataset, day))
    if manifest is None or manifest.format > 1:
        return manifest
    q_manifest = _load_manifest(lake, quarantine_path(lake, dataset, day))
    if q_manifest is None:
        return manifest
    files = manifest.files + tuple(
        ManifestFile(f.path, QUARANTINE, f.rows, f.bytes, f.sha256) for f in q_manifest.files
    )
    return replace(manifest, files=files)


def verify_files(lake_dir: Path | str, manifest: Manifest) -> None:
    """Check every file the manifest names against its size and sha256; raise
    :class:`LakeIntegrityError` naming the file and the command that rebuilds it."""
    fix = rebuild_command(manifest.dataset, manifest.day, manifest.run_id)
    for f in manifest.files:
        path = file_path(lake_dir, f)
        if not path.is_file():
            raise LakeIntegrityError(
                f"lake file {path} is missing, yet the manifest of {manifest.dataset} "
                f"{manifest.day} names it; rebuild the partition: {fix}"
            )
        digest = _sha256(path)
        if digest != f.sha256:
            raise LakeIntegrityError(
                f"lake file {path} does not match its manifest (sha256 {digest[:12]}..., "
                f"expected {f.sha256[:12]}...); rebuild the partition: {fix}"
            )


def conform(table: pa.Table, target: pa.Schema) -> pa.Table:
    """``table`` in ``target``'s columns and types: a column a file of an older schema
    version lacks is null, a narrower type is widened."""
    columns = [
        table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
        for f in target
    ]
    return pa.Table.from_arrays(columns, schema=target)


def _read_files(
    lake: Path,
    files: tuple[ManifestFile, ...],
    dataset: str,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    target = file_schema(dataset).remove_metadata()
    if columns is not None:
        target = pa.schema([f for f in target if f.name in columns])
    tables = []
    for f in files:
        pf = pq.ParquetFile(file_path(lake, f))
        present = [n for n in target.names if n in pf.schema_arrow.names]
        tables.append(conform(pf.read(columns=present), target))
    return pa.concat_tables(tables) if tables else target.empty_table()


def read_partition(
    lake_dir: Path | str,
    dataset: str,
    day: date,
    extra_keys: dict[str, str] | None = None,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """The partition's rows with the partition columns added back (full dataset schema, or
    only ``columns``), read from the files its manifest names; older schema versions are
    conformed.

    The quarantine rows of a dataset-day: ``read_partition(lake, "quarantine", day,
    {"dataset": <dataset>})``."""
    lake = Path(lake_dir)
    ds = DATASETS[dataset]
    values = _partition_values(ds, day, extra_keys)
    if dataset == "quarantine":
        source = read_manifest(lake, values["dataset"], day)
        table = _read_files(lake, source.quarantine_files if source else (), dataset, columns)
    else:
        manifest = read_manifest(lake, dataset, day)
        if manifest is None:
            raise PartitionNotFoundError(
                f"no lake partition {dataset} {day.isoformat()}: "
                f"{partition_path(lake, dataset, day) / MANIFEST_FILE} is missing"
            )
        table = _read_files(lake, manifest.data_files, dataset, columns)
    for key in ds.partition_by:
        if columns is not None and key not in columns:
            continue
        typ = ds.schema.field(key).type
        scalar = pa.scalar(day, typ) if key == ds.partition_key else pa.scalar(values[key], typ)
        table = table.append_column(ds.schema.field(key), pa.repeat(scalar, table.num_rows))
    schema = (
        ds.schema if columns is None else pa.schema([f for f in ds.schema if f.name in columns])
    )
    return table.select(schema.names).cast(schema)


def head_of_partition(
    lake_dir: Path | str, dataset: str, day: date, columns: Sequence[str], n: int
) -> pa.Table:
    """The first ``n`` rows of the partition's first data file (``columns`` only), read
    without loading the partition."""
    lake = Path(lake_dir)
    manifest = read_manifest(lake, dataset, day)
    files = manifest.data_files if manifest else ()
    target = pa.schema([f for f in file_schema(dataset).remove_metadata() if f.name in columns])
    for f in files:
        pf = pq.ParquetFile(file_path(lake, f))
        for batch in pf.iter_batches(batch_size=n, columns=target.names):
            return conform(pa.Table.from_batches([batch]), target).slice(0, n)
    return target.empty_table()


def _manifests(lake: Path, dataset: str) -> list[Manifest]:
    ds = DATASETS[dataset]
    base = lake / dataset
    pattern = "/".join(f"{k}=*" for k in ds.partition_by) + f"/{MANIFEST_FILE}"
    found = []
    for p in base.glob(pattern):
        try:
            day = date.fromisoformat(p.parent.name.split("=", 1)[1])
        except ValueError:
            continue  # not a partition of this lake
        manifest = read_manifest(lake, dataset, day)
        if manifest is not None:
            found.append(manifest)
    return sorted(found, key=lambda m: m.day)


def manifests(lake_dir: Path | str, dataset: str | None = None) -> list[Manifest]:
    """The committed manifests of a dataset (default: of every dataset), by day."""
    names = [dataset] if dataset else list(EXTRACTED)
    return [m for name in names for m in _manifests(Path(lake_dir), name)]


def list_partitions(lake_dir: Path | str, dataset: str) -> list[dict[str, str]]:
    """Committed partitions of ``dataset`` as ``{key: value}``, sorted; for the quarantine,
    the dataset-days whose commit has quarantine rows."""
    if dataset == "quarantine":
        return [
            {"dataset": m.dataset, "quarantine_date": m.day.isoformat()}
            for m in sorted(manifests(lake_dir), key=lambda m: (m.dataset, m.day))
            if m.quarantine_files
        ]
    return [dict(m.partition) for m in manifests(lake_dir, dataset)]


def lake_files(lake_dir: Path | str, dataset: str) -> list[Path]:
    """Every file of ``dataset`` the manifests name, by day: what a reader should read
    (``read_parquet([...])``) rather than a glob, which may see files of no commit."""
    lake = Path(lake_dir)
    if dataset == "quarantine":
        return [file_path(lake, f) for m in manifests(lake) for f in m.quarantine_files]
    return [file_path(lake, f) for m in manifests(lake, dataset) for f in m.data_files]
