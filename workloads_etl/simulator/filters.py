"""``filterBy`` / ``sortBy`` / ``search`` over a columnar workload snapshot (a pyarrow Table).

Semantics (the spec leaves them open, these are the simulator's):

* ``filterBy`` arrives comma-joined (``explode: false``). A comma only starts a new clause
  when the text after it begins with a known field and an operator, so values may contain
  commas (``name=@a,b`` is one clause).
* A field's kind comes from its column type: text, number or date-time.
  Text fields take all eight operators, compared case-sensitively; ``<=``/``>=`` compare
  lexicographically. Number fields take ``== != <= >=`` numerically. Date-time fields take
  ``== != <= >=`` with an ISO 8601 value (a value without offset is UTC). Other
  operator/kind pairs, unparsable values and unknown fields are rejected (HTTP 400).
* A missing (null) value never satisfies ``== <= >= =@ =^ =$`` and always satisfies
  ``!=`` and ``!@`` (they are the negations of ``==`` and ``=@``). Several clauses are AND-ed.
* List-valued columns (e.g. a workload's node pools) match when any element matches.
* ``search`` is a case-insensitive substring match over name, project, department and
  submitter; it is AND-ed with the filters.
* Sorting is stable: ties are broken by workload id; missing values sort last in both
  orders.

The filterable fields, the operators and the sortable fields are the spec's, read through
``workloads_etl.openapi``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workloads_etl.openapi import filter_fields, filter_operators, sort_fields

ORDER_OPERATORS = frozenset({"==", "!=", "<=", ">="})
SEARCH_COLUMNS = ("name", "projectName", "departmentName", "submittedBy")
ID_COLUMN = "id"


class FilterError(ValueError):
    """Malformed or unsupported filter/sort/search input (answered with HTTP 400)."""


@lru_cache(maxsize=1)
def _clause_start() -> re.Pattern[str]:
    names = "|".join(sorted(filter_fields(), key=len, reverse=True))
    ops = "|".join(re.escape(o) for o in filter_operators())
    return re.compile(rf"^({names})({ops})(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Clause:
    field: str
    op: str
    value: str

    def __str__(self) -> str:
        return f"{self.field}{self.op}{self.value}"


def parse_filter_by(raw: str | Sequence[str] | None) -> list[Clause]:
    """Split and parse ``filterBy`` (one comma-joined string or several repeated values)."""
    if raw is None:
        return []
    parts: list[str] = []
    for item in [raw] if isinstance(raw, str) else raw:
        parts.extend(item.split(","))
    start = _clause_start()
    clauses: list[Clause] = []
    for part in parts:
        m = start.match(part)
        if m is not None and m.group(3):
            clauses.append(Clause(m.group(1), m.group(2), m.group(3)))
        elif clauses and m is None:
            prev = clauses[-1]
            clauses[-1] = Clause(prev.field, prev.op, f"{prev.value},{part}")
        else:
            raise FilterError(
                f"Invalid filterBy item {part[:80]!r}: expected <field><operator><value> with "
                f"operator one of {' '.join(filter_operators())} and field one of "
                f"{', '.join(filter_fields())}"
            )
    return clauses


def parse_datetime(text: str) -> datetime:
    """Parse an ISO 8601 date-time (``Z`` or offset; none means UTC). Raises FilterError."""
    value = text.strip()
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise FilterError(f"Invalid ISO 8601 date-time {text[:60]!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _kind(typ: pa.DataType) -> str:
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return _kind(typ.value_type)
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        return "date"
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return "number"
    if pa.types.is_boolean(typ):
        return "bool"
    return "text"


def _scalar_for(clause: Clause, typ: pa.DataType) -> pa.Scalar:
    kind = _kind(typ)
    base = typ.value_type if (pa.types.is_list(typ) or pa.types.is_large_list(typ)) else typ
    if kind == "date":
        dt = parse_datetime(clause.value)
        if getattr(base, "tz", None) is None:
            dt = dt.replace(tzinfo=None)
        return pa.scalar(dt, type=base)
    if kind == "number":
        try:
            number = float(clause.value)
        except ValueError:
            raise FilterError(
                f"filterBy {clause.field} needs a number, got {clause.value[:60]!r}"
            ) from None
        if not np.isfinite(number):
            raise FilterError(f"filterBy {clause.field} needs a finite number")
        return pa.scalar(number, type=pa.float64())
    if kind == "bool":
        if clause.value.lower() not in ("true", "false"):
            raise FilterError(f"filterBy {clause.field} needs true or false")
        return pa.scalar(clause.value.lower() == "true")
    return pa.scalar(clause.value, type=pa.string())


def _flat_mask(values: pa.Array, op: str, scalar: pa.Scalar) -> pa.Array:
    """Positive form of ``op`` (``!=`` -> ``==``, ``!@`` -> ``=@``); null where value null."""
    if _kind(values.type) == "number" and not pa.types.is_floating(values.type):
        values = pc.cast(values, pa.float64())
    if op in ("==", "!="):
        return pc.equal(values, scalar)
    if op == "<=":
        return pc.less_equal(values, scalar)
    if op == ">=":
        return pc.greater_equal(values, scalar)
    pattern = scalar.as_py()
    if op in ("=@", "!@"):
        return pc.match_substring(values, pattern)
    if op == "=^":
        return pc.starts_with(values, pattern)
    return pc.ends_with(values, pattern)


def clause_mask(table: pa.Table, clause: Clause) -> pa.Array:
    """Boolean mask (no nulls) of the rows satisfying one clause."""
    if clause.field not in table.column_names:
        raise FilterError(f"filterBy field {clause.field!r} is not supported by this server")
    column = table.column(clause.field).combine_chunks()
    typ = column.type
    kind = _kind(typ)
    if kind in ("date", "number", "bool") and clause.op not in ORDER_OPERATORS:
        raise FilterError(
            f"Operator {clause.op} is not available for the {kind} field {clause.field}; "
            "use ==, !=, <= or >="
        )
    scalar = _scalar_for(clause, typ)
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        flat = pc.list_flatten(column)
        parents = pc.list_parent_indices(column).to_numpy()
        hit = pc.fill_null(_flat_mask(flat, clause.op, scalar), False).to_numpy(
            zero_copy_only=False
        )
        positive = np.zeros(len(column), dtype=bool)
        np.logical_or.at(positive, parents[hit], True)
    else:
        positive = pc.fill_null(_flat_mask(column, clause.op, scalar), False).to_numpy(
            zero_copy_only=False
        )
    if clause.op in ("!=", "!@"):
        return pa.array(~positive)
    return pa.array(positive)


def search_mask(table: pa.Table, text: str) -> pa.Array:
    needle = text.strip()
    mask = np.zeros(table.num_rows, dtype=bool)
    for name in SEARCH_COLUMNS:
        if name not in table.column_names:
            continue
        hit = pc.fill_null(pc.match_substring(table.column(name), needle, ignore_case=True), False)
        mask |= hit.to_numpy(zero_copy_only=False)
    return pa.array(mask)


def select(
    table: pa.Table,
    clauses: Iterable[Clause] = (),
    search: str | None = None,
    base: np.ndarray | None = None,
) -> np.ndarray:
    """Row positions (ascending) of ``table`` satisfying ``base`` mask, clauses and search."""
    mask = np.ones(table.num_rows, dtype=bool) if base is None else base.astype(bool, copy=True)
    for clause in clauses:
        mask &= clause_mask(table, clause).to_numpy(zero_copy_only=False)
    if search is not None and search.strip():
        mask &= search_mask(table, search).to_numpy(zero_copy_only=False)
    return np.flatnonzero(mask)


def sort_positions(
    table: pa.Table, positions: np.ndarray, sort_by: str | None, descending: bool
) -> np.ndarray:
    """Order ``positions`` by ``sort_by`` (stable, ties by id, nulls last)."""
    if sort_by is None:
        return positions[::-1] if descending else positions
    if sort_by not in sort_fields():
        raise FilterError(f"Invalid sortBy {sort_by[:60]!r}; allowed: {', '.join(sort_fields())}")
    if sort_by not in table.column_names:
        raise FilterError(f"sortBy {sort_by!r} is not supported by this server")
    sub = table.select([sort_by, ID_COLUMN]).take(pa.array(positions, type=pa.int64()))
    key = sub.column(sort_by).combine_chunks()
    if pa.types.is_list(key.type) or pa.types.is_large_list(key.type):
        key = _first_elements(key)
    sub = pa.table({"k": key, "id": sub.column(ID_COLUMN)})
    order = "descending" if descending else "ascending"
    idx = pc.sort_indices(
        sub, sort_keys=[("k", order), ("id", "ascending")], null_placement="at_end"
    )
    return positions[idx.to_numpy()]


def _first_elements(column: pa.Array) -> pa.Array:
    """First element of each list (null for empty or null lists)."""
    offsets = column.offsets.to_numpy()
    lengths = np.diff(offsets)
    valid = (lengths > 0) & ~np.asarray(column.is_null().to_numpy(zero_copy_only=False))
    flat = column.values
    firsts = flat.take(pa.array(np.where(valid, offsets[:-1], 0), type=pa.int64()))
    return pc.if_else(pa.array(valid), firsts, pa.nulls(len(column), type=flat.type))
