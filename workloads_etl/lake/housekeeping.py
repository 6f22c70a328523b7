"""Housekeeping of a data directory: removing what no partition needs (``workloads-etl gc``).

Three kinds of file are garbage:

- **superseded raw runs**: ``<raw>/<dataset>/<key>=<day>/run=<id>.jsonl.gz`` of a dataset-day
  whose committed manifest names another run, when the file is older than ``keep_raw_days``
  (by its modification time). The run a manifest names is never removed, whatever its age:
  it is what rebuilds the partition (``workloads-etl renormalise``). Nor are the runs of a
  day the lake has no partition of: they are the only copy of what the control plane said
  that day, and the lake can still be built from them;
- **stale temporary files**: ``.<name>.<pid>.tmp`` anywhere under ``raw/`` and ``lake/``,
  whose writer (the pid in the name, on this host) no longer runs, or older than an hour;
- **lake files no manifest names**: ``*.parquet`` left by a crash between writing a file and
  committing the manifest, or between the commit and deleting the previous commit's files,
  and quarantine manifests of format 1 that a newer commit replaced. Only files older than
  an hour are taken, so a writer's files between its two renames are never touched.

Nothing is removed from a partition whose manifest cannot be read.

gc never runs while a run writes the data directory (a writer's data files exist before its
manifest names them): :func:`exclusive_access` takes the data directory's writer lock, and
refuses at once, naming the run, when a run holds it.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from workloads_etl.lake.datasets import DATASETS, EXTRACTED
from workloads_etl.lake.parquet import (
    MANIFEST_FILE,
    SEGMENTS_DIR,
    Manifest,
    ManifestError,
    partition_dir,
    quarantine_dir,
    read_manifest,
    read_segment,
)
from workloads_etl.lake.store import Entry, Store
from workloads_etl.settings import DataPaths
from workloads_etl.writer import WriterLock

DEFAULT_KEEP_RAW_DAYS = 30
STALE_SECONDS = 3600  # a temporary or unnamed file this old is no writer's work in progress
_RUN_FILE = re.compile(r"run=(?P<run>.+)\.jsonl\.gz")
_TEMP_FILE = re.compile(r"\..+\.tmp")
_SEGMENT_FILE = re.compile(r"cluster=(?P<cluster>[^/]+)\.json")
_TEMP_PID = re.compile(r"\.(\d+)\.tmp$")


@contextlib.contextmanager
def exclusive_access(paths: DataPaths) -> Iterator[None]:
    """Hold the data directory's writer lock while garbage is collected; raises
    :class:`~workloads_etl.writer.WriterBusyError` naming the run that holds it."""
    with WriterLock(paths.root, f"gc-{os.getpid()}", "none (gc)", wait=0):
        yield


@dataclass
class Freed:
    """The files of one kind of garbage: local paths, or URLs on an object store."""

    label: str
    paths: list[Path | str] = field(default_factory=list)
    bytes: int = 0
    _targets: list[tuple[Store, str]] = field(default_factory=list, repr=False)

    @property
    def files(self) -> int:
        return len(self.paths)

    def add(self, store: Store, entry: Entry) -> None:
        self.paths.append(store.directory / entry.path if store.is_local else store.uri(entry.path))
        self._targets.append((store, entry.path))
        self.bytes += entry.size

    def remove(self) -> None:
        for store, path in self._targets:
            store.delete(path)


@dataclass
class GcReport:
    """What gc removed (or, in a dry run, would remove) and what it kept."""

    dry_run: bool
    now: float  # the clock file ages were measured against (seconds since the epoch)
    raw_runs: Freed = field(default_factory=lambda: Freed("superseded raw runs"))
    temp_files: Freed = field(default_factory=lambda: Freed("stale temporary files"))
    lake_files: Freed = field(default_factory=lambda: Freed("lake files no manifest names"))
    kept_named_runs: int = 0  # raw runs a manifest names
    kept_unpartitioned_runs: int = 0  # raw runs of days the lake has no partition of
    unreadable: list[str] = field(default_factory=list)  # manifests that could not be read

    @property
    def categories(self) -> tuple[Freed, Freed, Freed]:
        return (self.raw_runs, self.temp_files, self.lake_files)

    @property
    def files(self) -> int:
        return sum(c.files for c in self.categories)

    @property
    def bytes(self) -> int:
        return sum(c.bytes for c in self.categories)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _day_of(part: str, key: str) -> date | None:
    """The day of a ``<key>=<day>`` path component (None: not one)."""
    name, _, value = part.partition("=")
    if name != key:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


@dataclass
class _Commits:
    """Every committed partition of the lake: the runs and files its manifests name."""

    runs: dict[tuple[str, date], set[str]] = field(default_factory=dict)
    files: set[str] = field(default_factory=set)  # relative to the lake
    unreadable: dict[tuple[str, date], str] = field(default_factory=dict)

    def add(self, manifest: Manifest) -> None:
        """A commit, or a cluster's segment not committed yet: its files and raw runs."""
        self.runs.setdefault((manifest.dataset, manifest.day), set()).update(manifest.runs)
        self.files.update(f.path for f in manifest.files)
        if manifest.format == 1:  # its quarantine partition has a manifest of its own
            self.files.add(f"{quarantine_dir(manifest.dataset, manifest.day)}/{MANIFEST_FILE}")


def _commits(lake: Store) -> _Commits:
    found = _Commits()
    for dataset in EXTRACTED:
        key = DATASETS[dataset].partition_key
        for entry in lake.list(dataset, suffix=".json"):
            parts = entry.path.split("/")
            day = _day_of(parts[1], key) if len(parts) in (3, 4) else None
            segment = _SEGMENT_FILE.fullmatch(parts[-1]) if len(parts) == 4 else None
            is_manifest = len(parts) == 3 and parts[-1] == MANIFEST_FILE
            if day is None or not (is_manifest or (segment and parts[2] == SEGMENTS_DIR)):
                continue
            try:
                if segment is not None:
                    manifest = read_segment(lake, dataset, day, segment["cluster"])
                else:
                    manifest = read_manifest(lake, dataset, day)
            except ManifestError:
                found.unreadable[(dataset, day)] = lake.uri(entry.path)
                continue
            if manifest is not None:
                found.add(manifest)
    return found


def _raw_runs(paths: DataPaths, commits: _Commits, keep_seconds: float, report: GcReport) -> None:
    now, raw = report.now, paths.raw
    for dataset in EXTRACTED:
        key = DATASETS[dataset].partition_key
        for entry in raw.list(dataset):
            parts = entry.path.split("/")
            day = _day_of(parts[1], key) if len(parts) == 3 else None
            match = _RUN_FILE.fullmatch(parts[-1])
            if day is None or match is None or (dataset, day) in commits.unreadable:
                continue
            named = commits.runs.get((dataset, day))
            if named is None:
                report.kept_unpartitioned_runs += 1
            elif match["run"] in named:
                report.kept_named_runs += 1
            elif now - entry.modified > keep_seconds:
                report.raw_runs.add(raw, entry)


def _temp_files(paths: DataPaths, now: float, freed: Freed, only_gone: bool = False) -> None:
    """Temporary files of local writers (an object store has none: an upload that fails is
    aborted, and one a crash interrupted is never visible as a file)."""
    for store in (paths.raw, paths.lake):
        if not store.is_local:
            continue
        for entry in store.list(suffix=".tmp"):
            name = entry.path.rsplit("/", 1)[-1]
            if not _TEMP_FILE.fullmatch(name):
                continue
            pid = _TEMP_PID.search(name)
            writer_gone = pid is not None and not pid_alive(int(pid.group(1)))
            if writer_gone or (not only_gone and now - entry.modified > STALE_SECONDS):
                freed.add(store, entry)


def _lake_files(lake: Store, commits: _Commits, now: float, freed: Freed) -> None:
    skip = {partition_dir(ds, day) for ds, day in commits.unreadable}
    skip |= {quarantine_dir(ds, day) for ds, day in commits.unreadable}
    for dataset, ds in DATASETS.items():
        depth = len(ds.partition_by) + 2
        for entry in lake.list(dataset):
            parts = entry.path.split("/")
            name = parts[-1]
            orphan_manifest = dataset == "quarantine" and name == MANIFEST_FILE
            if len(parts) != depth or not (name.endswith(".parquet") or orphan_manifest):
                continue
            if entry.path in commits.files or entry.path.rsplit("/", 1)[0] in skip:
                continue
            if now - entry.modified > STALE_SECONDS:
                freed.add(lake, entry)


def collect_garbage(
    paths: DataPaths,
    keep_raw_days: float = DEFAULT_KEEP_RAW_DAYS,
    *,
    dry_run: bool = False,
    now: float | None = None,
) -> GcReport:
    """Remove (with ``dry_run``, only find) the garbage of the module docstring; file ages
    are measured against ``now`` (seconds since the epoch; default: the clock)."""
    if keep_raw_days < 0:
        raise ValueError("keep_raw_days must not be negative")
    report = GcReport(dry_run=dry_run, now=time.time() if now is None else now)
    with exclusive_access(paths):
        commits = _commits(paths.lake)
        report.unreadable = sorted(commits.unreadable.values())
        _raw_runs(paths, commits, keep_raw_days * 86400, report)
        _temp_files(paths, report.now, report.temp_files)
        _lake_files(paths.lake, commits, report.now, report.lake_files)
        if not dry_run:
            for category in report.categories:
                category.remove()
    return report


def sweep_temp_files(paths: DataPaths) -> Freed:
    """Remove the temporary files of writers that no longer run (a run killed mid-write),
    as a run does at its start, under the writer lock it holds. Returns what was removed."""
    freed = Freed("temporary files of writers gone")
    _temp_files(paths, time.time(), freed, only_gone=True)
    freed.remove()
    return freed
