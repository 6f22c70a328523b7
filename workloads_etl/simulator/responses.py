"""Response bodies of the simulated control plane: JSON, the Error body, values, timestamps.

* Metric values are the shortest decimal strings that round-trip the model's float64
  exactly (``repr``), integers without a fraction. Timestamps are ISO 8601 with ``Z``
  (``2024-12-20T14:30:00Z``, with fractional seconds only when needed) or, with the
  ``metrics_timestamp_format=space`` setting, ``2023-06-06 12:09:18.211``.
* A metrics answer holds up to 10 types x 1000 samples, so its text is built without a
  Python call per sample: the timestamps once per window (``Stamps``, each with the JSON
  that follows a value), values per series on arrays (``format_values``), then joined.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from starlette.responses import Response


class ApiError(Exception):
    """An error answered with the spec's Error body."""

    def __init__(self, status: int, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()


def error_response(
    status: int,
    message: str,
    details: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": status, "message": message}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


def iso_z(dt: datetime) -> str:
    """``2024-12-20T14:30:00Z`` (fraction only when non-zero, in milliseconds or finer)."""
    dt = dt.astimezone(UTC)
    if dt.microsecond == 0:
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    if dt.microsecond % 1000 == 0:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Stamps:
    """The sample timestamps of one metrics answer (``format_timestamps``), each with the
    JSON text that follows a value up to the next value."""

    __slots__ = ("_tails", "_tails_list", "text")

    def __init__(self, text: Sequence[str]) -> None:
        self.text = list(text)
        self._tails_list = [f'","timestamp":"{t}"}},{{"value":"' for t in self.text]
        self._tails = np.array(self._tails_list, dtype=object)

    def __len__(self) -> int:
        return len(self.text)

    def tails(self, present: np.ndarray) -> list[str]:
        """The tails of the samples where ``present`` (a boolean mask) holds."""
        if len(present) == len(self.text) and present.all():
            return self._tails_list
        return list(self._tails[present].tolist())


_HEAD = '{"value":"'
_NEXT = ',{"value":"'  # ends every tail; cut from the last one


def format_timestamps(ts: np.ndarray, form: str) -> Stamps:
    """Format datetime64[us] sample instants as the metrics endpoint writes them."""
    if len(ts) == 0:
        return Stamps([])
    us = ts.astype("datetime64[us]")
    if form == "space":
        text = np.datetime_as_string(us, unit="ms")
        return Stamps([t.replace("T", " ") for t in text.tolist()])
    micro = us.astype(np.int64) % 1_000_000
    if not micro.any():
        text = np.datetime_as_string(us, unit="s")
    elif not (micro % 1000).any():
        text = np.datetime_as_string(us, unit="ms")
    else:
        text = np.datetime_as_string(us, unit="us")
    return Stamps([t + "Z" for t in text.tolist()])


def format_value(v: float) -> str:
    """Shortest round-tripping decimal; integral values without ``.0``."""
    if v.is_integer() and abs(v) < 1e16:
        return str(int(v))
    return repr(v)


_TEXT_OF: dict[float, str] = {}  # format_value of values seen, for series of few values
_TEXT_OF_MAX = 1 << 17
_POW10 = 10.0 ** np.arange(16)
_MAX_DECIMALS = 4  # a k-decimal value >= 10**-4 prints positionally (repr: from 1e-4 on)
_EXACT = 2.0**50  # whole numbers below it: exact, and so are quotients' floors by 10**j


def _decimal_text(x: np.ndarray) -> list[str] | None:
    """``format_value`` of each value when all are ``>= 0`` and exact ``k``-decimals for
    one ``k <= 4`` (``x == d / 10**k`` for a whole ``d < 2**50``); None otherwise.

    Then each prints as ``d`` with the point ``k`` digits from the right, without leading
    or trailing zeros (nor the point, when the fraction is zero), which is ``repr`` (and
    ``format_value``'s integer form for whole values): that decimal round-trips, and any
    other of as few digits lies ``>= 10**-k`` from it while the doubles rounding to ``x``
    span less than ``10**-k / 4``. The digits are worked out on arrays (float64 holds
    every quantity exactly) and written into one ASCII buffer, dropped zeros as spaces,
    which ``split`` then drops.
    """
    if not x.min() >= 0:
        return None
    for k in range(_MAX_DECIMALS + 1):
        scale = _POW10[k]
        d = np.rint(x * scale)
        if not d.max() < _EXACT:
            return None
        if (d / scale == x).all():
            break
    else:
        return None
    width = max(k + 1, len(str(int(d.max()))))
    powers = _POW10[width - 1 :: -1]  # column c holds the digit of 10**(width - 1 - c)
    q = np.floor(d[:, None] / powers)  # d // 10**j
    digits = (q - 10.0 * np.floor(q / 10.0)).astype(np.uint8) + 48
    point = width - k  # columns before it: the whole part
    chars = np.full((len(x), width + 2), 32, dtype=np.uint8)  # digits, point, separator
    whole = q[:, :point] >= 1  # no leading zeros ...
    whole[:, -1] = True  # ... but the units digit, even of 0.5
    chars[:, :point] = np.where(whole, digits[:, :point], 32)
    if k:  # a fraction digit of 10**-p shows when d % 10**(k-p+1) != 0 (no trailing zeros)
        rest = d[:, None] - q[:, point - 1 : width - 1] * powers[point - 1 : width - 1]
        shown = rest > 0
        chars[:, point] = np.where(shown[:, 0], 46, 32)  # the point
        chars[:, point + 1 : width + 1] = np.where(shown, digits[:, point:], 32)
    return chars.tobytes().decode("ascii").split()


def format_values(values: np.ndarray) -> list[str]:
    """``format_value`` of each finite value of a float64 array, without a Python call per
    value: a constant once, exact decimals (integers, utilisation, cores) on arrays
    (``_decimal_text``), others looked up in a bounded memo."""
    x = np.asarray(values, dtype=np.float64)
    if not len(x):
        return []
    lo, hi = x.min(), x.max()
    if lo == hi:
        return [format_value(float(lo))] * len(x)
    text = _decimal_text(x)
    if text is not None:
        return text
    floats = x.tolist()
    try:
        return list(map(_TEXT_OF.__getitem__, floats))
    except KeyError:
        if len(_TEXT_OF) > _TEXT_OF_MAX:
            _TEXT_OF.clear()
        for v in set(floats).difference(_TEXT_OF):
            _TEXT_OF[v] = format_value(v)
        return list(map(_TEXT_OF.__getitem__, floats))


def measurement_json(
    metric: str, labels: dict[str, str] | None, values: Any, stamps: Sequence[str] | Stamps
) -> str:
    """One measurement: the finite values with their timestamps."""
    arr = np.asarray(values, dtype=np.float64)
    items = ""
    if len(arr):
        if not isinstance(stamps, Stamps):
            stamps = Stamps(stamps)
        if len(stamps) != len(arr):
            raise ValueError(f"{len(arr)} values but {len(stamps)} timestamps")
        ok = np.isfinite(arr)
        if ok.any():
            present = arr if ok.all() else arr[ok]
            tails = stamps.tails(ok)
            lo, hi = present.min(), present.max()
            if lo == hi:  # a constant: its text between every two tails
                text = format_value(float(lo))
                items = _HEAD + text + text.join(tails)
            else:
                pieces: list[str] = [""] * (2 * len(present))
                pieces[0::2] = format_values(present)
                pieces[1::2] = tails
                items = _HEAD + "".join(pieces)
            items = items[: -len(_NEXT)]
    label_text = "null" if labels is None else json.dumps(labels, separators=(",", ":"))
    return f'{{"type":{json.dumps(metric)},"labels":{label_text},"values":[{items}]}}'
