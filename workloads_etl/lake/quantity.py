"""Kubernetes resource quantities (``200Mi``, ``2G``, ``1e3``, ``500m``) as plain numbers.

The grammar is the one of ``k8s.io/apimachinery/pkg/api/resource``::

    quantity        ::= <signedNumber><suffix>
    suffix          ::= <binarySI> | <decimalExponent> | <decimalSI>
    binarySI        ::= Ki | Mi | Gi | Ti | Pi | Ei
    decimalSI       ::= n | u | m | "" | k | M | G | T | P | E
    decimalExponent ::= "e" <signedNumber> | "E" <signedNumber>

A memory quantity parses to bytes, a CPU quantity to cores; the number is the same.

Two deliberate leniencies for Run:ai:

- An uppercase ``K`` is read as 10^3, the same as Kubernetes' ``k`` (``1K`` == ``1k`` ==
  1000). Kubernetes itself rejects ``K``, but the quantity pattern of the Run:ai API contract
  (``^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$``) admits it, so a control plane may send
  it. ``Ki`` stays binary (1024).
- Run:ai reports an empty memory value as ``"0B"`` (its own API examples use it), and ``B``
  is not part of the Kubernetes grammar. A ``B`` written directly after a plain number (``0B``,
  ``512B``) is read as "bytes" and accepted; ``B`` after any other suffix (``1KiB``, ``2GB``,
  ``1KB``) stays invalid, because it is ambiguous (``KB`` is not ``Ki``).

Column work is vectorised: :func:`parse_quantity_array` parses each distinct string once and
maps the results back with ``take``.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "K": Decimal("1e3"),  # Run:ai leniency, see the module docstring
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_QUANTITY = re.compile(
    rf"(?P<num>{_NUMBER})"
    rf"(?:(?P<exp>[eE][+-]?[0-9]+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkKMGTPE]|B)?)"
)


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(text: str) -> float:
    """Parse one quantity to a float (bytes or cores); raise :class:`QuantityError`."""
    if not isinstance(text, str):
        raise QuantityError(f"quantity must be a string, got {type(text).__name__}")
    m = _QUANTITY.fullmatch(text)
    if m is None:
        raise QuantityError(f"not a Kubernetes quantity: {text!r}")
    try:
        number = Decimal(m["num"])
        if m["exp"] is not None:
            value = number.scaleb(int(m["exp"][1:]))
        else:
            suffix = m["suffix"] or ""
            if suffix in _BINARY:
                value = number * _BINARY[suffix]
            elif suffix == "B":
                value = number
            else:
                value = number * _DECIMAL[suffix]
        result = float(value)
    except (InvalidOperation, OverflowError, ValueError) as exc:
        raise QuantityError(f"not a Kubernetes quantity: {text!r}") from exc
    if not math.isfinite(result):
        raise QuantityError(f"quantity out of range: {text!r}")
    return result


def parse_quantity_array(values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """Parse a string column; return ``(float64 values, boolean invalid mask)``.

    Nulls stay null and are valid; an unparsable string gives null and ``invalid=True``.
    Each distinct string is parsed once.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.cast(pa.string())
    if len(values) == 0:
        return pa.array([], pa.float64()), pa.array([], pa.bool_())
    encoded = pc.dictionary_encode(values)
    dictionary = encoded.dictionary.to_pylist()
    parsed = np.empty(len(dictionary), dtype=np.float64)
    bad = np.zeros(len(dictionary), dtype=bool)
    for i, text in enumerate(dictionary):
        try:
            parsed[i] = parse_quantity(text)
        except QuantityError:
            parsed[i] = np.nan
            bad[i] = True
    indices = encoded.indices
    out = pc.take(pa.array(parsed, mask=bad), indices)
    invalid = pc.fill_null(pc.take(pa.array(bad), indices), False)
    return out, invalid
