"""``filterBy`` expressions for the workload list and count operations.

The API takes ``filterBy`` as an ``explode: false`` array: items travel comma-joined in one
query parameter (``filterBy=name==a,allocatedGPU>=2``). A comma inside a value would therefore
be read by the server as the start of another item, and the spec has no escape for it, so such
values are refused here with a :class:`FilterValueError` instead of silently filtering on
something else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from workloads_etl.openapi import filter_fields, filter_operators
from workloads_etl.runai.errors import ConfigurationError

# The fields and operators of the spec's WorkloadsFilter item pattern.
FILTER_FIELDS: tuple[str, ...] = filter_fields()
FILTER_OPERATORS: tuple[str, ...] = filter_operators()
_DATE_OPERATORS = frozenset({"==", "!=", "<=", ">="})

ITEM_PATTERN = re.compile(
    "^("
    + "|".join(FILTER_FIELDS)
    + ")("
    + "|".join(re.escape(op) for op in FILTER_OPERATORS)
    + ").+$"
)


class FilterValueError(ConfigurationError):
    """A filter item that the API cannot receive intact."""


FilterValue = str | int | float | bool | datetime


def _render(value: FilterValue, op: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if op not in _DATE_OPERATORS:
            raise FilterValueError(f"dates can only be compared with {sorted(_DATE_OPERATORS)}")
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)


def validate_item(item: str) -> str:
    """Check one raw ``field<op>value`` item; returns it unchanged."""
    if "," in item:
        raise FilterValueError(
            f"filterBy item {item!r} contains a comma; filterBy items are sent comma-joined "
            "(explode: false), so the server would split it into two items"
        )
    if not ITEM_PATTERN.match(item):
        raise FilterValueError(
            f"filterBy item {item!r} is not field<op>value with a known field "
            f"and one of {', '.join(FILTER_OPERATORS)}"
        )
    return item


@dataclass(frozen=True)
class FilterBy:
    """An immutable builder: ``FilterBy().eq("phase", "Running").ge("allocatedGPU", 2)``."""

    items: tuple[str, ...] = ()

    def where(self, field: str, op: str, value: FilterValue) -> FilterBy:
        if field not in FILTER_FIELDS:
            raise FilterValueError(f"unknown filterBy field {field!r}")
        if op not in FILTER_OPERATORS:
            raise FilterValueError(f"unknown filterBy operator {op!r}")
        text = _render(value, op)
        if text == "":
            raise FilterValueError(f"filterBy value for {field!r} is empty")
        return FilterBy((*self.items, validate_item(f"{field}{op}{text}")))

    def eq(self, field: str, value: FilterValue) -> FilterBy:
        return self.where(field, "==", value)

    def ne(self, field: str, value: FilterValue) -> FilterBy:
        return self.where(field, "!=", value)

    def le(self, field: str, value: FilterValue) -> FilterBy:
        return self.where(field, "<=", value)

    def ge(self, field: str, value: FilterValue) -> FilterBy:
        return self.where(field, ">=", value)

    def contains(self, field: str, value: FilterValue) -> FilterBy:
        return self.where(field, "=@", value)

    def not_contains(self, field: str, value: FilterValue) -> FilterBy:
        return self.where(field, "!@", value)

    def starts_with(self, field: str, value: FilterValue) -> FilterBy:
        return self.where(field, "=^", value)

    def ends_with(self, field: str, value: FilterValue) -> FilterBy:
        return self.where(field, "=$", value)

    def to_param(self) -> str:
        return ",".join(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)


def filter_param(filter_by: FilterBy | Sequence[str] | None) -> str | None:
    """The ``filterBy`` query value, or None for no filter."""
    if filter_by is None:
        return None
    if isinstance(filter_by, FilterBy):
        return filter_by.to_param() or None
    if isinstance(filter_by, str):
        raise FilterValueError("filter_by must be a FilterBy or a list of items, not a string")
    items: Iterable[str] = filter_by
    checked = [validate_item(i) for i in items]
    return ",".join(checked) or None
