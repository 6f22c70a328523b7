"""The vendored API contract: the file the product ships is the reviewed cut, loaded as
package data (so an installed wheel has it too)."""

from __future__ import annotations

import hashlib
from importlib import resources

from workloads_etl import openapi

# Also given in workloads_etl/openapi/SOURCE.md: a new cut of the contract changes both.
SPEC_SHA256 = "d36fe4e0fc68c92762347a85a40e5167600f639be35d0bfa913a7a9109b4f379"


def test_the_vendored_spec_is_the_reviewed_cut() -> None:
    data = resources.files("workloads_etl.openapi").joinpath(openapi.SPEC_FILE).read_bytes()
    assert hashlib.sha256(data).hexdigest() == SPEC_SHA256
    source = resources.files("workloads_etl.openapi").joinpath("SOURCE.md").read_text()
    assert SPEC_SHA256 in source


def test_the_spec_is_the_workloads_slice() -> None:
    spec = openapi.load_spec()
    assert spec["openapi"] == "3.0.3"
    assert set(spec["paths"]) == {
        "/api/v1/token",
        "/api/v1/workloads",
        "/api/v1/workloads/count",
        "/api/v1/workloads/telemetry",
        "/api/v1/workloads/{workloadId}",
        "/api/v1/workloads/{workloadId}/metrics",
        "/api/v1/workloads/{workloadId}/pods/{podId}/metrics",
    }


def test_filter_fields_and_operators_come_from_the_pattern() -> None:
    param = openapi.load_spec()["components"]["parameters"]["WorkloadsFilter"]
    pattern = param["schema"]["items"]["pattern"]
    fields = openapi.filter_fields()
    assert pattern.startswith("^(" + "|".join(fields) + ")(")
    assert {"createdAt", "nodepool", "allocatedGPU"} <= set(fields)
    assert openapi.filter_operators() == ("==", "!=", "<=", ">=", "=@", "!@", "=^", "=$")
