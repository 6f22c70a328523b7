"""The raw landing zone: every API response kept exactly as received, gzip-compressed.

Layout::

    <raw>/<dataset>/<partition_key>=<YYYY-MM-DD>/run=<run_id>.jsonl.gz

one JSON envelope per line (:meth:`RawResponse.to_json_dict`, the body text verbatim). The
root is a local directory or a prefix of an object store (:mod:`workloads_etl.lake.store`).
A run file appears atomically when its writer closes successfully; a writer that fails
leaves no file behind, so a partition only ever holds complete runs. Any run can be normalised again
later without calling the API.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import IO

import orjson

from workloads_etl.lake.datasets import DATASETS, EXTRACTED
from workloads_etl.lake.store import Store
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


class RawRunWriter:
    """Streams responses of one run into a gzip file; published on successful close (see
    :meth:`Store.writer`: a failed run leaves nothing)."""

    def __init__(self, store: Store, path: str) -> None:
        self.store = store
        self.path = path
        self.count = 0
        self._publish: contextlib.AbstractContextManager[IO[bytes]] | None = None
        self._gz: gzip.GzipFile | None = None

    @property
    def final_path(self) -> str:
        """Where the run is published (a local path or a URL)."""
        return self.store.uri(self.path)

    def __enter__(self) -> RawRunWriter:
        self._publish = self.store.writer(self.path)
        raw = self._publish.__enter__()
        # mtime=0: the same responses give the same bytes. Level 1: twice as fast as 6 for
        # 10 % more bytes (the raw landing is written at the API's pace, read rarely).
        self._gz = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0)
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
        gz, publish = self._gz, self._publish
        self._gz = self._publish = None
        if publish is None:
            return
        try:
            if gz is not None:
                gz.close()
        except BaseException as failure:
            publish.__exit__(type(failure), failure, failure.__traceback__)
            raise
        publish.__exit__(exc_type, exc, tb)


class RawLanding:
    """Reads and writes raw runs under one root (``DataPaths.raw``: a local directory or a
    prefix of an object store)."""

    def __init__(self, root: Store | Path | str) -> None:
        self.store = Store.at(root)

    def partition_dir(self, dataset: str, day: date) -> str:
        """The partition's directory, relative to the landing's root."""
        if dataset not in EXTRACTED:
            raise ValueError(f"unknown raw dataset {dataset!r}; expected one of {EXTRACTED}")
        key = DATASETS[dataset].partition_key
        return f"{dataset}/{key}={day.isoformat()}"

    def run_file(self, dataset: str, day: date, run_id: str) -> str:
        """The run's file, relative to the landing's root."""
        return f"{self.partition_dir(dataset, day)}/run={validate_run_id(run_id)}{_SUFFIX}"

    def run_path(self, dataset: str, day: date, run_id: str) -> Path:
        """The run's file in a local landing."""
        return self.store.directory / self.run_file(dataset, day, run_id)

    def writer(self, dataset: str, day: date, run_id: str) -> RawRunWriter:
        return RawRunWriter(self.store, self.run_file(dataset, day, run_id))

    def runs(self, dataset: str, day: date) -> list[str]:
        """Run ids present for the partition, oldest first (by publication time; runs
        published within the same instant, which an object store's clock cannot tell apart,
        by id)."""
        found: list[tuple[float, str]] = []
        for entry in self.store.list(self.partition_dir(dataset, day), suffix=_SUFFIX):
            name = entry.path.rsplit("/", 1)[-1]
            if name.startswith("run="):
                found.append((entry.modified, name[len("run=") : -len(_SUFFIX)]))
        return [run for _, run in sorted(found)]

    def latest_run(self, dataset: str, day: date) -> str:
        runs = self.runs(dataset, day)
        if not runs:
            raise RawRunNotFoundError(
                f"no raw run for {dataset} on {day.isoformat()} under {self.store}"
            )
        return runs[-1]

    def read(self, dataset: str, day: date, run_id: str | None = None) -> Iterator[RawResponse]:
        """The responses of one run (the latest by default), in the order recorded."""
        run = run_id if run_id is not None else self.latest_run(dataset, day)
        path = self.run_file(dataset, day, run)
        if not self.store.exists(path):
            raise RawRunNotFoundError(
                f"raw run {run!r} of {dataset} on {day} not found: {self.store.uri(path)}"
            )
        return self._iter(self.store, path)

    @staticmethod
    def _iter(store: Store, file: str) -> Iterator[RawResponse]:
        path = store.uri(file)
        with store.open(file) as raw, gzip.open(raw, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield RawResponse.from_json_dict(json.loads(line))
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(
                        f"{path}:{lineno}: not a raw response envelope: {exc}"
                    ) from exc
