"""Metrics answers (``GET /api/v1/workloads/{id}/metrics``) -> long rows, one per sample.

All answers of a raw run are gathered column-wise by the client's
:class:`~workloads_etl.runai.measurements.SampleCollector` and classified at once with numpy:
a bad timestamp or value, a point of another day, or a repeat of a key is a quarantine row
(the point as received); only those are looked at one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workloads_etl.lake.bounds import Limits
from workloads_etl.lake.metric_types import metric_kinds
from workloads_etl.lake.normalise.records import (
    Normalised,
    Quarantine,
    RecordError,
    dumps,
    is_uuid,
    observed_at,
)
from workloads_etl.lake.schemas import TS, WORKLOAD_METRICS
from workloads_etl.runai.measurements import (
    NULL,
    OK,
    UNPARSABLE,
    WRONG_TYPE,
    SampleCollector,
    Samples,
    concat_samples,
    loads,
)
from workloads_etl.runai.models import RawResponse
from workloads_etl.runai.values import parse_timestamp


def _step_seconds(params: dict[str, str]) -> int:
    start = parse_timestamp(params.get("start") or "")
    end = parse_timestamp(params.get("end") or "")
    if start is None or end is None:
        raise RecordError("request parameters start/end missing or invalid")
    raw_n = params.get("numberOfSamples")
    try:
        samples = 20 if raw_n is None or raw_n == "" else int(raw_n)
    except ValueError as exc:
        raise RecordError(f"numberOfSamples is not an integer: {raw_n!r}") from exc
    if samples <= 0:
        raise RecordError(f"numberOfSamples={samples}: sample step unknown")
    if end <= start:
        raise RecordError("request window end is not after start")
    return max(1, round((end - start).total_seconds() / samples))


_TS_REASON = {
    NULL: "missing timestamp",
    WRONG_TYPE: "timestamp is not a string",
    UNPARSABLE: "unparsable timestamp",
}
_VALUE_REASON = {
    NULL: "missing value",
    WRONG_TYPE: "value is not a string or number",
    UNPARSABLE: "value is not numeric",
}
_TS_BITS = 37  # microseconds of one day < 2**37
# Samples per chunk of a metrics partition: bounds the normaliser's memory (about 0.3 KB per
# sample while gathered) and sets the size of the partition's files.
DEFAULT_CHUNK_SAMPLES = 500_000
DEFAULT_LIMITS = Limits()


def _dense_ranks(names: Sequence[str]) -> np.ndarray:
    rank = {name: i for i, name in enumerate(sorted(set(names)))}
    return np.fromiter((rank[n] for n in names), dtype=np.int64, count=len(names))


@dataclass(frozen=True)
class Answer:
    """One metrics answer, checked: its text (to quote a quarantined point as
    received), workload, step and time received, and its decoded body (``doc``) until its
    samples are gathered; or, for an unusable answer, why (``problem``)."""

    text: str
    received: datetime
    wid: str = ""
    step: int = 0
    problem: str | None = None
    doc: dict[str, Any] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Gathered:
    """The answers of one workload, their samples gathered together as Arrow columns (one
    :class:`SampleCollector` for all of them: its fixed cost is paid once a workload, not once
    an answer). ``samples.source`` is an answer's index in ``answers``."""

    answers: list[Answer]
    samples: Samples | None

    @property
    def size(self) -> int:
        return self.samples.records if self.samples is not None else 0


@dataclass
class _Chunk:
    """The workloads gathered for one chunk."""

    workloads: list[Gathered] = field(default_factory=list)
    samples: int = 0

    def add(self, gathered: Gathered) -> None:
        self.workloads.append(gathered)
        self.samples += gathered.size


class MetricsChunks:
    """Normalises metrics answers chunk by chunk, for bounded memory whatever the day's size.

    Feed it the answers of one workload at a time (:meth:`add`, all its windows and metric
    batches together); each answer's body is decoded once (the client's decoding is reused,
    :meth:`RawResponse.decoded`) and the workload's samples gathered column-wise
    (:meth:`gather`), after which the decoded bodies are let go. When the gathered
    samples reach ``chunk_samples``, the chunk is classified, de-duplicated and handed to
    ``sink`` as rows and quarantine rows, and its memory released. A workload's answers are
    never split across chunks, so chunks hold disjoint keys and a repeat of a point is always
    found. :meth:`finish` flushes the last chunk; the totals are then in the attributes.

    With ``background`` a full chunk is classified and sunk in a worker thread while answers
    keep arriving (mostly Arrow and numpy work, which releases the GIL); at most one chunk
    waits there, so memory stays at about two chunks. :meth:`close` stops the thread.
    """

    def __init__(
        self,
        dataset: str,
        day: date,
        run_id: str,
        sink: Callable[[pa.Table, pa.Table], None],
        *,
        chunk_samples: int | None = None,
        limits: Limits = DEFAULT_LIMITS,
        background: bool = False,
    ) -> None:
        if chunk_samples is not None and chunk_samples < 1:
            raise ValueError(f"chunk_samples must be >= 1, got {chunk_samples}")
        self.dataset, self.day, self.run_id = dataset, day, run_id
        self.sink = sink
        self.chunk_samples = chunk_samples
        self.limits = limits
        self.records = 0
        self.rows = 0
        self.quarantined = 0
        self.out_of_window = 0
        self.chunks = 0
        self._chunk = self._new_chunk()
        self._executor = (
            ThreadPoolExecutor(1, thread_name_prefix="metrics-chunks") if background else None
        )
        self._pending: Future[None] | None = None

    def _new_chunk(self) -> _Chunk:
        return _Chunk()

    def add(self, responses: Iterable[RawResponse] | Gathered) -> None:
        """Take the answers of one workload (raw, or already :meth:`gather`-ed); flush the
        chunk when it is full."""
        gathered = responses if isinstance(responses, Gathered) else self.gather(responses)
        self._chunk.add(gathered)
        if self.chunk_samples is not None and self._chunk.samples >= self.chunk_samples:
            self._flush()

    def finish(self) -> None:
        """Flush the last chunk (always one, so an empty day still yields its empty rows) and
        wait until every chunk is sunk."""
        if self._chunk.workloads or (not self.chunks and self._pending is None):
            self._flush()
        self._wait()
        self.close()

    def close(self) -> None:
        """Stop the worker thread (after :meth:`finish`, or to give up on the partition)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def _flush(self) -> None:
        chunk, self._chunk = self._chunk, self._new_chunk()
        if self._executor is None:
            self._process(chunk)
            return
        self._wait()  # at most one chunk waits in the thread
        self._pending = self._executor.submit(self._process, chunk)

    def _process(self, chunk: _Chunk) -> None:
        rows, quarantine, records, out_of_window = self._normalise_chunk(chunk)
        del chunk
        self.sink(rows, quarantine)
        self.records += records
        self.rows += rows.num_rows
        self.quarantined += quarantine.num_rows
        self.out_of_window += out_of_window
        self.chunks += 1

    @staticmethod
    def gather(responses: Iterable[RawResponse]) -> Gathered:
        """The answers of one workload with their samples gathered into Arrow columns; each
        decoded body is let go once its samples are taken."""
        collector = SampleCollector(keep_items=False)
        answers: list[Answer] = []
        for i, resp in enumerate(responses):
            answer = MetricsChunks.parse(resp)
            if answer.doc is not None:
                collector.add(answer.doc, source=i)
                answer = replace(answer, doc=None)
            answers.append(answer)
        usable = any(a.problem is None for a in answers)
        return Gathered(answers, collector.finish() if usable else None)

    @staticmethod
    def parse(resp: RawResponse) -> Answer:
        """One answer, checked and decoded once (or why it is unusable)."""
        at = observed_at(resp)
        try:
            wid = resp.path_params.get("workloadId")
            if not is_uuid(wid):
                raise RecordError(f"workloadId path parameter is not a uuid: {wid!r}")
            step = _step_seconds(resp.params)
            if not 200 <= resp.status < 300:
                raise RecordError(f"HTTP status {resp.status}")
        except RecordError as exc:
            return Answer(resp.text, at, problem=f"unusable metrics response: {exc}")
        why = None
        try:
            doc = resp.decoded()
        except ValueError:
            why = "body is not JSON"
        else:
            if not isinstance(doc, dict):
                why = "body is not an object"
            elif not isinstance(doc.get("measurements"), list):
                why = "body has no measurements array"
        if why is not None:
            return Answer(resp.text, at, problem=f"unparsable metrics response: {why}")
        return Answer(resp.text, at, str(wid), step, doc=doc)

    def _normalise_chunk(self, chunk: _Chunk) -> tuple[pa.Table, pa.Table, int, int]:
        """A gathered chunk -> (rows, quarantine rows, records, points of another day)."""
        day, run_id, limits = self.day, self.run_id, self.limits
        quarantine = Quarantine(self.dataset, day, run_id)
        records = 0
        answers: list[Answer] = []  # every answer of the chunk; a sample's source is its index
        parts: list[Samples] = []
        offsets: list[int] = []  # per part: the index of its workload's first answer
        part_of: list[int] = []  # per answer: its workload's part
        for gathered in chunk.workloads:
            part = -1
            if gathered.samples is not None:
                part = len(parts)
                offsets.append(len(answers))
                parts.append(gathered.samples)
            part_of += [part] * len(gathered.answers)
            answers += gathered.answers
        for answer in answers:
            if answer.problem is not None:
                records += 1
                quarantine.add(answer.problem, answer.text, answer.received)
        texts = [a.text for a in answers]
        wids = [a.wid for a in answers]
        steps = [a.step for a in answers]
        received = [a.received for a in answers]
        table, rejects = concat_samples(parts, offsets)
        decoded: dict[int, Any] = {}

        def raw_point(src: int, p: int) -> str:
            """The point as received (its answer is decoded again, only for quarantined points)."""
            if src not in decoded:
                decoded[src] = loads(texts[src])
            mi, vi = parts[part_of[src]].locate(p)
            return dumps(decoded[src]["measurements"][mi]["values"][vi])

        for r in rejects:
            records += 1
            where = f"workload {wids[r.source]}" + (f", {r.metric_type}" if r.metric_type else "")
            quarantine.add(f"{r.reason} ({where})", dumps(r.item), received[r.source])
        t = table
        records += t.num_rows
        if t.num_rows == 0:
            return WORKLOAD_METRICS.empty_table(), quarantine.table(), records, 0

        # Classify every point at once: bad timestamp, outside the day, bad value, good.
        start = datetime.combine(day, time(), UTC)
        start_us = int((start - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
        day_us = 86_400_000_000
        ts_code = t["ts_code"].to_numpy()
        value_code = t["value_code"].to_numpy()
        offset = pc.fill_null(t["ts"].cast(pa.int64()), start_us).to_numpy() - start_us
        value = pc.fill_null(t["value"], 0.0).to_numpy()
        ts_ok = ts_code == OK
        in_window = ts_ok & (offset >= 0) & (offset < day_us)
        out_of_window = int(np.count_nonzero(ts_ok & ~in_window))
        mtypes = t["metric_type"].combine_chunks().dictionary.to_pylist()
        mtype_idx = t["metric_type"].combine_chunks().indices.to_numpy()
        # The physical bounds of each point's metric type (none for a type not declared).
        declared = metric_kinds()
        kinds = np.array([declared.get(m, "") for m in mtypes], dtype=object)[mtype_idx]
        finite = np.isfinite(value)
        outside = finite & limits.outside(value, kinds)
        value_ok = (value_code == OK) & finite & ~outside
        bad = ~ts_ok | (in_window & ~value_ok)
        pos = t["pos"].to_numpy()
        source = t["source"].to_numpy()
        for i in np.flatnonzero(bad).tolist():
            if ts_code[i] != OK:
                why = _TS_REASON[int(ts_code[i])]
            elif value_code[i] != OK:
                why = _VALUE_REASON[int(value_code[i])]
            elif not finite[i]:
                why = "value is not finite"
            else:
                why = f"value {limits.problem(float(value[i]), str(kinds[i]))}"
            src = int(source[i])
            quarantine.add(
                f"{why} (workload {wids[src]}, {mtypes[mtype_idx[i]]})",
                raw_point(src, int(pos[i])),
                received[src],
            )

        # Sort the good points by (workload, type, labels, ts), ties in received order, with one
        # integer key, then quarantine the repeats of a key: the first received is kept.
        good = np.flatnonzero(in_window & value_ok)
        n_types = int(t["type_rank"].to_numpy().max()) + 1
        n_labels = int(t["labels_rank"].to_numpy().max()) + 1
        group = (
            _dense_ranks(wids)[source[good]] * n_types + t["type_rank"].to_numpy()[good]
        ) * n_labels + t["labels_rank"].to_numpy()[good]
        if group.size and int(group.max()) < 2 ** (63 - _TS_BITS):
            key = (group << _TS_BITS) | offset[good]
            perm = np.argsort(key, kind="stable")
            order, key = good[perm], key[perm]
        else:
            perm = np.lexsort((offset[good], group))
            order = good[perm]
            key = np.stack([group[perm], offset[order]])
        dup = np.zeros(len(order), dtype=bool)
        if key.ndim == 1:
            dup[1:] = key[1:] == key[:-1]
        else:
            dup[1:] = (key[:, 1:] == key[:, :-1]).all(axis=0)
        if dup.any():
            first = np.maximum.accumulate(np.where(dup, 0, np.arange(len(order))))
            kept_value = value[order][first]
            for j in np.flatnonzero(dup).tolist():
                i = int(order[j])
                same = "identical copy" if value[i] == kept_value[j] else "different value"
                src = int(source[i])
                quarantine.add(
                    f"duplicate point ({same}; first received kept) "
                    f"(workload {wids[src]}, {mtypes[mtype_idx[i]]})",
                    raw_point(src, int(pos[i])),
                    received[src],
                )
        take = pa.array(order[~dup])
        kept = t.take(take)
        src_kept = kept["source"]
        n = kept.num_rows
        rows = pa.table(
            {
                "usage_date": pa.repeat(pa.scalar(day, pa.date32()), n),
                "workload_id": pa.array(wids, pa.string()).take(src_kept),
                "metric_type": kept["metric_type"].cast(pa.string()),
                "labels_json": kept["labels_json"].cast(pa.string()),
                "ts": kept["ts"],
                "value": kept["value"],
                "step_seconds": pa.array(steps, pa.int64()).take(src_kept),
                "run_id": pa.repeat(pa.scalar(run_id, pa.string()), n),
                "fetched_at": pa.array(received, TS).take(src_kept),
            }
        )
        return rows.cast(WORKLOAD_METRICS), quarantine.table(), records, out_of_window


def normalise_metrics(
    dataset: str,
    responses: Iterable[RawResponse],
    day: date,
    run_id: str,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> Normalised:
    """The metrics answers of one raw run -> long rows and quarantine, in one chunk."""
    rows: list[pa.Table] = []
    quarantine: list[pa.Table] = []

    def keep(r: pa.Table, q: pa.Table) -> None:
        rows.append(r)
        quarantine.append(q)

    chunks = MetricsChunks(dataset, day, run_id, keep, limits=limits)
    chunks.add(responses)
    chunks.finish()
    q = pa.concat_tables(quarantine)
    return Normalised(pa.concat_tables(rows), q, chunks.records, q.num_rows, chunks.out_of_window)
