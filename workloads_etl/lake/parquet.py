"""The Parquet lake: Hive partitions whose content is exactly what their manifest names.

Layout (Hive style, readable as is by DuckDB, Spark, Trino, pandas/pyarrow), on a local disk
or under a prefix of an S3-API store::

    <lake>/<dataset>/<key>=<day>/part-<sha256 prefix>.parquet     the partition's rows
    <lake>/<dataset>/<key>=<day>/_manifest.json                   the partition's commit
    <lake>/quarantine/dataset=<dataset>/quarantine_date=<day>/part-<sha256 prefix>.parquet

Following the Hive convention the partition columns live in the directory names only, not
inside the files (``read_parquet(..., hive_partitioning=true)`` adds them back).

**One commit per partition.** A dataset-day and its quarantine rows are written as one
commit, the same way on a local disk and on an object store (:mod:`workloads_etl.lake.store`,
``WORKLOADS_ETL_LAKE_URL``), which has no rename:

1. every file is serialised, named ``part-<first 16 hex digits of its sha256>.parquet``
   and published whole under that name (a local file is written to ``.<name>.<pid>.tmp``,
   fsynced and renamed; an object is one PUT or one completed multipart upload): a new name,
   so nothing the current manifest names is touched;
2. then ONE manifest (format 2) naming every file of the commit (path relative to the lake,
   role, rows, bytes, sha256) is published over ``_manifest.json``, the same way. That
   replacement is the commit point: a reader of the manifest sees the previous commit or
   the new one, never both and never neither;
3. the files of the previous commit that the new manifest no longer names are deleted.

A crash before step 2 leaves the previous commit (and files no manifest names); a crash
after it, the new one (and the previous commit's files). Readers trust only what the
manifest names (:func:`lake_files`, :func:`read_partition`): a plain glob of the directory
may count a crashed writer's files. ``workloads-etl gc``
(:mod:`workloads_etl.lake.housekeeping`) removes the files no manifest names.

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

import contextlib
import hashlib
import io
import json
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
from workloads_etl.lake.schemas import SCHEMA_VERSION
from workloads_etl.lake.store import Store

# Where a lake is: a Store, a local directory, or a URL (s3://bucket/prefix/lake).
LakeLocation = Store | Path | str

MANIFEST_FILE = "_manifest.json"
SEGMENTS_DIR = "_segments"  # the segments of a partition written cluster by cluster
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


def rebuild_command_of(manifest: Manifest) -> str:
    """:func:`rebuild_command` of a commit: its raw run, or, for a day committed from
    clusters' segments, the day (each segment is rebuilt from its own run)."""
    run = None if manifest.segments else manifest.run_id
    return rebuild_command(manifest.dataset, manifest.day, run)


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
    # cluster id -> the raw run of that cluster: the segments a composed commit unites (see
    # commit_segments), or the one cluster of a segment; empty for a whole-day commit
    segments: dict[str, str] = field(default_factory=dict)

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
        if self.segments:
            doc["segments"] = dict(self.segments)
        return json.dumps(doc, indent=2, sort_keys=True)

    @property
    def runs(self) -> set[str]:
        """The raw runs the commit was normalised from: one, or one per segment."""
        return set(self.segments.values()) if self.segments else {self.run_id}

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
            segments={str(k): str(v) for k, v in (d.get("segments") or {}).items()},
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


def partition_dir(dataset: str, day: date, extra_keys: dict[str, str] | None = None) -> str:
    """The partition's directory, relative to the lake (``dataset/key=value/...``)."""
    values = _partition_values(DATASETS[dataset], day, extra_keys)
    return "/".join([dataset, *(f"{k}={v}" for k, v in values.items())])


def partition_path(
    lake_dir: LakeLocation, dataset: str, day: date, extra_keys: dict[str, str] | None = None
) -> Path:
    """The partition's directory in a local lake."""
    return Store.at(lake_dir).directory / partition_dir(dataset, day, extra_keys)


def partition_uri(lake_dir: LakeLocation, dataset: str, day: date) -> str:
    """The partition's directory as messages name it (a local path or a URL)."""
    return Store.at(lake_dir).uri(partition_dir(dataset, day))


def file_schema(dataset: str) -> pa.Schema:
    """The schema of the Parquet files: the dataset's schema minus its partition columns."""
    ds = DATASETS[dataset]
    schema = ds.schema
    for key in ds.partition_by:
        schema = schema.remove(schema.get_field_index(key))
    return schema.with_metadata({"workloads_etl.schema_version": str(SCHEMA_VERSION)})


def _sha256(store: Store, path: str) -> str:
    h = hashlib.sha256()
    with store.open(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def _write_file(lake: Store, directory: str, table: pa.Table, role: str) -> ManifestFile:
    """Write ``table`` under its content-addressed name in ``directory`` (relative to the
    lake): serialised in memory (one chunk's compressed bytes), named by its sha256, then
    published whole (:meth:`Store.writer`)."""
    sink = io.BytesIO()
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
    data = sink.getbuffer()
    digest = hashlib.sha256(data).hexdigest()
    path = f"{directory}/{PART_PREFIX}{digest[:16]}{PART_SUFFIX}"
    with lake.writer(path) as out:
        out.write(data)
    return ManifestFile(path, role, table.num_rows, len(data), digest)


def quarantine_dir(dataset: str, day: date) -> str:
    """The quarantine directory of a dataset-day, relative to the lake."""
    return partition_dir("quarantine", day, {"dataset": dataset})


def quarantine_path(lake_dir: LakeLocation, dataset: str, day: date) -> Path:
    """The quarantine directory of a dataset-day in a local lake."""
    return Store.at(lake_dir).directory / quarantine_dir(dataset, day)


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

    def __init__(
        self,
        lake_dir: LakeLocation,
        dataset: str,
        day: date,
        run_id: str,
        cluster: str | None = None,
    ) -> None:
        if dataset not in DATASETS or not DATASETS[dataset].extracted:
            raise ValueError(f"{dataset!r} is not a dataset of its own partitions")
        self.lake = Store.at(lake_dir)
        self.dataset = dataset
        self.day = day
        self.run_id = run_id
        self.cluster = None if cluster is None else _segment_name(cluster)
        self.directory = partition_dir(dataset, day)
        self.q_directory = quarantine_dir(dataset, day)
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

    def _add(self, directory: str, prepared: pa.Table, role: str) -> None:
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
        """Publish the files written so far as the partition (one manifest rename), or, for
        a writer of one cluster, as that cluster's segment of the partition (invisible to
        readers until :func:`commit_segments`)."""
        if self.cluster is not None:
            return self._commit_segment()
        manifest = _publish(self.lake, self._manifest({}))
        # A whole-day commit supersedes the segments of the day (their files are gc's).
        for cluster in list_segments(self.lake, self.dataset, self.day):
            self.lake.delete(segment_path(self.dataset, self.day, cluster))
        return manifest

    def _manifest(self, segments: dict[str, str]) -> Manifest:
        self._flush_quarantine()
        if not any(f.role == DATA for f in self._files):  # an empty day: one empty file
            empty = DATASETS[self.dataset].schema.empty_table()
            self._add(self.directory, prepare_table(self.dataset, empty, self.day), DATA)
        return Manifest(
            dataset=self.dataset,
            partition=_partition_values(DATASETS[self.dataset], self.day, None),
            rows=self.rows,
            schema_version=SCHEMA_VERSION,
            run_id=self.run_id,
            written_at=datetime.now(UTC).isoformat(),
            files=tuple(sorted(self._files, key=lambda f: f.role)),  # data first
            columns=self._columns,
            segments=segments,
        )

    def _commit_segment(self) -> Manifest:
        """The cluster's segment: its files stay in the partition's directory, named by the
        segment only. The previous segment's files are not deleted: the partition's
        committed manifest may still name them (gc takes them once nothing does)."""
        assert self.cluster is not None
        manifest = self._manifest({self.cluster: self.run_id})
        path = segment_path(self.dataset, self.day, self.cluster)
        self.lake.write_bytes(path, manifest.to_json().encode())
        return manifest


def _segment_name(cluster: str) -> str:
    if not cluster or "/" in cluster or cluster in (".", "..") or cluster != cluster.strip():
        raise ValueError(f"invalid cluster id {cluster!r} for a segment")
    return cluster


def segment_dir(dataset: str, day: date) -> str:
    """Where the segments of a dataset-day are, relative to the lake."""
    return f"{partition_dir(dataset, day)}/{SEGMENTS_DIR}"


def segment_path(dataset: str, day: date, cluster: str) -> str:
    """The segment of one cluster of a dataset-day, relative to the lake."""
    return f"{segment_dir(dataset, day)}/cluster={_segment_name(cluster)}.json"


class SegmentMissingError(LookupError):
    """A cluster has no segment of the dataset-day to commit."""


def read_segment(lake_dir: LakeLocation, dataset: str, day: date, cluster: str) -> Manifest | None:
    """The segment one cluster's extraction wrote of a dataset-day (None: none yet)."""
    lake = Store.at(lake_dir)
    return _load_manifest(lake, partition_dir(dataset, day), segment_path(dataset, day, cluster))


def read_commit(
    lake_dir: LakeLocation, dataset: str, day: date, cluster: str | None = None
) -> Manifest | None:
    """The committed manifest of a dataset-day, or with ``cluster`` that cluster's segment."""
    if cluster is None:
        return read_manifest(lake_dir, dataset, day)
    return read_segment(lake_dir, dataset, day, cluster)


def list_segments(lake_dir: LakeLocation, dataset: str, day: date) -> list[str]:
    """The clusters with a segment of a dataset-day, sorted."""
    lake = Store.at(lake_dir)
    prefix = f"{segment_dir(dataset, day)}/cluster="
    return sorted(
        e.path[len(prefix) : -len(".json")]
        for e in lake.list(segment_dir(dataset, day), suffix=".json")
        if e.path.startswith(prefix)
    )


def commit_segments(
    lake_dir: LakeLocation, dataset: str, day: date, clusters: Sequence[str], run_id: str
) -> Manifest:
    """Commit the segments of ``clusters`` as the partition of a dataset-day: one manifest
    naming every file of every segment (their rows and quarantine rows together), published
    in one write like any commit, so readers see every cluster's rows at once or none.
    Raises :class:`SegmentMissingError` naming a cluster that has no segment: committing
    without it would drop that cluster's rows from the day. ``run_id`` is the committing
    run's; the manifest's ``segments`` name each cluster's raw run."""
    if not clusters:
        raise ValueError("commit_segments needs at least one cluster")
    lake = Store.at(lake_dir)
    names = sorted(set(clusters))
    segments: list[Manifest] = []
    for cluster in names:
        segment = read_segment(lake, dataset, day, cluster)
        if segment is None:
            raise SegmentMissingError(
                f"{dataset} {day.isoformat()}: cluster {cluster} has no segment yet; extract "
                "that cluster's day before committing the day"
            )
        segments.append(segment)
    files: dict[str, ManifestFile] = {}
    for segment in segments:
        for f in segment.files:
            if f.path in files and f.rows:  # an empty file is the same in every segment
                raise LakeIntegrityError(
                    f"{dataset} {day.isoformat()}: two clusters' segments name {f.path}"
                )
            files[f.path] = f
    data = [f for f in files.values() if f.role == DATA]
    if len(data) > 1:  # empty files only stand for an empty day
        files = {p: f for p, f in files.items() if f.role != DATA or f.rows}
        if not any(f.role == DATA for f in files.values()):
            files[data[0].path] = data[0]
    manifest = Manifest(
        dataset=dataset,
        partition=_partition_values(DATASETS[dataset], day, None),
        rows=sum(s.rows for s in segments),
        schema_version=SCHEMA_VERSION,
        run_id=run_id,
        written_at=datetime.now(UTC).isoformat(),
        files=tuple(sorted(files.values(), key=lambda f: (f.role, f.path))),
        columns=file_schema(dataset).names,
        segments={c: s.run_id for c, s in zip(names, segments, strict=True)},
    )
    return _publish(lake, manifest, keep=_segment_files(lake, dataset, day))


def _publish(lake: Store, manifest: Manifest, keep: set[str] | None = None) -> Manifest:
    """Commit ``manifest`` as its partition: one write (one rename on a disk, one PUT on an
    object store; each file it names is already whole), then the previous commit's files it
    no longer names are deleted, except those in ``keep``."""
    try:
        previous = read_manifest(lake, manifest.dataset, manifest.day)
    except ManifestError:
        previous = None  # unreadable: replaced; its files are left to gc
    directory = partition_dir(manifest.dataset, manifest.day)
    lake.write_bytes(f"{directory}/{MANIFEST_FILE}", manifest.to_json().encode())
    if previous is not None:
        _drop_previous(lake, previous, manifest, keep)
    return manifest


def _segment_files(lake: Store, dataset: str, day: date) -> set[str]:
    """Every file a segment of the dataset-day names (never deleted with a commit)."""
    named: set[str] = set()
    for cluster in list_segments(lake, dataset, day):
        segment = None
        with contextlib.suppress(ManifestError):
            segment = read_segment(lake, dataset, day, cluster)
        if segment is not None:
            named.update(f.path for f in segment.files)
    return named


def write_partition(
    lake_dir: LakeLocation,
    dataset: str,
    table: pa.Table,
    day: date,
    run_id: str,
    quarantine: pa.Table | None = None,
    cluster: str | None = None,
) -> Manifest:
    """Replace one partition and its quarantine rows with one commit; return its manifest.

    ``quarantine`` holds the rows of the quarantine schema (None: the day has none). With
    ``cluster``, the commit is that cluster's segment of the partition.
    """
    writer = PartitionWriter(lake_dir, dataset, day, run_id, cluster)
    writer.write(table, quarantine)
    return writer.commit()


def _drop_previous(
    lake: Store, previous: Manifest, current: Manifest, keep: set[str] | None = None
) -> None:
    """Delete the files of ``previous`` that ``current`` no longer names (after the commit),
    except those in ``keep``."""
    named = {f.path for f in current.files} | (keep or set())
    stale = [_checked(f.path) for f in previous.files if f.path not in named]
    if previous.format == 1:  # the quarantine partition had a manifest of its own
        stale.append(f"{quarantine_dir(previous.dataset, previous.day)}/{MANIFEST_FILE}")
    for path in stale:
        lake.delete(path)


def _checked(path: str) -> str:
    """A path a manifest names, refused when it leads outside the lake."""
    rel = PurePosixPath(path)
    if not rel.parts or rel.is_absolute() or ".." in rel.parts:
        raise ManifestError(f"a manifest names a path outside the lake: {path!r}")
    return rel.as_posix()


def file_path(lake_dir: LakeLocation, f: ManifestFile) -> Path:
    """Where a file a manifest names lives in a local lake; refuses paths outside it."""
    return Store.at(lake_dir).directory / _checked(f.path)


def file_uri(lake_dir: LakeLocation, f: ManifestFile) -> str:
    """A file a manifest names as readers open it: a local path or ``s3://...``."""
    return Store.at(lake_dir).uri(_checked(f.path))


def _load_manifest(lake: Store, directory: str, path: str | None = None) -> Manifest | None:
    """The manifest at ``path`` (default: the commit of ``directory``, the partition's)."""
    path = path or f"{directory}/{MANIFEST_FILE}"
    try:
        text = lake.read_bytes(path).decode("utf-8")
    except FileNotFoundError:
        return None
    try:
        manifest = Manifest.from_dict(json.loads(text), directory)
        for f in manifest.files:
            _checked(f.path)
    except (ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"{lake.uri(path)}: not a readable manifest ({exc})") from None
    return manifest


def read_manifest(lake_dir: LakeLocation, dataset: str, day: date) -> Manifest | None:
    """The committed manifest of a dataset-day (None: no partition), its quarantine file
    included. A format-1 partition is read with its quarantine partition's manifest."""
    if dataset == "quarantine":
        raise ValueError("quarantine rows are committed with their source partition's manifest")
    lake = Store.at(lake_dir)
    manifest = _load_manifest(lake, partition_dir(dataset, day))
    if manifest is None or manifest.format > 1:
        return manifest
    q_manifest = _load_manifest(lake, quarantine_dir(dataset, day))
    if q_manifest is None:
        return manifest
    files = manifest.files + tuple(
        ManifestFile(f.path, QUARANTINE, f.rows, f.bytes, f.sha256) for f in q_manifest.files
    )
    return replace(manifest, files=files)


def verify_files(lake_dir: LakeLocation, manifest: Manifest) -> None:
    """Check every file the manifest names: its sha256 on a local disk, its size on an
    object store (which checks each object's integrity on upload itself, and where hashing
    would download the partition twice); raise :class:`LakeIntegrityError` naming the file
    and the command that rebuilds it."""
    lake = Store.at(lake_dir)
    fix = rebuild_command_of(manifest)
    for f in manifest.files:
        path = _checked(f.path)
        size = lake.size(path)
        if size is None:
            raise LakeIntegrityError(
                f"lake file {lake.uri(path)} is missing, yet the manifest of "
                f"{manifest.dataset} {manifest.day} names it; rebuild the partition: {fix}"
            )
        if size != f.bytes:
            raise LakeIntegrityError(
                f"lake file {lake.uri(path)} does not match its manifest ({size} bytes, "
                f"expected {f.bytes}); rebuild the partition: {fix}"
            )
        if not lake.is_local:
            continue
        digest = _sha256(lake, path)
        if digest != f.sha256:
            raise LakeIntegrityError(
                f"lake file {lake.uri(path)} does not match its manifest (sha256 "
                f"{digest[:12]}..., expected {f.sha256[:12]}...); rebuild the partition: {fix}"
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
    lake: Store,
    files: tuple[ManifestFile, ...],
    dataset: str,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    target = file_schema(dataset).remove_metadata()
    if columns is not None:
        target = pa.schema([f for f in target if f.name in columns])
    tables = []
    for f in files:
        with lake.open(_checked(f.path)) as source:
            pf = pq.ParquetFile(source)
            present = [n for n in target.names if n in pf.schema_arrow.names]
            tables.append(conform(pf.read(columns=present), target))
    return pa.concat_tables(tables) if tables else target.empty_table()


def read_partition(
    lake_dir: LakeLocation,
    dataset: str,
    day: date,
    extra_keys: dict[str, str] | None = None,
    columns: Sequence[str] | None = None,
    cluster: str | None = None,
) -> pa.Table:
    """The partition's rows with the partition columns added back (full dataset schema, or
    only ``columns``), read from the files its manifest names; older schema versions are
    conformed. With ``cluster``, the rows of that cluster's segment (committed or not).

    The quarantine rows of a dataset-day: ``read_partition(lake, "quarantine", day,
    {"dataset": <dataset>})``."""
    lake = Store.at(lake_dir)
    ds = DATASETS[dataset]
    values = _partition_values(ds, day, extra_keys)
    if dataset == "quarantine":
        source = read_manifest(lake, values["dataset"], day)
        table = _read_files(lake, source.quarantine_files if source else (), dataset, columns)
    else:
        manifest = read_commit(lake, dataset, day, cluster)
        if cluster is not None:
            where = lake.uri(segment_path(dataset, day, cluster))
        else:
            where = f"{lake.uri(partition_dir(dataset, day))}/{MANIFEST_FILE}"
        if manifest is None:
            raise PartitionNotFoundError(
                f"no lake partition {dataset} {day.isoformat()}: {where} is missing"
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
    lake_dir: LakeLocation,
    dataset: str,
    day: date,
    columns: Sequence[str],
    n: int,
    cluster: str | None = None,
) -> pa.Table:
    """The first ``n`` rows of the partition's first data file (``columns`` only), read
    without loading the partition (with ``cluster``: of that cluster's segment)."""
    lake = Store.at(lake_dir)
    manifest = read_commit(lake, dataset, day, cluster)
    files = manifest.data_files if manifest else ()
    target = pa.schema([f for f in file_schema(dataset).remove_metadata() if f.name in columns])
    for f in files:
        with lake.open(_checked(f.path)) as source:
            pf = pq.ParquetFile(source)
            for batch in pf.iter_batches(batch_size=n, columns=target.names):
                return conform(pa.Table.from_batches([batch]), target).slice(0, n)
    return target.empty_table()


def _manifests(lake: Store, dataset: str) -> list[Manifest]:
    depth = len(DATASETS[dataset].partition_by)
    found = []
    for entry in lake.list(dataset, suffix=f"/{MANIFEST_FILE}"):
        parts = entry.path.split("/")
        if len(parts) != depth + 2:
            continue
        try:
            day = date.fromisoformat(parts[1].split("=", 1)[1])
        except (ValueError, IndexError):
            continue  # not a partition of this lake
        manifest = read_manifest(lake, dataset, day)
        if manifest is not None:
            found.append(manifest)
    return sorted(found, key=lambda m: m.day)


def manifests(lake_dir: LakeLocation, dataset: str | None = None) -> list[Manifest]:
    """The committed manifests of a dataset (default: of every dataset), by day."""
    names = [dataset] if dataset else list(EXTRACTED)
    lake = Store.at(lake_dir)
    return [m for name in names for m in _manifests(lake, name)]


def list_partitions(lake_dir: LakeLocation, dataset: str) -> list[dict[str, str]]:
    """Committed partitions of ``dataset`` as ``{key: value}``, sorted; for the quarantine,
    the dataset-days whose commit has quarantine rows."""
    if dataset == "quarantine":
        return [
            {"dataset": m.dataset, "quarantine_date": m.day.isoformat()}
            for m in sorted(manifests(lake_dir), key=lambda m: (m.dataset, m.day))
            if m.quarantine_files
        ]
    return [dict(m.partition) for m in manifests(lake_dir, dataset)]


def lake_files(lake_dir: LakeLocation, dataset: str) -> list[str]:
    """Every file of ``dataset`` the manifests name, by day, as local paths or URLs: what a
    reader should read (``read_parquet([...])``) rather than a glob, which may see files of
    no commit."""
    lake = Store.at(lake_dir)
    if dataset == "quarantine":
        return [file_uri(lake, f) for m in manifests(lake) for f in m.quarantine_files]
    return [file_uri(lake, f) for m in manifests(lake, dataset) for f in m.data_files]
