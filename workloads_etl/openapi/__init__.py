"""The Run:ai workloads API contract: the vendored OpenAPI slice (``workloads-api.json``).

One reading of the contract for the whole product: the client derives its filter fields and
enums from it, the normaliser its enums, the simulated control plane its parameters and
validation. ``SOURCE.md`` beside it says where it was cut from and which version it is.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

SPEC_FILE = "workloads-api.json"


@cache
def load_spec() -> dict[str, Any]:
    """The OpenAPI document (parsed once per process; treat it as read-only)."""
    text = resources.files(__package__).joinpath(SPEC_FILE).read_text(encoding="utf-8")
    spec: dict[str, Any] = json.loads(text)
    return spec


def enum_values(schema_name: str) -> tuple[str, ...]:
    """The enum of a component schema, e.g. ``enum_values("WorkloadMetricType")``."""
    return tuple(load_spec()["components"]["schemas"][schema_name]["enum"])


@cache
def _filter_pattern() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(fields, operators) of the ``filterBy`` item pattern ``^(f1|f2|...)(op1|op2|...).+$``."""
    pattern = load_spec()["components"]["parameters"]["WorkloadsFilter"]["schema"]["items"][
        "pattern"
    ]
    m = re.match(r"\^\(([^)]*)\)\(([^)]*)\)", pattern)
    if m is None:  # pragma: no cover - the contract changed shape
        raise RuntimeError("cannot read the filterBy fields and operators from the API spec")
    fields = tuple(m.group(1).split("|"))
    operators = tuple(op.replace("\\", "") for op in m.group(2).split("|"))
    return fields, operators


def filter_fields() -> tuple[str, ...]:
    """The field names of the ``filterBy`` item pattern (list and count operations)."""
    return _filter_pattern()[0]


def filter_operators() -> tuple[str, ...]:
    """The operators of the ``filterBy`` item pattern, in the order the pattern lists them."""
    return _filter_pattern()[1]


@cache
def sort_fields() -> tuple[str, ...]:
    """The values ``sortBy`` accepts."""
    return tuple(load_spec()["components"]["parameters"]["WorkloadsSort"]["schema"]["enum"])


def query_parameter(path: str, name: str, method: str = "get") -> dict[str, Any]:
    """A query parameter of an operation, with a ``$ref`` to a shared parameter resolved."""
    spec = load_spec()
    for param in spec["paths"][path][method].get("parameters", []):
        if "$ref" in param:
            param = spec["components"]["parameters"][param["$ref"].rsplit("/", 1)[-1]]
        if param.get("name") == name:
            return dict(param)
    raise KeyError(f"{method.upper()} {path} has no parameter {name!r}")


def items_enum(path: str, name: str) -> tuple[str, ...]:
    """The enum of an array query parameter's items, e.g. telemetry's ``groupBy``."""
    return tuple(query_parameter(path, name)["schema"]["items"]["enum"])
