"""The simulated control plane over a real socket, where it follows the real one closely:
token requests read as Go reads JSON, signed JWT access tokens, telemetry grouped by two
fields, list drift that skips rows (and the client recovering every row), and fault
decisions that do not depend on how requests are interleaved."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from itertools import permutations
from typing import Any

import httpx
import jwt
import pytest
from spec_conformance import assert_conforms, assert_error_body

from workloads_etl.runai import RunaiClient, RunaiSettings, errors
from workloads_etl.simulator import FaultConfig, SimulatorConfig, SimulatorServer
from workloads_etl.simulator.handlers import snapshot_table
from workloads_etl.simulator.telemetry import GROUP_COLUMNS, PENDING_BUCKETS

NOW = datetime(2026, 11, 26, 15, tzinfo=UTC)  # a busy hour: some workloads pending
CONFIG = SimulatorConfig(seed=7, workloads=200, days=14, now=NOW)
GROUPS = list(GROUP_COLUMNS)


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    with SimulatorServer(CONFIG) as sim:
        yield sim


@pytest.fixture(scope="module")
def http(server: SimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        client.headers["Authorization"] = f"Bearer {_token(client, server.config)}"
        yield client


def _token(client: httpx.Client, config: SimulatorConfig, attempts: int = 1) -> str:
    body = {
        "grantType": "client_credentials",
        "clientID": config.client_id,
        "clientSecret": config.client_secret,
    }
    for _ in range(attempts):
        try:
            r = client.post("/api/v1/token", json=body)
        except httpx.TransportError:
            continue
        if r.status_code == 200:
            return str(r.json()["accessToken"])
    raise AssertionError("no token")


def _active_ids(server: SimulatorServer) -> set[str]:
    table = snapshot_table(server.cluster.snapshot(NOW))
    return {
        wid
        for wid, deleted in zip(
            table.column("id").to_pylist(), table.column("deleted").to_pylist(), strict=True
        )
        if not deleted
    }


# ---------------------------------------------------------------- token request keys


def _key_variants(config: SimulatorConfig) -> list[dict[str, str]]:
    cid, secret = config.client_id, config.client_secret
    return [
        {"grantType": "app_token", "AppId": cid, "AppSecret": secret},  # as the SDK sends
        {"grantType": "app_token", "appID": cid, "appSecret": secret},  # as the spec names
        {"GrantType": "app_token", "APPID": cid, "appsecret": secret},
        {"grantType": "client_credentials", "ClientId": cid, "ClientSecret": secret},
        {"granttype": "client_credentials", "clientid": cid, "CLIENTSECRET": secret},
        # folded as Go folds: the long s (U+017F) is an s
        {"grantType": "client_credentials", "clientID": cid, "client\u017fecret": secret},
    ]


@pytest.mark.parametrize("index", range(6))
def test_token_request_keys_are_matched_ignoring_case(
    server: SimulatorServer, http: httpx.Client, index: int
) -> None:
    body = _key_variants(server.config)[index]
    r = httpx.post(f"{server.base_url}/api/v1/token", json=body, timeout=30)
    assert_conforms(r)
    assert r.status_code == 200, r.text
    token = r.json()["accessToken"]
    ok = http.get("/api/v1/workloads/count", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200


def test_of_several_keys_naming_one_field_the_last_wins(server: SimulatorServer) -> None:
    cid, secret = server.client_id, server.client_secret
    url = f"{server.base_url}/api/v1/token"
    last_right = '{"grantType": "app_token", "appID": "nobody", "AppId": "%s", "appSecret": "%s"}'
    last_wrong = '{"grantType": "app_token", "AppId": "%s", "appID": "nobody", "appSecret": "%s"}'
    assert httpx.post(url, content=(last_right % (cid, secret)).encode()).status_code == 200
    r = httpx.post(url, content=(last_wrong % (cid, secret)).encode())
    assert assert_error_body(r, 400)["message"] == "Invalid client credentials"


def test_token_request_values_must_be_strings(server: SimulatorServer) -> None:
    r = httpx.post(
        f"{server.base_url}/api/v1/token",
        json={"grantType": "app_token", "AppId": 42, "AppSecret": server.client_secret},
    )
    assert_error_body(r, 400)


# ---------------------------------------------------------------- JWT access tokens


def _grant(server: SimulatorServer, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{server.base_url}/api/v1/token", json=body, timeout=30)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def _count_status(server: SimulatorServer, token: str) -> httpx.Response:
    return httpx.get(
        f"{server.base_url}/api/v1/workloads/count",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_access_tokens_are_signed_jwts(server: SimulatorServer) -> None:
    before = time.time()
    answer = _grant(
        server,
        {"grantType": "app_token", "AppId": server.client_id, "AppSecret": server.client_secret},
    )
    token = answer["accessToken"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == server.client_id
    assert before - 1 <= claims["iat"] <= time.time()
    assert claims["exp"] - claims["iat"] in (answer["expiresIn"], answer["expiresIn"] + 1)
    assert claims["exp"] >= before + answer["expiresIn"]
    # the payload decodes with the padding-tolerant standard base64 the official SDK uses
    payload = token.split(".")[1]
    assert json.loads(base64.b64decode(payload + "=="))["exp"] == claims["exp"]
    assert _count_status(server, token).status_code == 200


def _b64(document: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


def _forge(token: str, alg: str | None = None, **changes: Any) -> str:
    """``token`` with changed claims (or algorithm), keeping its signature."""
    header, _, signature = token.split(".")
    if alg is not None:
        header = _b64({"alg": alg, "typ": "JWT"})
    claims = {**jwt.decode(token, options={"verify_signature": False}), **changes}
    return f"{header}.{_b64(claims)}.{signature}"


def test_tokens_with_a_bad_signature_or_garbage_are_401(http: httpx.Client) -> None:
    token = http.headers["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, options={"verify_signature": False})
    bad = {
        "forged claims": _forge(token, exp=claims["exp"] + 86400),
        "another key": jwt.encode(claims, "k" * 32, algorithm="HS256"),
        "unsigned": _forge(token, alg="none").rsplit(".", 1)[0] + ".",
        "no exp": jwt.encode({"sub": claims["sub"]}, "k" * 32, algorithm="HS256"),
        "garbage": "not-a-token",
        "three dots": "a.b.c",
        "signature cut": token[:-4],
    }
    for what, forged in bad.items():
        r = http.get("/api/v1/workloads/count", headers={"Authorization": f"Bearer {forged}"})
        assert_conforms(r)
        assert assert_error_body(r, 401), what
        assert r.headers["www-authenticate"] == "Bearer", what


def test_a_token_of_another_simulator_is_401(server: SimulatorServer) -> None:
    with SimulatorServer(CONFIG) as other:
        token = _grant(
            other,
            {
                "grantType": "client_credentials",
                "clientID": other.client_id,
                "clientSecret": other.client_secret,
            },
        )["accessToken"]
        assert _count_status(other, token).status_code == 200
    r = _count_status(server, token)
    assert assert_error_body(r, 401)["message"] == "Issuer is not familiar."


def test_tokens_expire_at_exp() -> None:
    with SimulatorServer(replace(CONFIG, workloads=20, token_ttl_seconds=1)) as sim:
        answer = _grant(
            sim,
            {
                "grantType": "client_credentials",
                "clientID": sim.client_id,
                "clientSecret": sim.client_secret,
            },
        )
        assert answer["expiresIn"] == 1
        token = answer["accessToken"]
        exp = jwt.decode(token, options={"verify_signature": False})["exp"]
        assert _count_status(sim, token).status_code == 200
        time.sleep(max(0.0, exp - time.time()) + 0.05)
        r = _count_status(sim, token)
        assert assert_error_body(r, 401)["message"] == "Token has expired"


# ---------------------------------------------------------------- telemetry: two groupBy fields


def _telemetry(http: httpx.Client, kind: str, group_by: list[str]) -> list[dict[str, Any]]:
    params = {"telemetryType": kind}
    if group_by:
        params["groupBy"] = ",".join(group_by)
    r = http.get("/api/v1/workloads/telemetry", params=params)
    assert_conforms(r)
    assert r.status_code == 200, r.text
    values: list[dict[str, Any]] = r.json()["values"]
    return values


def _figures(values: list[dict[str, Any]]) -> dict[tuple[str, ...], float]:
    return {tuple(g["value"] for g in v.get("groups") or []): float(v["value"]) for v in values}


@pytest.mark.parametrize("kind", ["WORKLOADS_COUNT", "GPU_ALLOCATION"])
def test_two_group_by_fields_add_up_to_one(http: httpx.Client, kind: str) -> None:
    single = {g: _figures(_telemetry(http, kind, [g])) for g in GROUPS}
    total = _figures(_telemetry(http, kind, []))[()]
    for first, second in permutations(GROUPS, 2):
        values = _telemetry(http, kind, [first, second])
        assert values == _telemetry(http, kind, [first, second]), "deterministic"
        assert all([g["key"] for g in v["groups"]] == [first, second] for v in values)
        pairs = _figures(values)
        assert len(pairs) == len(values), "each combination once"
        by_first: defaultdict[str, float] = defaultdict(float)
        by_second: defaultdict[str, float] = defaultdict(float)
        for (a, b), x in pairs.items():
            by_first[a] += x
            by_second[b] += x
        assert dict(by_first) == pytest.approx({k[0]: x for k, x in single[first].items()})
        assert dict(by_second) == pytest.approx({k[0]: x for k, x in single[second].items()})
        assert sum(pairs.values()) == pytest.approx(total)
        # the names agree with the single-field grouping's
        names = {g["value"]: g["name"] for v in values for g in v["groups"] if g["key"] == first}
        single_names = {
            v["groups"][0]["value"]: v["groups"][0]["name"] for v in _telemetry(http, kind, [first])
        }
        assert names == {k: single_names[k] for k in names}


def test_pending_time_distribution_by_one_field_adds_up(http: httpx.Client) -> None:
    buckets = [name for name, _ in PENDING_BUCKETS]
    plain = _figures(_telemetry(http, "PENDING_TIME_DISTRIBUTION", []))
    assert list(plain) == [(b,) for b in buckets]
    assert sum(plain.values()) > 0
    for field in GROUPS:
        values = _telemetry(http, "PENDING_TIME_DISTRIBUTION", [field])
        assert all([g["key"] for g in v["groups"]] == ["PendingTime", field] for v in values)
        per_bucket: defaultdict[str, float] = defaultdict(float)
        for (bucket, _), x in _figures(values).items():
            per_bucket[bucket] += x
        assert {(b,): per_bucket[b] for b in buckets} == plain


def test_pending_time_distribution_by_two_fields_is_400(http: httpx.Client) -> None:
    # The bucket is a group of its own and a telemetry value carries at most two groups
    # (TelemetryResponse: groups maxItems 2), so a second field has no place in the answer.
    r = http.get(
        "/api/v1/workloads/telemetry",
        params={"telemetryType": "PENDING_TIME_DISTRIBUTION", "groupBy": "ProjectId,Phase"},
    )
    assert_conforms(r)
    body = assert_error_body(r, 400)
    assert "at most two groups" in body["details"]


# ---------------------------------------------------------------- list drift that skips rows


def _read_listing(client: httpx.Client, limit: int) -> tuple[list[str], int]:
    ids: list[str] = []
    offset, pages = 0, 0
    while True:
        r = client.get("/api/v1/workloads", params={"offset": offset, "limit": limit})
        assert r.status_code == 200, r.text
        body = r.json()
        ids.extend(w["id"] for w in body["workloads"])
        pages += 1
        if "next" not in body or not body["workloads"]:
            return ids, pages
        offset = body["next"]


SKIPPING = FaultConfig(list_skip=0.3, seed=4)


@pytest.fixture(scope="module")
def skipping_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(replace(CONFIG, faults=SKIPPING)) as sim:
        yield sim


def test_list_skip_drift_skips_rows_and_another_reading_others(
    skipping_server: SimulatorServer,
) -> None:
    truth = _active_ids(skipping_server)
    with httpx.Client(base_url=skipping_server.base_url, timeout=30) as client:
        client.headers["Authorization"] = f"Bearer {_token(client, skipping_server.config)}"
        count = client.get("/api/v1/workloads/count").json()["count"]
        readings = [_read_listing(client, 10)[0] for _ in range(4)]
    assert count == len(truth)
    union: set[str] = set()
    for ids in readings:
        assert len(ids) == len(set(ids)), "skips repeat nothing"
        assert set(ids) <= truth
        assert len(ids) < count, "every reading skips rows"
        union |= set(ids)
    assert len({frozenset(ids) for ids in readings}) == 4, "each reading skips other rows"
    assert union == truth


def _client_settings(sim: SimulatorServer, **kw: Any) -> RunaiSettings:
    return RunaiSettings(
        base_url=sim.base_url,
        client_id=sim.client_id,
        client_secret=sim.client_secret,
        page_size=10,
        **kw,
    )


async def _client_listing(settings: RunaiSettings) -> tuple[list[str], int]:
    async with RunaiClient(settings) as client:
        ids = [w["id"] async for w in client.iter_workloads()]
        return ids, client.request_count


def test_the_client_recovers_every_skipped_row(skipping_server: SimulatorServer) -> None:
    truth = _active_ids(skipping_server)
    pages = -(-len(truth) // 10)
    ids, requests = asyncio.run(_client_listing(_client_settings(skipping_server)))
    assert len(ids) == len(set(ids))
    assert set(ids) == truth
    # a token, the count, and for each of at most three readings its pages and a count
    assert requests <= 1 + 1 + 3 * (pages + 1)


def test_without_rereading_the_skips_are_an_incomplete_list(
    skipping_server: SimulatorServer,
) -> None:
    settings = _client_settings(skipping_server, list_reconcile_passes=0)
    with pytest.raises(errors.IncompleteListError) as caught:
        asyncio.run(_client_listing(settings))
    assert caught.value.counted == len(_active_ids(skipping_server))
    assert caught.value.listed < caught.value.counted


# ---------------------------------------------------------------- reproducible fault decisions

DECIDING = FaultConfig(
    seed=13,
    latency_ms=2,
    jitter_ms=40,  # answers come back in a scrambled order under concurrency
    error_rate=0.2,
    rate_limit_rate=0.1,
    drop_rate=0.05,
    list_skip=0.3,
    partial_rate=0.5,
)


def _requests(config: SimulatorConfig, workload_id: str) -> list[tuple[str, str, Any]]:
    """Each request several times: tokens of three bodies, counts, pages, metrics."""
    cid, secret = config.client_id, config.client_secret
    token_bodies = [
        {"grantType": "client_credentials", "clientID": cid, "clientSecret": secret},
        {"grantType": "app_token", "appID": cid, "appSecret": secret},
        {"grantType": "app_token", "AppId": cid, "AppSecret": secret},
    ]
    metrics = {
        "metricType": "GPU_UTILIZATION,CPU_USAGE_CORES,GPU_ALLOCATION",
        "start": "2026-11-26T00:00:00Z",
        "end": "2026-11-26T06:00:00Z",
        "numberOfSamples": 5,
    }
    out: list[tuple[str, str, Any]] = []
    for _ in range(6):
        out += [("POST", "/api/v1/token", body) for body in token_bodies]
        out += [("GET", "/api/v1/workloads", {"offset": o, "limit": 10}) for o in (0, 10, 20, 30)]
        out += [("GET", "/api/v1/workloads/count", {"search": f"a{i}"}) for i in range(5)]
        out.append(("GET", f"/api/v1/workloads/{workload_id}/metrics", metrics))
    return out


async def _send_all(
    sim: SimulatorServer, requests: list[tuple[str, str, Any]], concurrency: int
) -> Counter[tuple[str, str, str]]:
    """Send ``requests`` with ``concurrency`` in flight; what each answered, as a multiset."""
    with httpx.Client(base_url=sim.base_url, timeout=30) as setup:
        token = _token(setup, sim.config, attempts=20)
    semaphore = asyncio.Semaphore(concurrency)
    seen: Counter[tuple[str, str, str]] = Counter()
    async with httpx.AsyncClient(
        base_url=sim.base_url,
        timeout=30,
        headers={"Authorization": f"Bearer {token}"},
        limits=httpx.Limits(max_connections=concurrency),
    ) as client:

        async def one(method: str, path: str, data: Any) -> None:
            async with semaphore:
                try:
                    if method == "POST":
                        r = await client.post(path, json=data)
                    else:
                        r = await client.get(path, params=data)
                    result = str(r.status_code)
                except httpx.TransportError:
                    result = "dropped"
            seen[(method, path + json.dumps(data, sort_keys=True), result)] += 1

        await asyncio.gather(*(one(*req) for req in requests))
    return seen


def _decisions(sim: SimulatorServer) -> list[tuple[str, int, str, str]]:
    body = httpx.get(f"{sim.base_url}/_simulator/faults", timeout=30).json()
    assert body["decisionsDropped"] == 0
    return sorted((d["key"], d["attempt"], d["fault"], d["result"]) for d in body["decisions"])


def test_fault_decisions_do_not_depend_on_concurrency_or_order() -> None:
    config = replace(CONFIG, workloads=80, faults=DECIDING, admin=True)
    runs = []
    for concurrency, shuffle in ((1, None), (16, 1), (16, 2)):
        with SimulatorServer(config) as sim:
            running = next(
                r["id"]
                for r in snapshot_table(sim.cluster.snapshot(NOW)).to_pylist()
                if r["phase"] == "Running" and not r["deleted"]
            )
            requests = _requests(config, running)
            if shuffle is not None:
                random.Random(shuffle).shuffle(requests)
            answers = asyncio.run(_send_all(sim, requests, concurrency))
            runs.append((_decisions(sim), answers))
    (first, answers), *others = runs
    faults = Counter(result for _, _, _, result in first)
    assert {"none", "429", "drop"} <= set(faults)
    assert {"500", "502", "503"} & set(faults)
    assert {fault for _, _, fault, _ in first} == {"request", "list_skip", "partial"}
    tokens = [d for d in first if d[0].startswith("POST /api/v1/token")]
    assert len({d[0] for d in tokens}) == 3, "three bodies, three request keys"
    assert any(d[3] != "none" for d in tokens)
    for decisions, other_answers in others:
        assert decisions == first
        assert other_answers == answers


def test_the_fault_log_is_admin_only(server: SimulatorServer) -> None:
    r = httpx.get(f"{server.base_url}/_simulator/faults", timeout=30)
    assert r.status_code == 404
