"""Validate httpx responses against the Run:ai OpenAPI slice.

``assert_conforms(response)`` finds the operation from the request's method and path, checks
that it lists the status code, and validates the body against the response schema with
openapi-schema-validator's OAS 3.0 validator (``nullable``, ``format`` and ``$ref`` included).
``assert_error_body(response, status)`` checks an error against the spec's ``Error`` schema,
also for statuses an operation does not list (e.g. 400 on ``get_workloads``).

``nullable: true`` is read as "null is allowed" also where the same schema carries an
``enum`` without ``null`` (``SourceApi``, ``GpuRequestType``) or an ``allOf`` of a
non-nullable schema (``phaseReason``): that is what the document means, while a literal
OpenAPI 3.0.3 reading would reject the ``null`` the control plane sends.
"""

from __future__ import annotations

import copy
import re
from functools import cache, lru_cache
from typing import Any

import httpx
from openapi_schema_validator import OAS30Validator, oas30_format_checker

from workloads_etl.contract import load_spec


def _admit_null(node: Any) -> Any:
    if isinstance(node, list):
        return [_admit_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _admit_null(value) for key, value in node.items()}
    if out.get("nullable") is True:
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        if "allOf" in out:
            inner = {k: v for k, v in out.items() if k != "nullable"}
            return {"anyOf": [inner, {"enum": [None]}]}
    return out


@lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    admitted: dict[str, Any] = _admit_null(copy.deepcopy(load_spec()))
    return admitted


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
def schema_validator(name: str) -> OAS30Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": spec()["components"]}
    return OAS30Validator(schema, format_checker=oas30_format_checker)


def assert_schema(instance: Any, name: str) -> None:
    schema_validator(name).validate(instance)


def assert_error_body(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert_schema(body, "Error")
    assert body["code"] == status
    assert body["message"]
    return body
