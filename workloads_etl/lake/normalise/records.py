"""What every normaliser shares: the quarantine, typed field reading, decoding a response
body, and the time a response was observed."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pyarrow as pa

from workloads_etl.lake.schemas import QUARANTINE, TS
from workloads_etl.runai import body as body_codec
from workloads_etl.runai.models import RawResponse
from workloads_etl.runai.values import parse_http_date, utc

# Ends the reason of a quarantine row whose record kept its row (a field issue); with more
# than one field nulled it reads "(row kept, fields set to null)".
FIELD_ISSUE_MARK = "(row kept, field"
FIELD_ISSUE_SUFFIX = " (row kept, field set to null)"
FIELDS_ISSUE_SUFFIX = " (row kept, fields set to null)"

_INT64 = (-(2**63), 2**63 - 1)
_EXPECTED = {
    "string": "string",
    "date-time": "date-time string",
    "quantity": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
}


class RecordError(ValueError):
    """A record, or one of its fields, that breaks the contract; the message says how."""


@dataclass
class Normalised:
    """What one dataset's responses normalise to, before anything is written."""

    rows: pa.Table
    quarantine: pa.Table
    records: int
    rejected: int
    out_of_window: int = 0
    unknown_enum_values: dict[str, int] = field(default_factory=dict)
    field_issues: int = 0
    duplicates_dropped: int = 0


class Quarantine:
    """The quarantine rows of one dataset partition, gathered as they are found."""

    def __init__(self, dataset: str, day: date, run_id: str) -> None:
        self.dataset, self.day, self.run_id = dataset, day, run_id
        self.reasons: list[str] = []
        self.raws: list[str] = []
        self.times: list[datetime] = []

    def add(self, reason: str, raw: str, at: datetime) -> None:
        self.reasons.append(reason)
        self.raws.append(raw)
        self.times.append(at)

    def __len__(self) -> int:
        return len(self.reasons)

    def table(self) -> pa.Table:
        n = len(self.reasons)
        return pa.table(
            {
                "dataset": pa.array([self.dataset] * n, pa.string()),
                "quarantine_date": pa.array([self.day] * n, pa.date32()),
                "reason": pa.array(self.reasons, pa.string()),
                "raw_record": pa.array(self.raws, pa.string()),
                "run_id": pa.array([self.run_id] * n, pa.string()),
                "quarantined_at": pa.array(self.times, TS),
            },
            schema=QUARANTINE,
        )


def dumps(value: Any) -> str:
    """A record for ``raw_record``: compact JSON, keys in the order received, valid UTF-8."""
    return body_codec.dumps(value)


def dumps_canonical(value: Any) -> str:
    return body_codec.dumps(value, sort_keys=True)


def canonical(value: Any) -> str | None:
    """Canonical JSON text of a value (sorted keys), or None for a missing one."""
    return None if value is None else dumps_canonical(value)


def is_uuid(text: Any) -> bool:
    if not isinstance(text, str) or len(text) != 36:
        return False
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def typed(value: Any, kind: str, where: str) -> Any:
    """``value`` checked against a scalar kind of :class:`~workloads_etl.lake.schemas.Column`
    (``string``, ``date-time``, ``quantity``, ``integer``, ``number``, ``boolean``); raises
    :class:`RecordError` naming ``where``. Date-times and quantities stay text here."""
    if value is None:
        return None
    if kind in ("string", "date-time", "quantity"):
        if isinstance(value, str):
            if not body_codec.valid_text(value):
                raise RecordError(f"{where}: invalid Unicode (a lone surrogate)")
            return value
    elif kind == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if _INT64[0] <= value <= _INT64[1]:
                return value
            raise RecordError(f"{where}: integer out of range")
    elif kind == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                return float(value)
            raise RecordError(f"{where}: number is not finite")
    elif kind == "boolean" and isinstance(value, bool):
        return value
    raise RecordError(f"{where}: expected {_EXPECTED[kind]}, got {type(value).__name__}")


def decode_body(resp: RawResponse, key: str) -> tuple[Any, str | None]:
    """Decode a response body whose ``key`` must be an array; ``(document, problem)``."""
    if not 200 <= resp.status < 300:
        return None, f"HTTP status {resp.status}"
    try:
        doc = body_codec.loads(resp.text)
    except ValueError as exc:
        return None, f"body is not JSON: {exc}"
    if not isinstance(doc, dict):
        return None, f"body is a {type(doc).__name__}, expected an object"
    if not isinstance(doc.get(key), list):
        return None, f"body has no {key!r} array"
    return doc, None


def observed_at(resp: RawResponse) -> datetime:
    """When the control plane answered: its ``Date`` header, else when the answer arrived.

    Using the server's clock makes a re-run against the same control-plane state give the
    same snapshot times.
    """
    header = resp.meta.get("server_date")
    when = parse_http_date(header) if isinstance(header, str) else None
    return when if when is not None else utc(resp.received_at)
