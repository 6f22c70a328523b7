"""Validate the control plane's responses and documents against the Run:ai OpenAPI slice.

The one way the tests validate against the contract: the spec exactly as ``load_spec()``
reads it, through openapi-schema-validator's OAS 3.0 validator (``nullable``, ``format``
and ``$ref`` included). OpenAPI 3.0.3 is read literally: ``nullable: true`` admits
``null`` only where no ``enum`` or ``allOf`` says otherwise, so ``null`` is rejected for
``SourceApi``, ``GpuRequestType`` or ``phaseReason``; the simulator leaves such optional
fields out instead of sending ``null``.

* ``assert_conforms(response)`` finds the operation from the request's method and path,
  checks that it lists the status code, and validates the body against the response
  schema.
* ``assert_error_body(response, status)`` checks an error against the spec's ``Error``
  schema, also for statuses an operation does not list (e.g. 400 on ``get_workloads``).
* ``assert_schema(instance, ref)`` / ``schema_errors(instance, ref)`` validate any document
  against a component schema name (``"Workload"``) or a JSON pointer into the spec
  (``"#/paths/~1api~1v1~1workloads/get/responses/200/content/application~1json/schema"``).
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import Any

import httpx
from openapi_schema_validator import OAS30Validator, oas30_format_checker

from workloads_etl.openapi import load_spec


@lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    document: dict[str, Any] = load_spec()
    return document


def _path_regex(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
    return re.compile(f"^{pattern}$")


@lru_cache(maxsize=1)
def _paths() -> list[tuple[re.Pattern[str], str]]:
    # literal paths first so /workloads/count is not taken for /workloads/{workloadId}
    templates = sorted(spec()["paths"], key=lambda t: ("{" in t, t))
    return [(_path_regex(t), t) for t in templates]


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def response_schema(method: str, path: str, status: int) -> dict[str, Any] | None:
    """The JSON schema the spec gives for this response; fails if the status is not listed."""
    template = next((t for rx, t in _paths() if rx.match(path)), None)
    assert template is not None, f"{path} is not in the spec"
    operation = spec()["paths"][template].get(method.lower())
    assert operation is not None, f"{method} {template} is not in the spec"
    responses = operation["responses"]
    assert str(status) in responses, (
        f"{operation['operationId']} does not list status {status} (lists {sorted(responses)})"
    )
    content = _resolve(responses[str(status)]).get("content", {})
    media = content.get("application/json")
    return None if media is None else media.get("schema")


def assert_conforms(response: httpx.Response) -> None:
    """Status listed for the operation, JSON content type, body valid against its schema."""
    request = response.request
    schema = response_schema(request.method, request.url.path, response.status_code)
    if schema is None:
        return
    assert response.headers["content-type"].startswith("application/json")
    validator = OAS30Validator(
        {**schema, "components": spec()["components"]}, format_checker=oas30_format_checker
    )
    validator.validate(response.json())


@cache
def schema_validator(schema_ref: str) -> OAS30Validator:
    """A validator for a component schema name or a ``#/...`` JSON pointer into the spec."""
    pointer = schema_ref if schema_ref.startswith("#") else f"#/components/schemas/{schema_ref}"
    # ``$ref`` resolves against this root, i.e. the whole document (its siblings are ignored).
    return OAS30Validator({**spec(), "$ref": pointer}, format_checker=oas30_format_checker)


def assert_schema(instance: Any, schema_ref: str) -> None:
    schema_validator(schema_ref).validate(instance)


def schema_errors(instance: Any, schema_ref: str) -> list[str]:
    """Readable validation errors (empty when the instance is valid)."""
    found = schema_validator(schema_ref).iter_errors(instance)
    errors = sorted(found, key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


def assert_error_body(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert_schema(body, "Error")
    assert body["code"] == status
    assert body["message"]
    return body
