"""Validate JSON documents against schemas of the Run:ai OpenAPI 3.0 slice.

``validator_for("Workload")`` (or ``"#/components/schemas/Workload"``, or any JSON pointer
into the document, e.g. ``"#/paths/~1api~1v1~1workloads/get/responses/200/content/
application~1json/schema"``) returns a ``jsonschema`` validator with format checking.
OpenAPI 3.0's ``nullable: true`` becomes ``anyOf: [{type: null}, <schema>]`` so that
``null`` validates where the spec allows it; ``$ref``s resolve within the whole document
through a ``referencing`` registry.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.protocols import Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from workloads_etl.contract import load_spec

SPEC_URI = "urn:runai:workloads-api"


def openapi_to_jsonschema(node: Any) -> Any:
    """A copy of an OpenAPI 3.0 schema tree with ``nullable`` turned into JSON Schema."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: openapi_to_jsonschema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [{"type": "null"}, out]}
    return out


@lru_cache(maxsize=1)
def _registry() -> Registry:
    document = openapi_to_jsonschema(load_spec())
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    return Registry().with_resource(SPEC_URI, resource)


@cache
def validator_for(schema_ref: str) -> Validator:
    """A validator for a component schema name or a ``#/...`` pointer into the spec."""
    pointer = schema_ref if schema_ref.startswith("#") else f"#/components/schemas/{schema_ref}"
    return Draft202012Validator(
        {"$ref": f"{SPEC_URI}{pointer}"},
        registry=_registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def schema_errors(instance: Any, schema_ref: str) -> list[str]:
    """Readable validation errors (empty when the instance is valid)."""
    errors = sorted(validator_for(schema_ref).iter_errors(instance), key=lambda e: list(e.path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
