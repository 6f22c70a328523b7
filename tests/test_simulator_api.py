"""The simulated control plane's HTTP API: conformance to the spec and the semantics behind it.

Everything runs in-process (no socket) against the real synthetic ``Cluster``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
from spec_conformance import assert_conforms, assert_error_body
from starlette.testclient import TestClient

from workloads_etl.openapi import enum_values, load_spec, sort_fields
from workloads_etl.simulator import (
    Cluster,
    FaultConfig,
    SimulatorConfig,
    SimulatorServer,
    create_app,
)
from workloads_etl.simulator.filters import (
    FilterError,
    parse_filter_by,
    select,
    sort_positions,
)
from workloads_etl.simulator.handlers import snapshot_table
from workloads_etl.simulator.params import sample_instants
from workloads_etl.simulator.telemetry import PENDING_BUCKETS

NOW = datetime(2026, 11, 26, 15, tzinfo=UTC)  # a busy hour: some workloads pending
CONFIG = SimulatorConfig(seed=7, workloads=200, days=14, now=NOW)


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    return Cluster(CONFIG)


@contextmanager
def authorized_client(config: SimulatorConfig, cluster: Cluster) -> Iterator[TestClient]:
    """An in-process client of the app serving ``cluster``, holding a bearer token."""
    with TestClient(create_app(config, cluster), base_url="http://simulator") as c:
        r = c.post(
            "/api/v1/token",
            json={
                "grantType": "client_credentials",
                "clientID": config.client_id,
                "clientSecret": config.client_secret,
            },
        )
        assert r.status_code == 200, r.text
        c.headers["Authorization"] = f"Bearer {r.json()['accessToken']}"
        yield c


@pytest.fixture(scope="module")
def client(cluster: Cluster) -> Iterator[TestClient]:
    with authorized_client(CONFIG, cluster) as c:
        yield c


@pytest.fixture(scope="module")
def table(cluster: Cluster) -> pa.Table:
    return snapshot_table(cluster.snapshot(NOW))


@pytest.fixture(scope="module")
def rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


def fetch_all(client: TestClient, params: dict[str, Any], limit: int = 37) -> list[dict[str, Any]]:
    """Page through the list with offset/limit until ``next`` is missing."""
    out: list[dict[str, Any]] = []
    offset = 0
    while True:
        r = client.get("/api/v1/workloads", params={**params, "offset": offset, "limit": limit})
        assert r.status_code == 200, r.text
        body = r.json()
        out.extend(body["workloads"])
        if "next" not in body:
            return out
        assert body["next"] == offset + limit
        assert len(body["workloads"]) == limit
        offset = body["next"]


# ---------------------------------------------------------------- token and auth


@pytest.mark.parametrize(
    ("grant", "id_field", "secret_field"),
    [("client_credentials", "clientID", "clientSecret"), ("app_token", "appID", "appSecret")],
)
def test_token_grants(client: TestClient, grant: str, id_field: str, secret_field: str) -> None:
    r = client.post(
        "/api/v1/token",
        json={"grantType": grant, id_field: CONFIG.client_id, secret_field: CONFIG.client_secret},
    )
    assert_conforms(r)
    body = r.json()
    assert body["expiresIn"] == CONFIG.token_ttl_seconds
    assert len(body["accessToken"]) >= 32
    ok = client.get(
        "/api/v1/workloads/count", headers={"Authorization": f"Bearer {body['accessToken']}"}
    )
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"grantType": "client_credentials", "clientID": "workloads-etl-demo", "clientSecret": "x"},
        {"grantType": "app_token", "appID": "nobody", "appSecret": "demo-secret-change-me"},
        {"grantType": "password", "username": "u", "password": "p"},
        {"grantType": "client_credentials"},
        {"clientID": "workloads-etl-demo", "clientSecret": "demo-secret-change-me"},
        ["not", "an", "object"],
    ],
)
def test_token_rejections_are_400(client: TestClient, body: Any) -> None:
    r = client.post("/api/v1/token", json=body)
    assert_conforms(r)
    err = assert_error_body(r, 400)
    assert CONFIG.client_secret not in r.text
    assert "accessToken" not in err


def test_token_body_must_be_json(client: TestClient) -> None:
    r = client.post("/api/v1/token", content=b"grantType=client_credentials")
    assert_error_body(r, 400)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}],
)
@pytest.mark.parametrize(
    "path", ["/api/v1/workloads", "/api/v1/workloads/count", "/api/v1/workloads/telemetry"]
)
def test_missing_or_invalid_token_is_401(client: TestClient, headers: dict, path: str) -> None:
    r = client.get(path, headers={"Authorization": "", **headers})
    assert_conforms(r)
    assert_error_body(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"


def test_token_expires(cluster: Cluster) -> None:
    app = create_app(replace(CONFIG, token_ttl_seconds=5), cluster)
    clock = [1000.0]
    app.state.simulator.tokens.clock = lambda: clock[0]
    with TestClient(app, base_url="http://simulator") as c:
        token = c.post(
            "/api/v1/token",
            json={
                "grantType": "client_credentials",
                "clientID": CONFIG.client_id,
                "clientSecret": CONFIG.client_secret,
            },
        ).json()
        assert token["expiresIn"] == 5
        auth = {"Authorization": f"Bearer {token['accessToken']}"}
        clock[0] += 4.9
        assert c.get("/api/v1/workloads/count", headers=auth).status_code == 200
        clock[0] += 0.2
        r = c.get("/api/v1/workloads/count", headers=auth)
        assert assert_error_body(r, 401)["message"] == "Token has expired"


# ---------------------------------------------------------------- list and count


def test_list_default_page(client: TestClient, rows: list[dict[str, Any]]) -> None:
    r = client.get("/api/v1/workloads")
    assert_conforms(r)
    body = r.json()
    active = [row for row in rows if not row["deleted"]]
    assert len(active) > 50
    assert len(body["workloads"]) == 50
    assert body["next"] == 50
    assert client.get("/api/v1/workloads/count").json()["count"] == len(active)


def test_list_last_page_has_no_next(client: TestClient) -> None:
    count = client.get("/api/v1/workloads/count").json()["count"]
    r = client.get("/api/v1/workloads", params={"offset": count - 3, "limit": 10})
    assert_conforms(r)
    assert len(r.json()["workloads"]) == 3
    assert "next" not in r.json()
    beyond = client.get("/api/v1/workloads", params={"offset": count + 5})
    assert beyond.json() == {"workloads": []}


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("sort_by", sort_fields())
def test_sort_orders(client: TestClient, table: pa.Table, sort_by: str, order: str) -> None:
    r = client.get(
        "/api/v1/workloads", params={"sortBy": sort_by, "sortOrder": order, "limit": 500}
    )
    assert_conforms(r)
    ids = [w["id"] for w in r.json()["workloads"]]
    by_id = {row["id"]: row for row in table.to_pylist()}
    assert len(ids) == sum(1 for row in by_id.values() if not row["deleted"])
    keys = [_sort_key(by_id[i][sort_by]) for i in ids]
    present = [k for k in keys if k is not None]
    assert all(k is None for k in keys[len(present) :]), "missing values sort last"
    expected = sorted(present, reverse=order == "desc")
    assert present == expected


def _sort_key(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def test_deleted_listing(client: TestClient, rows: list[dict[str, Any]]) -> None:
    deleted = fetch_all(client, {"deleted": "true"}, limit=500)
    active = fetch_all(client, {}, limit=500)
    assert deleted, "the model should have deleted workloads"
    assert all(w["deletedAt"] is not None for w in deleted)
    assert all(w["deletedAt"] is None for w in active)
    assert {w["id"] for w in deleted}.isdisjoint({w["id"] for w in active})
    assert {w["id"] for w in deleted} | {w["id"] for w in active} == {r["id"] for r in rows}
    count = client.get("/api/v1/workloads/count", params={"deleted": "true"}).json()["count"]
    assert count == len(deleted)


def _value_sample(rows: list[dict[str, Any]], field: str, pick: int = 0) -> Any:
    values = sorted(
        {
            str(v)
            for r in rows
            for v in (r[field] if isinstance(r[field], list) else [r[field]])
            if v is not None
        }
    )
    return values[min(pick, len(values) - 1)]


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _filters(rows: list[dict[str, Any]]) -> list[str]:
    """A spread of filterBy expressions derived from the data itself."""
    name = _value_sample(rows, "name", 5)
    project = _value_sample(rows, "projectName", 1)
    created = sorted(r["createdAt"] for r in rows)
    mid = created[len(created) // 2]
    gpus = sorted(r["allocatedGPU"] for r in rows if r["allocatedGPU"] is not None)
    gpu_mid = gpus[len(gpus) // 2]
    return [
        f"name=={name}",
        f"name!={name}",
        f"name=@{name[2:6]}",
        f"name!@{name[2:6]}",
        f"name=^{name[:3]}",
        f"name=${name[-2:]}",
        f"projectName=={project}",
        f"projectName>={project}",
        f"projectName<={project}",
        f"phase=={_value_sample(rows, 'phase', 0)}",
        f"phase!={_value_sample(rows, 'phase', 0)}",
        f"createdAt>={_iso(mid)}",
        f"createdAt<={_iso(mid)}",
        f"createdAt=={_iso(mid)}",
        f"allocatedGPU>={gpu_mid}",
        f"allocatedGPU<={gpu_mid}",
        f"allocatedGPU=={gpu_mid}",
        f"allocatedGPU!={gpu_mid}",
        f"type=={_value_sample(rows, 'type', 1)}",
        f"nodepool=={_value_sample(rows, 'nodepool', 0)}",
        f"submittedBy=@{_value_sample(rows, 'submittedBy', 0)[:4]}",
        f"submittedBy!@{_value_sample(rows, 'submittedBy', 0)[:4]}",
        f"departmentName=^{_value_sample(rows, 'departmentName', 0)[:5]}",
        f"category=={_value_sample(rows, 'category', 0)}",
        "name=@-,allocatedGPU>=1",
        f"projectName!={project},createdAt>={_iso(mid)},phase!=Running",
    ]


def _matches(row: dict[str, Any], clause: str) -> bool:
    """Reference semantics, independent of the pyarrow engine."""
    (c,) = parse_filter_by(clause)
    value = row[c.field]
    values = value if isinstance(value, list) else [value]
    positive_op = {"!=": "==", "!@": "=@"}.get(c.op, c.op)
    hit = any(v is not None and _compare(v, positive_op, c.value) for v in values)
    return not hit if c.op in ("!=", "!@") else hit


def _compare(value: Any, op: str, text: str) -> bool:
    target: Any
    if isinstance(value, datetime):
        target = datetime.fromisoformat(text)
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, int | float):
        target = float(text)
    else:
        target = text
    if op == "==":
        return bool(value == target)
    if op == "<=":
        return bool(value <= target)
    if op == ">=":
        return bool(value >= target)
    if op == "=@":
        return target in value
    if op == "=^":
        return str(value).startswith(target)
    return str(value).endswith(target)


def test_filters_filter(client: TestClient, rows: list[dict[str, Any]]) -> None:
    active = [r for r in rows if not r["deleted"]]
    nonempty = 0
    for expression in _filters(rows):
        clauses = _split(expression)
        expected = {r["id"] for r in active if all(_matches(r, c) for c in clauses)}
        got = fetch_all(client, {"filterBy": expression})
        ids = [w["id"] for w in got]
        assert len(ids) == len(set(ids)), expression
        assert set(ids) == expected, expression
        count = client.get("/api/v1/workloads/count", params={"filterBy": expression})
        assert_conforms(count)
        assert count.json()["count"] == len(expected), expression
        nonempty += bool(expected) and len(expected) < len(active)
    assert nonempty >= 15, "filters should be selective on this data"


def _split(expression: str) -> list[str]:
    return [str(c) for c in parse_filter_by(expression)]


SEARCH_FIELDS = ("name", "projectName", "departmentName", "submittedBy")


def _searched(rows: list[dict[str, Any]], needle: str, *, fold: bool) -> set[str]:
    """Ids of active rows whose searched fields contain ``needle`` (case-folded or as is)."""

    def norm(text: str) -> str:
        return text.lower() if fold else text

    return {
        r["id"]
        for r in rows
        if not r["deleted"] and any(norm(needle) in norm(r[f] or "") for f in SEARCH_FIELDS)
    }


def _search(client: TestClient, needle: str) -> set[str]:
    got = {w["id"] for w in fetch_all(client, {"search": needle}, limit=500)}
    count = client.get("/api/v1/workloads/count", params={"search": needle}).json()["count"]
    assert count == len(got)
    return got


def test_search_is_case_insensitive_over_four_fields(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    active = {r["id"] for r in rows if not r["deleted"]}
    department = rows[0]["departmentName"]
    project = rows[0]["projectName"].removeprefix("proj-")
    needles = [department.upper(), project[:1].upper() + project[1:]]  # e.g. "VISION", "Rlhf"
    for needle in needles:
        assert needle != needle.lower()
        expected = _searched(rows, needle, fold=True)
        assert expected and len(expected) < len(active), needle  # selective, not trivial
        assert _searched(rows, needle, fold=False) != expected  # case matters to a naive match
        assert _search(client, needle) == expected, needle
        assert _search(client, needle.lower()) == expected, needle
    assert _search(client, "zz-no-such-thing") == set()


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"sortBy": "color"}, "sortBy"),
        ({"sortOrder": "up"}, "sortOrder"),
        ({"deleted": "maybe"}, "deleted"),
        ({"filterBy": "color==red"}, "filterBy"),
        ({"filterBy": "name~=x"}, "filterBy"),
        ({"filterBy": "name=="}, "filterBy"),
        ({"filterBy": "createdAt>=yesterday"}, "date-time"),
        ({"filterBy": "createdAt=@2026"}, "createdAt"),
        ({"filterBy": "allocatedGPU>=many"}, "number"),
        ({"filterBy": "allocatedGPU=^1"}, "allocatedGPU"),
    ],
)
def test_list_bad_parameters_are_400(
    client: TestClient, params: dict[str, Any], fragment: str
) -> None:
    r = client.get("/api/v1/workloads", params=params)
    body = assert_error_body(r, 400)
    assert fragment in body["message"]
    if "filterBy" in params:
        assert_error_body(client.get("/api/v1/workloads/count", params=params), 400)


# ---------------------------------------------------------------- get


def test_get_workload(client: TestClient, rows: list[dict[str, Any]]) -> None:
    for row in rows[:: max(1, len(rows) // 15)]:
        r = client.get(f"/api/v1/workloads/{row['id']}")
        assert_conforms(r)
        body = r.json()
        assert body["id"] == row["id"]
        assert (body["deletedAt"] is not None) == row["deleted"]
        pods = body["additionalFields"]["podIds"]
        assert pods == [str(uuid.uuid5(uuid.UUID(row["id"]), f"pod-{i}")) for i in range(len(pods))]


@pytest.mark.parametrize("workload_id", [str(uuid.UUID(int=12345)), "not-a-uuid"])
def test_get_unknown_workload_is_404(client: TestClient, workload_id: str) -> None:
    r = client.get(f"/api/v1/workloads/{workload_id}")
    assert_conforms(r)
    assert_error_body(r, 404)


def test_list_records_conform_page_by_page(client: TestClient) -> None:
    for deleted in ("false", "true"):
        r = client.get("/api/v1/workloads", params={"limit": 500, "deleted": deleted})
        assert_conforms(r)


# ---------------------------------------------------------------- telemetry

GROUPS = ["ClusterId", "DepartmentId", "ProjectId", "Type", "CurrentNodepools", "Phase", "Category"]


@pytest.mark.parametrize("telemetry_type", enum_values("WorkloadTelemetryType"))
@pytest.mark.parametrize(
    "group_by", [[], ["Phase"], ["ProjectId"], ["CurrentNodepools"], ["DepartmentId", "Type"]]
)
def test_telemetry_conforms_and_adds_up(
    client: TestClient, rows: list[dict[str, Any]], telemetry_type: str, group_by: list[str]
) -> None:
    params: dict[str, Any] = {"telemetryType": telemetry_type}
    if group_by:
        params["groupBy"] = ",".join(group_by)
    r = client.get("/api/v1/workloads/telemetry", params=params)
    if telemetry_type == "PENDING_TIME_DISTRIBUTION" and len(group_by) > 1:
        assert_error_body(r, 400)
        return
    assert_conforms(r)
    body = r.json()
    assert body["type"] == telemetry_type
    assert body["timestamp"] == "2026-11-26T15:00:00Z"
    active = [row for row in rows if not row["deleted"]]
    total = sum(float(v["value"]) for v in body["values"])
    if telemetry_type == "WORKLOADS_COUNT":
        assert total == len(active)
    elif telemetry_type == "GPU_ALLOCATION":
        assert total == pytest.approx(sum(r["allocatedGPU"] or 0 for r in active))
    elif telemetry_type == "PENDING_TIME_DISTRIBUTION":
        assert total == sum(1 for r in active if r["phase"] == "Pending")
        per_combo: dict[tuple[str, ...], list[str]] = {}
        for v in body["values"]:
            rest = tuple(g["value"] for g in v["groups"][1:])
            per_combo.setdefault(rest, []).append(v["groups"][0]["value"])
        if not group_by:
            assert list(per_combo) == [()]
        for buckets in per_combo.values():
            assert buckets == [name for name, _ in PENDING_BUCKETS]
    for value in body["values"]:
        keys = [g["key"] for g in value.get("groups", [])]
        expected_keys = group_by
        if telemetry_type == "PENDING_TIME_DISTRIBUTION":
            expected_keys = ["PendingTime", *group_by]
        assert keys == expected_keys


def test_telemetry_groups_match_rows(client: TestClient, rows: list[dict[str, Any]]) -> None:
    r = client.get(
        "/api/v1/workloads/telemetry",
        params={"telemetryType": "WORKLOADS_COUNT", "groupBy": "ProjectId,Phase"},
    )
    got = {
        (v["groups"][0]["value"], v["groups"][1]["value"]): int(v["value"])
        for v in r.json()["values"]
    }
    expected: dict[tuple[str, str], int] = {}
    for row in rows:
        if not row["deleted"]:
            key = (str(row["projectId"]), str(row["phase"]))
            expected[key] = expected.get(key, 0) + 1
    assert got == expected
    names = {v["groups"][0]["value"]: v["groups"][0]["name"] for v in r.json()["values"]}
    assert names == {str(r["projectId"]): r["projectName"] for r in rows if not r["deleted"]}


def test_telemetry_filters(
    client: TestClient, rows: list[dict[str, Any]], cluster: Cluster
) -> None:
    active = [r for r in rows if not r["deleted"]]
    department = _value_sample(active, "departmentId", 0)
    pool = _value_sample(active, "nodepool", 0)
    cases: list[tuple[dict[str, str], int]] = [
        ({"departmentId": department}, sum(r["departmentId"] == department for r in active)),
        (
            {"clusterId": str(cluster.clusters[0].id)},
            sum(r["clusterId"] == str(cluster.clusters[0].id) for r in active),
        ),
        (
            {"nodepoolName": pool},
            sum(r["phase"] == "Running" and r["nodepool"] == pool for r in active),
        ),
        (
            {"filterByPhases": "Running,Pending"},
            sum(r["phase"] in ("Running", "Pending") for r in active),
        ),
    ]
    for params, expected in cases:
        r = client.get(
            "/api/v1/workloads/telemetry", params={"telemetryType": "WORKLOADS_COUNT", **params}
        )
        assert_conforms(r)
        assert int(r.json()["values"][0]["value"]) == expected, params


def test_telemetry_current_nodepools_are_where_workloads_run(
    client: TestClient, rows: list[dict[str, Any]], cluster: Cluster
) -> None:
    active = [r for r in rows if not r["deleted"]]
    running = [r for r in active if r["phase"] == "Running"]
    idle = [r for r in active if r["phase"] != "Running"]
    assert running and idle
    for r in active[:: max(1, len(active) // 20)]:  # the records say the same
        record = client.get(f"/api/v1/workloads/{r['id']}").json()
        assert record["currentNodePools"] == ([r["nodepool"]] if r in running else [])

    def telemetry(kind: str, **params: str) -> dict[str, float]:
        r = client.get("/api/v1/workloads/telemetry", params={"telemetryType": kind, **params})
        assert_conforms(r)
        values = r.json()["values"]
        if "groupBy" not in params:
            return {"": float(values[0]["value"])}
        return {v["groups"][0]["value"]: float(v["value"]) for v in values}

    pools = sorted({r["nodepool"] for r in running})
    expected = {p: float(sum(r["nodepool"] == p for r in running)) for p in pools}
    assert telemetry("WORKLOADS_COUNT", groupBy="CurrentNodepools") == {
        **expected,
        "": float(len(idle)),  # not running: in no node pool
    }
    for pool in {r["nodepool"] for r in active}:
        got = telemetry("WORKLOADS_COUNT", nodepoolName=pool)[""]
        assert got == expected.get(pool, 0.0), pool
    # Grouped by name alone, the two clusters' a100 pools form one group ...
    assert {r["nodepool"] for r in running if r["clusterId"] == cluster.clusters[0].id} & {
        r["nodepool"] for r in running if r["clusterId"] == cluster.clusters[1].id
    } == {"a100"}
    # ... grouped together with ClusterId they stay apart: GPU allocation per (cluster,
    # pool) is the running workloads' GPUs, as the model's pool totals
    grouped = client.get(
        "/api/v1/workloads/telemetry",
        params={"telemetryType": "GPU_ALLOCATION", "groupBy": "ClusterId,CurrentNodepools"},
    )
    assert_conforms(grouped)
    allocation = {
        (v["groups"][0]["value"], v["groups"][1]["value"]): float(v["value"])
        for v in grouped.json()["values"]
    }
    assert {k: v for k, v in allocation.items() if k[1] == ""} == {
        (c, ""): 0.0 for c in {r["clusterId"] for r in idle}
    }
    keys = sorted({(r["clusterId"], r["nodepool"]) for r in running})
    assert {k: v for k, v in allocation.items() if k[1]} == {
        (c, p): cluster.gpu_allocated_at(p, NOW, cluster_id=c) for c, p in keys
    }
    assert {k: v for k, v in allocation.items() if k[1]} == {
        (c, p): sum(r["allocatedGPU"] for r in running if (r["clusterId"], r["nodepool"]) == (c, p))
        for c, p in keys
    }
    with pytest.raises(LookupError, match="ambiguous"):
        cluster.gpu_allocated_at("a100", NOW)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"telemetryType": "CPU_COUNT"},
        {"telemetryType": "WORKLOADS_COUNT", "groupBy": "Color"},
        {"telemetryType": "WORKLOADS_COUNT", "groupBy": "Phase,Type,ProjectId"},
        {"telemetryType": "WORKLOADS_COUNT", "filterByPhases": "Sleeping"},
        {"telemetryType": "WORKLOADS_COUNT", "clusterId": "cluster-1"},
    ],
)
def test_telemetry_bad_parameters_are_400(client: TestClient, params: dict[str, str]) -> None:
    r = client.get("/api/v1/workloads/telemetry", params=params)
    assert_conforms(r)
    assert_error_body(r, 400)


# ---------------------------------------------------------------- metrics


def _long_running(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A workload that ran for at least the last day before NOW."""
    candidates = [
        r
        for r in rows
        if r["phase"] == "Running" and not r["deleted"] and r["createdAt"] < NOW - timedelta(days=2)
    ]
    assert candidates
    return candidates[0]


def _metrics(client: TestClient, workload_id: str, **params: Any) -> Any:
    return client.get(f"/api/v1/workloads/{workload_id}/metrics", params=params)


MAX_METRIC_TYPES = 10  # per request, as the Run:ai professional-services script batches


def _batched_measurements(
    client: TestClient, path: str, types: Sequence[str], **params: Any
) -> list[dict[str, Any]]:
    """All measurements of ``types``, asked for in batches of at most ten types."""
    out: list[dict[str, Any]] = []
    for k in range(0, len(types), MAX_METRIC_TYPES):
        batch = types[k : k + MAX_METRIC_TYPES]
        response = client.get(path, params={**params, "metricType": ",".join(batch)})
        assert_conforms(response)
        assert response.status_code == 200, response.text
        out.extend(response.json()["measurements"])
    return out


@pytest.mark.parametrize("samples", [0, 1, 20, 1000])
def test_metrics_every_type_and_sample_placement(
    client: TestClient, rows: list[dict[str, Any]], samples: int
) -> None:
    workload = _long_running(rows)
    start, end = NOW - timedelta(hours=7), NOW - timedelta(hours=1)
    types = enum_values("WorkloadMetricType")
    assert len(types) > MAX_METRIC_TYPES
    measurements = _batched_measurements(
        client,
        f"/api/v1/workloads/{workload['id']}/metrics",
        types,
        start=_iso(start),
        end=_iso(end),
        numberOfSamples=samples,
    )
    assert {m["type"] for m in measurements} == set(types)
    allowed = {start + (end - start) * i / samples for i in range(samples)} if samples else set()
    for m in measurements:
        stamps = [datetime.fromisoformat(v["timestamp"]) for v in m["values"]]
        assert set(stamps) <= allowed
        assert stamps == sorted(stamps)
        for v in m["values"]:
            assert np.isfinite(float(v["value"]))
    if samples:
        util = [m for m in measurements if m["type"] == "GPU_UTILIZATION"]
        assert util
        assert len(util[0]["values"]) == samples, "a running workload has every sample"


def test_metric_windows_agree_where_they_overlap(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    workload = _long_running(rows)
    a = NOW - timedelta(hours=10)
    wide = _metrics(
        client,
        workload["id"],
        metricType="GPU_UTILIZATION,CPU_USAGE_CORES",
        start=_iso(a),
        end=_iso(a + timedelta(hours=8)),
        numberOfSamples=16,
    ).json()
    narrow = _metrics(
        client,
        workload["id"],
        metricType="GPU_UTILIZATION,CPU_USAGE_CORES",
        start=_iso(a + timedelta(hours=2)),
        end=_iso(a + timedelta(hours=6)),
        numberOfSamples=8,
    ).json()

    def index(body: Any) -> dict[tuple[str, str], str]:
        return {
            (m["type"], v["timestamp"]): v["value"]
            for m in body["measurements"]
            for v in m["values"]
        }

    wide_values, narrow_values = index(wide), index(narrow)
    shared = wide_values.keys() & narrow_values.keys()
    assert len(shared) == 16
    assert all(wide_values[k] == narrow_values[k] for k in shared)


def test_metrics_zero_width_window(client: TestClient, rows: list[dict[str, Any]]) -> None:
    workload = _long_running(rows)
    r = _metrics(
        client,
        workload["id"],
        metricType="GPU_UTILIZATION,POD_COUNT",
        start=_iso(NOW - timedelta(hours=1)),
        end=_iso(NOW - timedelta(hours=1)),
    )
    assert_conforms(r)
    assert r.json() == {
        "measurements": [
            {"type": "GPU_UTILIZATION", "labels": None, "values": []},
            {"type": "POD_COUNT", "labels": None, "values": []},
        ]
    }


def test_metrics_have_no_samples_after_the_clock(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    workload = _long_running(rows)
    start = NOW - timedelta(minutes=10)
    r = _metrics(
        client,
        workload["id"],
        metricType="GPU_UTILIZATION,GPU_ALLOCATION,POD_COUNT",
        start=_iso(start),
        end=_iso(NOW + timedelta(minutes=10)),
        numberOfSamples=20,
    )
    assert_conforms(r)
    before_now = [start + timedelta(minutes=i) for i in range(10)]  # one a minute, then NOW
    for m in r.json()["measurements"]:
        stamps = [datetime.fromisoformat(v["timestamp"]) for v in m["values"]]
        assert stamps == before_now, m["type"]
    future = _metrics(
        client,
        workload["id"],
        metricType="GPU_ALLOCATION",
        start=_iso(NOW),
        end=_iso(NOW + timedelta(days=1)),
    )
    assert future.json()["measurements"] == [
        {"type": "GPU_ALLOCATION", "labels": None, "values": []}
    ]


def test_sample_instants_are_evenly_spaced() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    got = sample_instants(start, start + timedelta(seconds=10), 3)
    expected = [start + timedelta(seconds=10) * i / 3 for i in range(3)]
    assert [np.datetime64(e.replace(tzinfo=None), "us") for e in expected] == list(got)


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"metricType": "GPU_UTILIZATION", "end": "2026-11-26T00:00:00Z"}, 400),
        ({"metricType": "GPU_UTILIZATION", "start": "2026-11-26T00:00:00Z"}, 400),
        ({"start": "2026-11-26T00:00:00Z", "end": "2026-11-26T01:00:00Z"}, 400),
        (
            {
                "metricType": "GPU_TEMPERATURE",
                "start": "2026-11-26T00:00:00Z",
                "end": "2026-11-26T01:00:00Z",
            },
            400,
        ),
        (
            {"metricType": "GPU_UTILIZATION", "start": "yesterday", "end": "2026-11-26T01:00:00Z"},
            400,
        ),
        (
            {
                "metricType": "GPU_UTILIZATION",
                "start": "2026-11-26T02:00:00Z",
                "end": "2026-11-26T01:00:00Z",
            },
            400,
        ),
        (
            {
                "metricType": "GPU_UTILIZATION",
                "start": "2026-11-26T00:00:00Z",
                "end": "2026-11-26T01:00:00Z",
                "numberOfSamples": 1001,
            },
            400,
        ),
        (
            {
                "metricType": "GPU_UTILIZATION",
                "start": "2026-11-26T00:00:00Z",
                "end": "2026-11-26T01:00:00Z",
                "numberOfSamples": -1,
            },
            400,
        ),
    ],
)
def test_metrics_bad_parameters(
    client: TestClient, rows: list[dict[str, Any]], params: dict[str, Any], status: int
) -> None:
    r = _metrics(client, rows[0]["id"], **params)
    assert_conforms(r)
    assert_error_body(r, status)


def test_metrics_unknown_workload_is_404(client: TestClient) -> None:
    r = _metrics(
        client,
        str(uuid.UUID(int=99)),
        metricType="GPU_UTILIZATION",
        start="2026-11-26T00:00:00Z",
        end="2026-11-26T01:00:00Z",
    )
    assert_conforms(r)
    assert_error_body(r, 404)


def test_pod_metrics(client: TestClient, rows: list[dict[str, Any]]) -> None:
    workload = _long_running(rows)
    detail = client.get(f"/api/v1/workloads/{workload['id']}").json()
    pods = detail["additionalFields"]["podIds"]
    window = {
        "start": _iso(NOW - timedelta(hours=3)),
        "end": _iso(NOW - timedelta(hours=1)),
        "numberOfSamples": 12,
    }
    types = enum_values("PodMetricType")
    measurements = _batched_measurements(
        client, f"/api/v1/workloads/{workload['id']}/pods/{pods[0]}/metrics", types, **window
    )
    assert {m["type"] for m in measurements} == set(types)
    per_pod = next(m for m in measurements if m["type"] == "CPU_USAGE_CORES")
    whole = _metrics(client, workload["id"], metricType="CPU_USAGE_CORES", **window).json()
    whole_values = {v["timestamp"]: float(v["value"]) for v in whole["measurements"][0]["values"]}
    assert whole_values
    for v in per_pod["values"]:
        assert float(v["value"]) * len(pods) == pytest.approx(whole_values[v["timestamp"]])
    assert per_pod["labels"]["pod"] == pods[0]
    other = client.get(
        f"/api/v1/workloads/{workload['id']}/pods/{uuid.uuid4()}/metrics",
        params={"metricType": "CPU_USAGE_CORES", **window},
    )
    assert_error_body(other, 404)
    bad = client.get(
        f"/api/v1/workloads/{workload['id']}/pods/{pods[0]}/metrics",
        params={"metricType": "POD_COUNT", **window},
    )
    assert_error_body(bad, 400)


def test_pod_metrics_of_a_past_window_stay_the_same_after_the_workload_ends() -> None:
    """Pod count and GPUs per pod are the workload's layout, not its state at the clock."""
    day = datetime(2026, 11, 26, tzinfo=UTC)
    late = Cluster(SimulatorConfig(seed=7, workloads=300, days=3, now=day.replace(hour=23)))
    late_now = late.now()

    def fits(i: int) -> bool:
        pods, gpus_per_pod = late.pod_layout(i)
        ends = [e for _, e in late.run_intervals(i)]
        e = ends[-1] if ends else None
        return (
            pods >= 2
            and gpus_per_pod >= 2
            and e is not None
            and day + timedelta(hours=1) < e < late_now
            and late.run_intervals(i)[-1][0] < e - timedelta(minutes=40)
        )

    index = next(i for i in range(len(late.snapshot(late_now))) if fits(i))
    finished = late.run_intervals(index)[-1][1]
    assert finished is not None
    early = Cluster(replace(late.config, now=finished - timedelta(minutes=10)))
    assert early.anchor == late.anchor  # same day: the same timeline, an earlier clock
    workload_id = late.draws.ids[index]
    pods, gpus_per_pod = late.pod_layout(index)
    devices = int(np.ceil(gpus_per_pod))
    window: dict[str, Any] = {
        "start": _iso(finished - timedelta(minutes=40)),
        "end": _iso(finished - timedelta(minutes=20)),
        "numberOfSamples": 5,
    }
    types = enum_values("PodMetricType")
    bodies = []
    for model in (early, late):
        with authorized_client(model.config, model) as c:
            record = c.get(f"/api/v1/workloads/{workload_id}").json()
            pod_list = record["additionalFields"]["podIds"]
            assert len(pod_list) == pods
            pod_body = _batched_measurements(
                c, f"/api/v1/workloads/{workload_id}/pods/{pod_list[-1]}/metrics", types, **window
            )
            whole = _metrics(c, workload_id, metricType="GPU_MEMORY_USAGE_BYTES", **window)
            bodies.append((record["phase"], pod_body, whole.json()))
    (early_phase, early_body, early_whole), (late_phase, late_body, late_whole) = bodies
    assert early_phase == "Running" and late_phase in ("Completed", "Failed", "Stopped")
    assert early_body == late_body
    assert early_whole == late_whole
    whole_values = late_whole["measurements"][0]["values"]
    per_gpu = [m for m in late_body if m["type"] == "GPU_MEMORY_USAGE_BYTES_PER_GPU"]
    assert [m["labels"]["gpu"] for m in per_gpu] == [str(g) for g in range(devices)]
    for m in per_gpu:  # each GPU of each pod holds an even share of the workload's memory
        assert len(m["values"]) == 5
        for v, w in zip(m["values"], whole_values, strict=True):
            assert float(v["value"]) * devices * pods == pytest.approx(float(w["value"]))


def test_pod_metrics_per_gpu_of_a_cpu_only_pod_are_empty(
    client: TestClient, rows: list[dict[str, Any]], cluster: Cluster
) -> None:
    cpu_only = [
        r for r in rows if r["phase"] == "Running" and cluster.pod_layout(r["index"])[1] == 0
    ]
    assert cpu_only
    workload_id = cpu_only[0]["id"]
    pod = client.get(f"/api/v1/workloads/{workload_id}").json()["additionalFields"]["podIds"][0]
    r = client.get(
        f"/api/v1/workloads/{workload_id}/pods/{pod}/metrics",
        params={
            "metricType": "GPU_UTILIZATION_PER_GPU,CPU_USAGE_CORES",
            "start": _iso(NOW - timedelta(minutes=30)),
            "end": _iso(NOW),
            "numberOfSamples": 3,
        },
    )
    assert_conforms(r)
    per_gpu, cpu = r.json()["measurements"]
    assert per_gpu == {"type": "GPU_UTILIZATION_PER_GPU", "labels": None, "values": []}
    assert cpu["labels"] == {"pod": pod} and len(cpu["values"]) == 3


def test_space_timestamp_format(cluster: Cluster, rows: list[dict[str, Any]]) -> None:
    config = replace(CONFIG, faults=FaultConfig(metrics_timestamp_format="space"))
    with TestClient(create_app(config, cluster)) as c:
        token = c.post(
            "/api/v1/token",
            json={
                "grantType": "client_credentials",
                "clientID": CONFIG.client_id,
                "clientSecret": CONFIG.client_secret,
            },
        ).json()["accessToken"]
        workload = _long_running(rows)
        r = c.get(
            f"/api/v1/workloads/{workload['id']}/metrics",
            params={
                "metricType": "GPU_UTILIZATION",
                "start": "2026-11-26T00:00:00Z",
                "end": "2026-11-26T00:00:01Z",
                "numberOfSamples": 2,
            },
            headers={"Authorization": f"Bearer {token}"},
        )
    stamps = [v["timestamp"] for v in r.json()["measurements"][0]["values"]]
    assert stamps == ["2026-11-26 00:00:00.000", "2026-11-26 00:00:00.500"]


# ---------------------------------------------------------------- filter engine units


def test_filter_by_splits_on_clause_boundaries_only() -> None:
    clauses = parse_filter_by("name=@a,b,allocatedGPU>=2,createdAt>=2026-01-01T00:00:00Z")
    assert [str(c) for c in clauses] == [
        "name=@a,b",
        "allocatedGPU>=2",
        "createdAt>=2026-01-01T00:00:00Z",
    ]
    with pytest.raises(FilterError):
        parse_filter_by(",name==x")


def test_engine_on_a_tiny_table() -> None:
    t = pa.table(
        {
            "id": ["c", "a", "b", "d"],
            "name": ["x-1", "y-2", None, "x-3"],
            "allocatedGPU": [1.0, None, 4.0, 2.0],
            "nodepool": [["p1"], ["p2", "p1"], [], None],
        }
    )
    assert select(t, parse_filter_by("name!=x-1")).tolist() == [1, 2, 3]
    assert select(t, parse_filter_by("name=^x")).tolist() == [0, 3]
    assert select(t, parse_filter_by("allocatedGPU>=2")).tolist() == [2, 3]
    assert select(t, parse_filter_by("nodepool==p1")).tolist() == [0, 1]
    assert select(t, parse_filter_by("nodepool!=p1")).tolist() == [2, 3]
    assert select(t, [], search="X-").tolist() == [0, 3]
    everything = np.arange(4)
    assert sort_positions(t, everything, "allocatedGPU", False).tolist() == [0, 3, 2, 1]
    assert sort_positions(t, everything, "allocatedGPU", True).tolist() == [2, 3, 0, 1]
    assert sort_positions(t, everything, "nodepool", False).tolist() == [0, 1, 2, 3]


def test_spec_lists_the_served_operations() -> None:
    operations = {
        op["operationId"] for path in load_spec()["paths"].values() for op in path.values()
    }
    assert operations == {
        "grant_token",
        "get_workloads",
        "get_workload",
        "count_workloads",
        "get_workloads_telemetry",
        "get_workload_metrics",
        "get_workload_pod_metrics",
    }


def test_conformance_check_rejects_violations(client: TestClient) -> None:
    good = client.get("/api/v1/workloads", params={"limit": 2})
    assert_conforms(good)
    body = good.json()
    body["workloads"][0]["phase"] = "Hibernating"
    with pytest.raises(Exception, match="Hibernating"):
        assert_conforms(httpx.Response(200, json=body, request=good.request))
    with pytest.raises(AssertionError, match="does not list status 400"):
        assert_conforms(
            httpx.Response(400, json={"code": 400, "message": "x"}, request=good.request)
        )


# ---------------------------------------------------------------- at most ten metric types


@pytest.mark.parametrize("pod", [False, True], ids=["workload", "pod"])
def test_at_most_ten_metric_types_per_request(
    client: TestClient, rows: list[dict[str, Any]], pod: bool
) -> None:
    workload = _long_running(rows)
    path = f"/api/v1/workloads/{workload['id']}/metrics"
    types = enum_values("WorkloadMetricType")
    if pod:
        pod_id = client.get(f"/api/v1/workloads/{workload['id']}").json()["additionalFields"][
            "podIds"
        ][0]
        path = f"/api/v1/workloads/{workload['id']}/pods/{pod_id}/metrics"
        types = enum_values("PodMetricType")
    window: dict[str, Any] = {
        "start": _iso(NOW - timedelta(hours=2)),
        "end": _iso(NOW - timedelta(hours=1)),
        "numberOfSamples": 3,
    }
    too_many = client.get(path, params={"metricType": ",".join(types[:11]), **window})
    assert_conforms(too_many)
    body = assert_error_body(too_many, 400)
    assert "at most 10" in body["message"] and "got 11" in body["message"]
    pairs: list[tuple[str, Any]] = [("metricType", t) for t in types[:11]]
    repeated = client.get(path, params=[*pairs, *window.items()])
    assert_error_body(repeated, 400)  # repeated parameters count as well
    ten = client.get(path, params={"metricType": ",".join(types[:10]), **window})
    assert_conforms(ten)
    assert ten.status_code == 200
    assert {m["type"] for m in ten.json()["measurements"]} == set(types[:10])


# ---------------------------------------------------------------- the admin clock


def test_clock_endpoint_is_404_without_admin(client: TestClient, cluster: Cluster) -> None:
    r = client.post("/_simulator/clock", json={"now": _iso(NOW + timedelta(days=1))})
    assert_error_body(r, 404)
    assert cluster.now() == NOW


def _date(response: httpx.Response) -> datetime:
    return parsedate_to_datetime(response.headers["date"])


def test_clock_endpoint_moves_the_clock() -> None:
    config = replace(CONFIG, admin=True)
    model = Cluster(config)
    with authorized_client(config, model) as api:
        before = api.get("/api/v1/workloads/count")
        assert _date(before) == NOW
        later = NOW + timedelta(days=1, hours=3, seconds=5)
        r = api.post("/_simulator/clock", json={"now": "2026-11-27T19:00:05+01:00"})
        assert r.status_code == 200, r.text
        assert r.json() == {"now": "2026-11-27T18:00:05Z"}
        assert _date(r) == later  # the answer tells the new clock already
        assert model.now() == later
        assert model.anchor == datetime(2026, 11, 12, tzinfo=UTC)  # the timeline stays
        table = snapshot_table(model.snapshot(later))
        active = [row["id"] for row in table.to_pylist() if not row["deleted"]]
        count = api.get("/api/v1/workloads/count")
        assert _date(count) == later
        assert count.json()["count"] == len(active) != before.json()["count"]
        assert [w["id"] for w in fetch_all(api, {}, limit=500)] == active
        telemetry = api.get(
            "/api/v1/workloads/telemetry", params={"telemetryType": "GPU_ALLOCATION"}
        )
        assert telemetry.json()["timestamp"] == "2026-11-27T18:00:05Z"
        for bad in ({"now": "tomorrow"}, {"when": _iso(NOW)}, ["2026-11-27T00:00:00Z"]):
            assert_error_body(api.post("/_simulator/clock", json=bad), 400)
        assert_error_body(api.post("/_simulator/clock", content=b"now=1"), 400)
        assert model.now() == later
        # no token needed, and an earlier instant is fine too
        back = api.post("/_simulator/clock", json={"now": _iso(NOW)}, headers={"Authorization": ""})
        assert back.json() == {"now": "2026-11-26T15:00:00Z"}
        assert api.get("/api/v1/workloads/count").json() == before.json()


@pytest.mark.parametrize("in_process", [True, False], ids=["thread", "subprocess"])
def test_server_set_clock(in_process: bool) -> None:
    config = SimulatorConfig(seed=3, workloads=40, days=3, now=NOW, admin=True)
    later = NOW + timedelta(hours=5, seconds=1)
    with SimulatorServer(config, in_process=in_process) as server:
        assert server.set_clock(later) == later
        assert server.cluster.now() == later  # the local model follows
        with httpx.Client(base_url=server.base_url, timeout=10) as h:
            assert _date(h.get("/healthz")) == later
    assert "--admin" in SimulatorServer(config)._command(8080)
    plain = replace(config, admin=False)
    assert "--no-admin" in SimulatorServer(plain)._command(8080)
    with SimulatorServer(plain) as server:
        with pytest.raises(RuntimeError, match="admin"):
            server.set_clock(later)
        with httpx.Client(base_url=server.base_url, timeout=10) as h:
            assert_error_body(h.post("/_simulator/clock", json={"now": _iso(later)}), 404)


# ---------------------------------------------------------------- moves over the API


def test_moves_show_after_the_midnight() -> None:
    config = replace(CONFIG, admin=True)
    model = Cluster(config)
    east = model.clusters[0].id
    moves = [
        m
        for m in model.moves()
        if m.at < NOW and model.draws.created[m.index] < m.at.timestamp() - 1
    ]
    project_move = next(m for m in moves if m.project_from != m.project_to)
    pool_move = next(m for m in moves if m.nodepool_from != m.nodepool_to)
    tick = timedelta(seconds=1)
    with authorized_client(config, model) as api:
        for move in (project_move, pool_move):
            for at, moved in ((move.at - tick, False), (move.at, False), (move.at + tick, True)):
                api.post("/_simulator/clock", json={"now": _iso(at)})
                r = api.get(f"/api/v1/workloads/{move.workload_id}")
                assert_conforms(r)
                doc = r.json()
                assert doc["projectId"] == (move.project_to if moved else move.project_from)
                assert doc["departmentId"] == (
                    move.department_to if moved else move.department_from
                )
                pool = move.nodepool_to if moved else move.nodepool_from
                assert doc["requestedNodePools"][0] == pool
                if doc["phase"] == "Running":
                    assert doc["currentNodePools"] == [pool]
                # the list and its filters, and telemetry, see the same
                listed = fetch_all(api, {"filterBy": f"projectId=={doc['projectId']}"}, 500)
                assert move.workload_id in {w["id"] for w in listed}
                other = move.project_from if moved else move.project_to
                if other != doc["projectId"]:
                    listed = fetch_all(api, {"filterBy": f"projectId=={other}"}, 500)
                    assert move.workload_id not in {w["id"] for w in listed}
                listed = fetch_all(api, {"filterBy": f"nodepool=={pool}"}, 500)
                assert move.workload_id in {w["id"] for w in listed}
        # after the pool move the h100-80gb allocation of prod-east counts the workload
        at = pool_move.at + tick
        api.post("/_simulator/clock", json={"now": _iso(at)})
        r = api.get(
            "/api/v1/workloads/telemetry",
            params={"telemetryType": "GPU_ALLOCATION", "groupBy": "ClusterId,CurrentNodepools"},
        )
        assert_conforms(r)
        allocation = {
            (v["groups"][0]["value"], v["groups"][1]["value"]): float(v["value"])
            for v in r.json()["values"]
        }
        h100 = allocation[(east, "h100-80gb")]
        assert h100 == model.gpu_allocated_at("h100-80gb", at, cluster_id=east)
        running = fetch_all(api, {"filterBy": "nodepool==h100-80gb,phase==Running"}, 500)
        mine = [w for w in running if w["clusterId"] == east]
        assert pool_move.workload_id in {w["id"] for w in mine}
        assert h100 == sum(w["allocatedResources"]["gpu"] for w in mine)
        assert h100 == model.gpu_allocated_at("h100-80gb", at, cluster_id=east)
        count = api.get(
            "/api/v1/workloads/telemetry",
            params={
                "telemetryType": "WORKLOADS_COUNT",
                "nodepoolName": "h100-80gb",
                "clusterId": east,
            },
        )
        assert float(count.json()["values"][0]["value"]) == len(mine)


# ----------------------------------------------------------------- generated catalogues


def test_list_pages_through_a_generated_cluster() -> None:
    config = SimulatorConfig(
        seed=4, workloads=1500, days=2, now=NOW, clusters=6, gpus=900, nodepools_per_cluster=2
    )
    model = Cluster(config)
    with authorized_client(config, model) as c:
        total = c.get("/api/v1/workloads/count").json()["count"]
        seen: list[str] = []
        offset: int | None = 0
        while offset is not None:
            body = c.get("/api/v1/workloads", params={"offset": offset, "limit": 500}).json()
            assert len(body["workloads"]) <= 500
            seen += [w["id"] for w in body["workloads"]]
            offset = body.get("next")
        records = c.get("/api/v1/workloads", params={"limit": 300, "offset": 500}).json()
    assert total > 500 and len(seen) == len(set(seen)) == total
    clusters = {x.id: x for x in model.clusters}
    pools = {(p.cluster_id, p.name) for p in model.nodepools}
    for w in records["workloads"]:
        assert w["clusterId"] in clusters
        assert (w["clusterId"], w["requestedNodePools"][0]) in pools
    assert {clusters[w["clusterId"]].name for w in records["workloads"]} >= {"cluster-03"}


def test_simulate_command_options() -> None:
    from click.testing import CliRunner

    from workloads_etl.simulator.__main__ import main

    runner = CliRunner()
    shown = runner.invoke(main, ["--help"])
    assert shown.exit_code == 0
    for option in ("--clusters", "--gpus", "--nodepools-per-cluster"):
        assert option in shown.output
    too_few = runner.invoke(main, ["--clusters", "8", "--gpus", "50"])
    assert too_few.exit_code == 2
    assert "at least 4 per node pool" in too_few.output and "80 GPUs" in too_few.output
    assert runner.invoke(main, ["--clusters", "0"]).exit_code == 2
    assert runner.invoke(main, ["--gpus", "20", "--nodepools-per-cluster", "9"]).exit_code == 2
    command = SimulatorServer(
        SimulatorConfig(clusters=3, gpus=300, nodepools_per_cluster=2), in_process=False
    )._command(8080)
    assert command[command.index("--clusters") + 1] == "3"
    assert command[command.index("--gpus") + 1] == "300"
    assert command[command.index("--nodepools-per-cluster") + 1] == "2"
    assert "--clusters" not in SimulatorServer(CONFIG, in_process=False)._command(8080)


def test_format_values_matches_format_value() -> None:
    from workloads_etl.simulator.responses import format_value, format_values

    rng = np.random.default_rng(5)
    samples = [
        np.round(rng.random(500) * 100, 1),
        np.round(rng.random(500) * 64, 3),
        np.round(rng.random(500) * 1e12),
        np.round(rng.random(500), 4) / 3,
        rng.standard_normal(500) * 10.0 ** rng.integers(-8, 20, 500),
        np.array([0.0, -0.0, 1e16, 2.0**53, 1e-4, 1e-5, 0.1, 1 / 3, 12.5, 99.9, 100.0]),
        np.full(7, 2.5),
        np.arange(10.0),
    ]
    for values in samples:
        assert format_values(values) == [format_value(v) for v in values.tolist()]
        assert format_values(values) == [format_value(v) for v in values.tolist()]  # memo
