"""Injected faults of the simulated control plane: rates, reproducibility, real-socket effects."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import jwt
import pytest
from spec_conformance import assert_conforms, assert_error_body, assert_schema
from starlette.testclient import TestClient

from workloads_etl.simulator import (
    Cluster,
    FaultConfig,
    SimulatorConfig,
    SimulatorServer,
    create_app,
)
from workloads_etl.simulator.faults import DroppedConnection, FaultConfigError, malformed_kind

NOW = datetime(2026, 11, 27, tzinfo=UTC)
BASE = SimulatorConfig(seed=11, workloads=120, days=7, now=NOW)
N_REQUESTS = 400


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    return Cluster(BASE)


def _token_body(config: SimulatorConfig) -> dict[str, str]:
    return {
        "grantType": "client_credentials",
        "clientID": config.client_id,
        "clientSecret": config.client_secret,
    }


def _client(cluster: Cluster, faults: FaultConfig) -> TestClient:
    config = replace(BASE, faults=faults)
    client = TestClient(create_app(config, cluster), base_url="http://simulator")
    for _ in range(3):  # the token endpoint may be faulted, never twice in a row
        try:
            r = client.post("/api/v1/token", json=_token_body(config))
        except DroppedConnection:  # in-process, a dropped connection is the app's exception
            continue
        if r.status_code == 200:
            client.headers["Authorization"] = f"Bearer {r.json()['accessToken']}"
            return client
    raise AssertionError("no token after three attempts")


def _outcomes(client: TestClient, n: int = N_REQUESTS) -> list[str]:
    out = []
    for i in range(n):
        try:
            r = client.get("/api/v1/workloads/count", params={"search": f"q{i}"})
        except Exception as exc:  # dropped connection
            out.append(type(exc).__name__)
            continue
        out.append(str(r.status_code))
    return out


# ---------------------------------------------------------------- configuration


def test_parse_round_trip() -> None:
    text = (
        "latency_ms=50,jitter_ms=10,error_rate=0.2,rate_limit_rate=0.1,retry_after=2,"
        "retry_after_form=mixed,drop_rate=0.05,token_ttl=3,list_drift=0.5,partial_rate=0.1,"
        "malformed_rate=0.05,metrics_timestamp_format=space,seed=1"
    )
    config = FaultConfig.parse(text)
    assert config.error_rate == 0.2
    assert config.token_ttl == 3
    assert config.retry_after_form == "mixed"
    assert FaultConfig.parse(config.to_spec()) == config
    assert FaultConfig.parse("") == FaultConfig()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("error_rate=1.5", "error_rate"),
        ("latency=5", "unknown fault"),
        ("error_rate", "name=value"),
        ("seed=x", "seed"),
        ("retry_after_form=weeks", "retry_after_form"),
        ("drop_rate=0.6,error_rate=0.6", "must not exceed 1"),
        ("token_ttl=0", "token_ttl"),
        ("seed=1,seed=2", "twice"),
    ],
)
def test_parse_errors(text: str, fragment: str) -> None:
    with pytest.raises(FaultConfigError, match=fragment):
        FaultConfig.parse(text)


# ---------------------------------------------------------------- request-level faults


def test_error_and_rate_limit_rates_and_reproducibility(cluster: Cluster) -> None:
    faults = FaultConfig(error_rate=0.2, rate_limit_rate=0.1, seed=5)
    first = _outcomes(_client(cluster, faults))
    counts = Counter(first)
    errors = counts["500"] + counts["502"] + counts["503"]
    assert errors / N_REQUESTS == pytest.approx(0.2, abs=0.06)
    assert counts["429"] / N_REQUESTS == pytest.approx(0.1, abs=0.05)
    assert min(counts["500"], counts["502"], counts["503"]) > 0
    assert counts["200"] == N_REQUESTS - errors - counts["429"]
    assert _outcomes(_client(cluster, faults)) == first, "same seed, same outcomes"
    assert _outcomes(_client(cluster, replace(faults, seed=6))) != first


def test_fault_bodies_are_errors(cluster: Cluster) -> None:
    client = _client(cluster, FaultConfig(error_rate=0.5, rate_limit_rate=0.5, seed=2))
    seen = set()
    for i in range(40):
        r = client.get("/api/v1/workloads", params={"offset": i})
        assert r.status_code != 200
        body = assert_error_body(r, r.status_code)
        seen.add(body["code"])
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) == 1
    assert seen == {429, 500, 502, 503}


@pytest.mark.parametrize("microsecond", [0, 600_000])
def test_retry_after_date_counts_from_the_cluster_clock(microsecond: int) -> None:
    clock = NOW + timedelta(hours=9, seconds=17, microseconds=microsecond)
    config = replace(
        BASE,
        now=clock,
        faults=FaultConfig(rate_limit_rate=1.0, retry_after=3, retry_after_form="date"),
    )
    with TestClient(create_app(config, Cluster(config)), base_url="http://simulator") as client:
        r = client.get("/api/v1/workloads/count")
    assert r.status_code == 429
    date = parsedate_to_datetime(r.headers["date"])
    retry_at = parsedate_to_datetime(r.headers["retry-after"])
    assert date == clock.replace(microsecond=0)  # the cluster's clock, not the wall clock
    assert retry_at - date == timedelta(seconds=3)


def test_retries_of_the_same_request_get_fresh_draws(cluster: Cluster) -> None:
    client = _client(cluster, FaultConfig(error_rate=0.5, seed=3))
    statuses = [client.get("/api/v1/workloads/count").status_code for _ in range(30)]
    assert 200 in statuses
    assert any(s >= 500 for s in statuses)


def test_token_endpoint_is_never_faulted_twice_in_a_row(cluster: Cluster) -> None:
    config = replace(BASE, faults=FaultConfig(error_rate=1.0, seed=4))
    client = TestClient(create_app(config, cluster))
    statuses = [
        client.post("/api/v1/token", json=_token_body(config)).status_code for _ in range(6)
    ]
    assert all(s in (500, 502, 503) for s in statuses[0::2])
    assert statuses[1::2] == [200, 200, 200]


def test_latency_is_added(cluster: Cluster) -> None:
    client = _client(cluster, FaultConfig(latency_ms=60, jitter_ms=20, seed=1))
    t0 = time.perf_counter()
    client.get("/api/v1/workloads/count")
    assert time.perf_counter() - t0 >= 0.06


def test_short_lived_tokens(cluster: Cluster) -> None:
    config = replace(BASE, faults=FaultConfig(token_ttl=1))
    client = TestClient(create_app(config, cluster))
    token = client.post("/api/v1/token", json=_token_body(config)).json()
    assert token["expiresIn"] == 1
    auth = {"Authorization": f"Bearer {token['accessToken']}"}
    assert client.get("/api/v1/workloads/count", headers=auth).status_code == 200
    claims = jwt.decode(token["accessToken"], options={"verify_signature": False})
    assert 1 <= claims["exp"] - claims["iat"] <= 2  # whole seconds, at least expiresIn
    time.sleep(max(0.0, claims["exp"] - time.time()) + 0.05)
    r = client.get("/api/v1/workloads/count", headers=auth)
    assert assert_error_body(r, 401)["message"] == "Token has expired"


# ---------------------------------------------------------------- response-level faults


def _page_through(client: TestClient, limit: int) -> tuple[list[str], int]:
    ids: list[str] = []
    offset, pages = 0, 0
    while True:
        body = client.get("/api/v1/workloads", params={"offset": offset, "limit": limit}).json()
        ids.extend(w["id"] for w in body["workloads"])
        pages += 1
        if "next" not in body:
            return ids, pages
        assert body["next"] > offset
        offset = body["next"]


def test_list_drift_repeats_rows_but_skips_none(cluster: Cluster) -> None:
    clean, _ = _page_through(_client(cluster, FaultConfig()), 10)
    drifting_client = _client(cluster, FaultConfig(list_drift=0.5, seed=9))
    drifted, _pages = _page_through(drifting_client, 10)
    assert set(drifted) == set(clean)
    repeats = len(drifted) - len(set(drifted))
    assert repeats > 0
    again, _ = _page_through(drifting_client, 10)
    assert again == drifted, "drift is a function of the listing, reproducible"
    count = drifting_client.get("/api/v1/workloads/count").json()["count"]
    assert count == len(clean)


def test_partial_metrics_are_207(cluster: Cluster) -> None:
    client = _client(cluster, FaultConfig(partial_rate=1.0, seed=1))
    workload = next(
        r for r in cluster_rows(cluster) if r["phase"] == "Running" and not r["deleted"]
    )
    types = ["GPU_UTILIZATION", "CPU_USAGE_CORES", "POD_COUNT", "GPU_ALLOCATION"]
    r = client.get(
        f"/api/v1/workloads/{workload['id']}/metrics",
        params={
            "metricType": ",".join(types),
            "start": "2026-11-26T00:00:00Z",
            "end": "2026-11-26T06:00:00Z",
        },
    )
    assert r.status_code == 207
    assert_conforms(r)
    got = {m["type"] for m in r.json()["measurements"]}
    assert got
    assert got < set(types)
    single = client.get(
        f"/api/v1/workloads/{workload['id']}/metrics",
        params={
            "metricType": "GPU_UTILIZATION",
            "start": "2026-11-26T00:00:00Z",
            "end": "2026-11-26T06:00:00Z",
        },
    )
    assert single.status_code == 200


def test_partial_rate(cluster: Cluster) -> None:
    client = _client(cluster, FaultConfig(partial_rate=0.3, seed=8))
    workload_id = cluster_rows(cluster)[0]["id"]
    statuses = Counter(
        client.get(
            f"/api/v1/workloads/{workload_id}/metrics",
            params={
                "metricType": "GPU_UTILIZATION,CPU_USAGE_CORES",
                "start": "2026-11-26T00:00:00Z",
                "end": f"2026-11-26T01:{i // 60:02d}:{i % 60:02d}Z",
                "numberOfSamples": 1,
            },
        ).status_code
        for i in range(200)
    )
    assert statuses[207] / 200 == pytest.approx(0.3, abs=0.08)
    assert statuses[200] + statuses[207] == 200


def cluster_rows(cluster: Cluster) -> list[dict[str, Any]]:
    from workloads_etl.simulator.handlers import snapshot_table

    return snapshot_table(cluster.snapshot(NOW)).to_pylist()


def test_malformed_records(cluster: Cluster) -> None:
    faults = FaultConfig(malformed_rate=0.3, seed=2)
    client = _client(cluster, faults)
    first = client.get("/api/v1/workloads", params={"limit": 500}).json()["workloads"]
    again = client.get("/api/v1/workloads", params={"limit": 500}).json()["workloads"]
    assert first == again, "a re-fetch returns the same malformed records"
    kinds = {w["id"]: malformed_kind(faults, w["id"]) for w in first}
    bad = [w for w in first if kinds[w["id"]]]
    assert len(bad) / len(first) == pytest.approx(0.3, abs=0.12)
    clean_client = _client(cluster, FaultConfig())
    for w in first:
        kind = kinds[w["id"]]
        if kind is None:
            assert_schema(w, "Workload")
            continue
        original = clean_client.get(f"/api/v1/workloads/{w['id']}").json()
        if kind == "unknown_enum":
            assert w["phase"] == "Hibernating"
            with pytest.raises(Exception, match="Hibernating"):
                assert_schema(w, "Workload")
        elif kind == "bad_quantity":
            assert w["allocatedResources"]["gpuMemory"] == "12 gigs"
        elif kind == "missing_optional":
            assert "submittedBy" not in w
            assert "allocatedResources" not in w
        else:
            assert w["costCenter"] == "cc-4711"
            assert set(w) - set(original) == {"schedulerHints", "costCenter"}
        detail = client.get(f"/api/v1/workloads/{w['id']}").json()
        assert detail["id"] == w["id"]


# ---------------------------------------------------------------- over a real socket


@pytest.fixture(scope="module")
def socket_server(cluster: Cluster) -> Iterator[SimulatorServer]:
    faults = FaultConfig(
        drop_rate=0.3, rate_limit_rate=0.3, retry_after=2, retry_after_form="mixed", seed=21
    )
    with SimulatorServer(replace(BASE, faults=faults), cluster=cluster) as server:
        yield server


def _token(client: httpx.Client, server: SimulatorServer) -> str:
    for _ in range(3):
        try:
            r = client.post("/api/v1/token", json=_token_body(server.config))
        except httpx.TransportError:
            continue
        if r.status_code == 200:
            return str(r.json()["accessToken"])
    raise AssertionError("no token")


def test_dropped_connections_and_retry_after_over_a_socket(socket_server: SimulatorServer) -> None:
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=socket_server.base_url, timeout=10) as client:
        token = _token(client, socket_server)
        for i in range(60):
            try:
                r = client.get(
                    "/api/v1/workloads/count",
                    params={"search": f"x{i}"},
                    headers={"Authorization": f"Bearer {token}"},
                )
            except (httpx.RemoteProtocolError, httpx.ReadError):
                seen["dropped"] += 1
                continue
            seen[str(r.status_code)] += 1
            if r.status_code == 429:
                value = r.headers["retry-after"]
                if value.isdigit():
                    seen["seconds"] += 1
                    assert int(value) == 2
                else:
                    seen["date"] += 1
                    at = parsedate_to_datetime(value)
                    date = parsedate_to_datetime(r.headers["date"])
                    assert date == NOW  # the frozen cluster clock
                    assert at - date == timedelta(seconds=2)
        assert client.get("/healthz").status_code == 200
    assert seen["dropped"] >= 8
    assert seen["429"] >= 8
    assert seen["200"] >= 8
    assert seen["seconds"]
    assert seen["date"]


def test_subprocess_server() -> None:
    config = SimulatorConfig(seed=3, workloads=40, days=3, now=NOW)
    with SimulatorServer(config, in_process=False) as server:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            token = client.post("/api/v1/token", json=_token_body(config)).json()["accessToken"]
            count = client.get(
                "/api/v1/workloads/count", headers={"Authorization": f"Bearer {token}"}
            ).json()["count"]
        process = server._process
        assert process is not None
        from workloads_etl.simulator.handlers import snapshot_table

        table = snapshot_table(server.cluster.snapshot(NOW))
        assert count == sum(not d for d in table.column("deleted").to_pylist())
    assert process.poll() is not None, "the subprocess is gone after the block"
