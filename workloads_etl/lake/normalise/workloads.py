"""Workload records (pages of ``GET /api/v1/workloads``) -> rows of the workload schema.

The mapping from the API's ``Workload`` to columns is derived from the column declarations
of :data:`workloads_etl.lake.schemas.WORKLOAD_COLUMNS` (each names its source field and how
it is parsed); nothing here lists a column again. See the package docstring for which
problems reject a record and which only null a field.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workloads_etl.lake.bounds import Limits
from workloads_etl.lake.normalise.records import (
    FIELD_ISSUE_SUFFIX,
    FIELDS_ISSUE_SUFFIX,
    Normalised,
    Quarantine,
    RecordError,
    canonical,
    decode_body,
    dumps,
    dumps_canonical,
    is_uuid,
    observed_at,
    typed,
)
from workloads_etl.lake.quantity import parse_quantity_array
from workloads_etl.lake.schemas import WORKLOAD_COLUMNS, WORKLOADS, Column
from workloads_etl.openapi import enum_values
from workloads_etl.runai.body import MAX_VALUE_DEPTH, too_deep, valid_text
from workloads_etl.runai.models import RawResponse
from workloads_etl.runai.values import parse_timestamps, utc

log = logging.getLogger(__name__)


@dataclass
class _Node:
    """An object of the ``Workload`` record: its leaf fields and its nested objects."""

    leaves: dict[str, Column] = field(default_factory=dict)
    children: dict[str, _Node] = field(default_factory=dict)


def _tree(columns: Iterable[Column]) -> _Node:
    root = _Node()
    for column in columns:
        if column.source is None or column.parse == "id":
            continue
        *parents, leaf = column.source.split(".")
        node = root
        for key in parents:
            node = node.children.setdefault(key, _Node())
        node.leaves[leaf] = column
    return root


_RECORD = _tree(WORKLOAD_COLUMNS)
_TOP_LEVEL_HANDLED = {"id"}
# Columns still holding API text after the per-record pass, parsed column-wise afterwards.
_QUANTITY_COLUMNS = frozenset(c.name for c in WORKLOAD_COLUMNS if c.parse == "quantity")
_TIME_COLUMNS = frozenset(c.name for c in WORKLOAD_COLUMNS if c.parse == "date-time")
_ENUM_COLUMNS = {c.name: c.enum for c in WORKLOAD_COLUMNS if c.enum}
DEFAULT_LIMITS = Limits()


class _Fields:
    """Field-level checks of one record: a bad value becomes null and its problem is noted."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        # (problem, whether it nulls several columns: a whole nested object)
        self.problems: list[tuple[str, bool]] = []

    def json(self, value: Any, where: str) -> tuple[bool, str | None]:
        """A value kept as JSON text: ``(ok, text)``; too deep a value is not kept."""
        if too_deep(value):
            self.problems.append((f"{where}: nested deeper than {MAX_VALUE_DEPTH} levels", False))
            return False, None
        return True, canonical(value)

    def value(self, column: Column, value: Any, where: str) -> Any:
        if column.parse == "json":
            return self.json(value, where)[1]
        if column.parse == "strings":
            if value is None or (
                isinstance(value, list) and all(isinstance(x, str) and valid_text(x) for x in value)
            ):
                return value
            self.problems.append((f"{where}: expected array of valid strings", False))
            return None
        try:
            value = typed(value, column.parse, where)
        except RecordError as exc:
            self.problems.append((str(exc), False))
            return None
        # Quantities are still text here; they are bounded once parsed, column-wise.
        if column.kind is not None and value is not None and column.parse != "quantity":
            problem = self.limits.problem(float(value), column.kind)
            if problem is not None:
                self.problems.append((f"{where}: {problem}", False))
                return None
        return value

    def object(self, value: Any, where: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problems.append((f"{where}: expected object, got {type(value).__name__}", True))
            return {}
        return value


def _walk(
    node: _Node,
    obj: dict[str, Any],
    prefix: str,
    row: dict[str, Any],
    extra: dict[str, Any],
    fields: _Fields,
) -> None:
    for key, column in node.leaves.items():
        row[column.name] = fields.value(column, obj.get(key), prefix + key)
    for key, child in node.children.items():
        _walk(
            child, fields.object(obj.get(key), prefix + key), f"{prefix}{key}.", row, extra, fields
        )
    for key, value in obj.items():
        if key in node.leaves or key in node.children:
            continue
        if not prefix and key in _TOP_LEVEL_HANDLED:
            continue
        if fields.json(value, prefix + key)[0]:
            extra[prefix + key] = value


def flatten_workload(
    rec: Any, limits: Limits = DEFAULT_LIMITS
) -> tuple[dict[str, Any], list[tuple[str, bool]]]:
    """One workload object -> (column values, field problems).

    Timestamps and quantities are still strings here. Raises :class:`RecordError` only when
    the record cannot be a row at all (not an object, no usable ``id``); a bad value of any
    other field becomes null and is described in the returned problems. Fields the contract
    does not know are kept in ``extra_fields_json``, under their dotted path when nested.
    """
    if not isinstance(rec, dict):
        raise RecordError(f"workload is a {type(rec).__name__}, expected an object")
    if "id" not in rec or rec["id"] is None:
        raise RecordError("missing required field id")
    if not is_uuid(rec["id"]):
        raise RecordError("id is not a uuid")
    fields = _Fields(limits)
    row: dict[str, Any] = {"workload_id": rec["id"]}
    extra: dict[str, Any] = {}
    _walk(_RECORD, rec, "", row, extra, fields)
    row["extra_fields_json"] = canonical(extra) if extra else None
    return row, fields.problems


# Records are flattened and typed this many at a time; only the typed columns stay.
BATCH_RECORDS = 5_000


@dataclass
class _Batch:
    """Records flattened since the last conversion to columns."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    problems: list[list[tuple[str, bool]]] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)


@dataclass
class _Rows:
    """The rows of a day so far: typed columns in batches, and per row only where its record
    sits in the run (for the rare record whose text a quarantine row needs after the pass)."""

    tables: list[pa.Table] = field(default_factory=list)
    page: list[int] = field(default_factory=list)  # ordinal of the row's response in the run
    index: list[int] = field(default_factory=list)  # the row's place in that page's list
    problems: dict[int, list[tuple[str, bool]]] = field(default_factory=dict)
    texts: dict[int, str] = field(default_factory=dict)  # records of rows with a field issue


def _columns(batch: _Batch, rows: _Rows) -> pa.Table:
    """Type one batch of flattened rows (the last ones of ``rows``); field problems found
    column-wise are noted per row."""
    first = len(rows.page) - len(batch.rows)  # the batch's first row in the day
    arrays: dict[str, pa.Array] = {}
    for f in WORKLOADS:
        if f.name in ("snapshot_date", "snapshot_at", "run_id"):
            continue  # the same for every row: set once the day is complete
        values = [row.get(f.name) for row in batch.rows]
        if f.name in _QUANTITY_COLUMNS:
            parsed, bad = parse_quantity_array(pa.array(values, pa.string()))
            what = "quantity"
        elif f.name in _TIME_COLUMNS:
            parsed, bad = parse_timestamps(pa.array(values, pa.string()))
            what = "timestamp"
        else:
            arrays[f.name] = pa.array(values, f.type)
            continue
        if f.name in _QUANTITY_COLUMNS:  # memory: never negative
            negative = pc.fill_null(pc.less(parsed, 0), False)
            for i in np.flatnonzero(negative.to_numpy(zero_copy_only=False)):
                batch.problems[i].append((f"{f.name}: {values[i]!r} is negative", False))
            parsed = pc.if_else(negative, pa.scalar(None, parsed.type), parsed)
        arrays[f.name] = parsed  # unparsable values are null already
        for i in np.flatnonzero(bad.to_numpy(zero_copy_only=False)):
            batch.problems[i].append((f"{f.name}: unparsable {what} {values[i]!r}", False))
    for k, issues in enumerate(batch.problems):
        if issues:
            rows.problems[first + k] = issues
            rows.texts[first + k] = dumps(batch.records[k])
    return pa.table(arrays)


def normalise_workloads(
    dataset: str,
    responses: Iterable[RawResponse],
    day: date,
    run_id: str,
    snapshot_at: datetime | None = None,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> Normalised:
    """Pages of ``GET /api/v1/workloads`` (or of the deleted list) of one raw run.

    Memory follows the typed rows, not the records: records are flattened and typed
    :data:`BATCH_RECORDS` at a time, identical repeats are found by a digest, and the text
    of a record that loses to another copy of its id is read again from ``responses`` (a
    second pass, only then; pass something that can be iterated twice, such as a list or
    :class:`workloads_etl.lake.normalise.partition.RawAnswers`).
    """
    if isinstance(responses, Iterator):  # one pass only: keep it for the rare second one
        responses = list(responses)
    quarantine = Quarantine(dataset, day, run_id)
    rows = _Rows()
    batch = _Batch()
    received_at: list[datetime] = []  # per response of the run
    seen: set[bytes] = set()  # digest of the canonical JSON of every record made a row
    records = rejected = dropped = 0
    for ordinal, resp in enumerate(responses):
        received = observed_at(resp)
        received_at.append(received)
        doc, problem = decode_body(resp, "workloads")
        if problem is not None:
            records += 1
            rejected += 1
            quarantine.add(f"unparsable workloads page: {problem}", resp.text, received)
            continue
        for k, rec in enumerate(doc["workloads"]):
            records += 1
            try:
                row, issues = flatten_workload(rec, limits)
            except RecordError as exc:
                rejected += 1
                quarantine.add(str(exc), dumps(rec), received)
                continue
            digest = hashlib.blake2b(dumps_canonical(rec).encode(), digest_size=16).digest()
            if digest in seen:  # a page repeated by offset paging over a changing list
                dropped += 1
                continue
            seen.add(digest)
            batch.rows.append(row)
            batch.problems.append(issues)
            batch.records.append(rec)
            rows.page.append(ordinal)
            rows.index.append(k)
        if len(batch.rows) >= BATCH_RECORDS:
            rows.tables.append(_columns(batch, rows))
            batch = _Batch()
        del doc
    if batch.rows or not rows.tables:
        rows.tables.append(_columns(batch, rows))
    del batch, seen
    first_received = min(received_at, default=None)
    snap = utc(snapshot_at) if snapshot_at else first_received or datetime.combine(day, time(), UTC)
    typed_rows = pa.concat_tables(rows.tables)
    rows.tables.clear()
    n = typed_rows.num_rows
    constant = {
        "snapshot_date": pa.scalar(day, WORKLOADS.field("snapshot_date").type),
        "snapshot_at": pa.scalar(snap, WORKLOADS.field("snapshot_at").type),
        "run_id": pa.scalar(run_id, WORKLOADS.field("run_id").type),
    }
    table = pa.table(
        [
            pa.repeat(constant[f.name], n) if f.name in constant else typed_rows[f.name]
            for f in WORKLOADS
        ],
        schema=WORKLOADS,
    )
    del typed_rows

    # Copies of one id with different content: keep the latest updatedAt, then the latest
    # received; the other copies have no row.
    keep = np.ones(n, dtype=bool)
    losers: list[tuple[int, str]] = []  # (row, workload id), in the order ids first appear
    repeated = _repeated_ids(table["workload_id"])
    if repeated:
        ids = table["workload_id"].to_pylist()
        updated = table["updated_at"].to_pylist()
        by_id: dict[str, list[int]] = {}
        for j, wid in enumerate(ids):
            if wid in repeated:
                by_id.setdefault(wid, []).append(j)
        min_ts = datetime.min.replace(tzinfo=UTC)
        for wid, idx in by_id.items():
            winner = max(idx, key=lambda j: (updated[j] or min_ts, received_at[rows.page[j]], j))
            losers += [(j, wid) for j in idx if j != winner]
        texts = _record_texts(responses, [(rows.page[j], rows.index[j]) for j, _ in losers])
        for j, wid in losers:
            keep[j] = False
            rejected += 1
            quarantine.add(
                f"duplicate workload id {wid} in one snapshot "
                "(different content; the copy with the latest updatedAt kept)",
                texts[rows.page[j], rows.index[j]],
                received_at[rows.page[j]],
            )

    field_issues = 0
    for j in sorted(rows.problems):
        if not keep[j]:
            continue
        problems = rows.problems[j]
        field_issues += 1
        several = len(problems) > 1 or problems[0][1]
        quarantine.add(
            "; ".join(text for text, _ in problems)
            + (FIELDS_ISSUE_SUFFIX if several else FIELD_ISSUE_SUFFIX),
            rows.texts[j],
            received_at[rows.page[j]],
        )
    if losers:
        table = table.filter(pa.array(keep))

    unknown: Counter[str] = Counter()
    for col, schema_name in _ENUM_COLUMNS.items():
        allowed = frozenset(enum_values(schema_name))
        vc = pc.value_counts(table[col].drop_null()) if table.num_rows else []
        for item in vc:
            value = item["values"].as_py()
            if value not in allowed:
                unknown[f"{col}={value}"] += item["counts"].as_py()
    if unknown:
        log.warning("%s %s: unknown enum values kept as sent: %s", dataset, day, dict(unknown))
    return Normalised(
        table,
        quarantine.table(),
        records,
        rejected,
        unknown_enum_values=dict(unknown),
        field_issues=field_issues,
        duplicates_dropped=dropped,
    )


def _repeated_ids(ids: pa.ChunkedArray) -> set[str]:
    """The workload ids on more than one row."""
    counts = pc.value_counts(ids)
    several = pc.greater(counts.field("counts"), 1)
    return set(counts.field("values").filter(several).to_pylist())


def _record_texts(
    responses: Iterable[RawResponse], places: list[tuple[int, int]]
) -> dict[tuple[int, int], str]:
    """The records at ``(response ordinal, place in its list)``, as ``raw_record`` text."""
    wanted: dict[int, list[int]] = {}
    for page, index in places:
        wanted.setdefault(page, []).append(index)
    texts: dict[tuple[int, int], str] = {}
    for ordinal, resp in enumerate(responses):
        if ordinal in wanted:
            doc, _ = decode_body(resp, "workloads")
            for index in wanted[ordinal]:
                texts[ordinal, index] = dumps(doc["workloads"][index])
    return texts
