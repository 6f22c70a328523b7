"""The raw landing zone: every API response kept exactly as received, gzip-compressed.

Layout::

    <raw>/<dataset>/<partition_key>=<YYYY-MM-DD>/run=<run_id>.jsonl.gz

one JSON envelope per line (:meth:`RawResponse.to_json_dict`, the body text verbatim). A run
file appears atomically when its writer closes successfully; a writer that fails leaves no
file behind, so a partition only ever holds complete runs. Any run can be normalised again
later without calling the API.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import IO

import orjson

from workloads_etl.lake.datasets import DATASETS, EXTRACTED
from workloads_etl.runai.models import RawResponse

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}")
_SUFFIX = ".jsonl.gz"


class RawRunNotFoundError(FileNotFoundError):
    """No raw run exists for the requested dataset, day (and run id)."""


def validate_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise ValueError(
            f"invalid run id {run_id!r}: use letters, digits and . _ : + - (at most 128)"
        )
    return run_id


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (best effort where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class RawRunWriter:
    """Streams responses of one run into a gzip file; published on successful close."""

    def __init__(self, final_path: Path) -> None:
        self.final_path = final_path
        self.tmp_path = final_path.with_name(f".{final_path.name}.{os.getpid()}.tmp")
        self.count = 0
        self._raw: IO[bytes] | None = None
        self._gz: gzip.GzipFile | None = None

    def __enter__(self) -> RawRunWriter:
        self.final_path.parent.mkdir(parents=True, exist_ok=True)
        self._raw = open(self.tmp_path, "wb")  # closed in __exit__
        # mtime=0: the same responses give the same bytes. Level 1: twice as fast as 6 for
        # 10 % more bytes (the raw landing is written at the API's pace, read rarely).
        self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=1, mtime=0)
        return self

    def record(self, resp: RawResponse) -> None:
        """Append one response (a single line of JSON)."""
        if self._gz is None:
            raise RuntimeError("the raw run writer is not open")
        doc = resp.to_json_dict()
        try:
            line = orjson.dumps(doc)
        except TypeError:  # text orjson cannot encode (a lone surrogate): escaped instead
            line = json.dumps(doc, separators=(",", ":")).encode("ascii")
        self._gz.write(line + b"\n")
        self.count += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        gz, raw = self._gz, self._raw
        self._gz = self._raw = None
        try:
            if gz is not None:
                gz.close()
            if raw is not None:
                raw.flush()
                if exc_type is None:
                    os.fsync(raw.fileno())
                raw.close()
        except BaseException:
            self.tmp_path.unlink(missing_ok=True)
            raise
        if exc_type is not None:
            self.tmp_path.unlink(missing_ok=True)
            return
        os.replace(self.tmp_path, self.final_path)
        fsync_dir(self.final_path.parent)


class RawLanding:
    """Reads and writes raw runs under one root directory (``DataPaths.raw``)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def partition_dir(self, dataset: str, day: date) -> Path:
        if dataset not in EXTRACTED:
            raise ValueError(f"unknown raw dataset {dataset!r}; expected one of {EXTRACTED}")
        key = DATASETS[dataset].partition_key
        return self.root / dataset / f"{key}={day.isoformat()}"

    def run_path(self, dataset: str, day: date, run_id: str) -> Path:
        return self.partition_dir(dataset, day) / f"run={validate_run_id(run_id)}{_SUFFIX}"

    def writer(self, dataset: str, day: date, run_id: str) -> RawRunWriter:
        return RawRunWriter(self.run_path(dataset, day, run_id))

    def runs(self, dataset: str, day: date) -> list[str]:
        """Run ids present for the partition, oldest first (by publication time)."""
        directory = self.partition_dir(dataset, day)
        if not directory.is_dir():
            return []
        found: list[tuple[int, str]] = []
        for p in directory.iterdir():
            name = p.name
            if name.startswith("run=") and name.endswith(_SUFFIX):
                found.append((p.stat().st_mtime_ns, name[len("run=") : -len(_SUFFIX)]))
        return [run for _, run in sorted(found)]

    def latest_run(self, dataset: str, day: date) -> str:
        runs = self.runs(dataset, day)
        if not runs:
            raise RawRunNotFoundError(
                f"no raw run for {dataset} on {day.isoformat()} under {self.root}"
            )
        return runs[-1]

    def read(self, dataset: str, day: date, run_id: str | None = None) -> Iterator[RawResponse]:
        """The responses of one run (the latest by default), in the order recorded."""
        run = run_id if run_id is not None else self.latest_run(dataset, day)
        path = self.run_path(dataset, day, run)
        if not path.is_file():
            raise RawRunNotFoundError(f"raw run {run!r} of {dataset} on {day} not found: {path}")
        return self._iter(path)

    @staticmethod
    def _iter(path: Path) -> Iterator[RawResponse]:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield RawResponse.from_json_dict(json.loads(line))
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(
                        f"{path}:{lineno}: not a raw response envelope: {exc}"
                    ) from exc
