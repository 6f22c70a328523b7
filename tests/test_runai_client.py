"""The Run:ai client against small control planes written here (ASGI in-process and real HTTP)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import trustme
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tenacity import AsyncRetrying, Future, RetryCallState

from tests.hostile import serve
from workloads_etl.openapi import enum_values, load_spec
from workloads_etl.runai import (
    FilterBy,
    RawResponse,
    RunaiClient,
    RunaiSettings,
    errors,
    parse_retry_after,
    plan_windows,
)
from workloads_etl.runai.filters import FILTER_FIELDS, FILTER_OPERATORS
from workloads_etl.runai.models import TELEMETRY_GROUP_BY, TELEMETRY_TYPES
from workloads_etl.runai.retry import RetryAfterWait
from workloads_etl.settings import RunaiEnvironment

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-client-value"
BASE = "http://runai.test"
WID = "6a0f7c51-3c0e-4f27-9a8e-1d2b3c4d5e6f"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


Handler = Callable[[Request], Awaitable[Response]]


class ControlPlane:
    """A scriptable control plane: tokens, per-path handlers, and a log of what it saw."""

    def __init__(self, token_ttl: int = 3600) -> None:
        self.token_ttl = token_ttl
        self.issued: list[str] = []
        self.token_bodies: list[dict[str, Any]] = []
        self.valid: set[str] = set()
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.handlers: dict[str, Handler] = {}

    def grant(self) -> str:
        tok = f"tok-{len(self.issued)}-abcdef"
        self.issued.append(tok)
        self.valid.add(tok)
        return tok

    async def token(self, request: Request) -> Response:
        body = await request.json()
        self.token_bodies.append(body)
        if body.get("clientSecret") != SECRET:
            return JSONResponse(
                {"code": 400, "message": f"bad secret {body.get('clientSecret')}"}, 400
            )
        return JSONResponse({"accessToken": self.grant(), "expiresIn": self.token_ttl})

    async def dispatch(self, request: Request) -> Response:
        path = request.url.path
        self.seen.append((path, dict(request.query_params)))
        auth = request.headers.get("authorization", "")
        if auth.removeprefix("Bearer ") not in self.valid:
            return JSONResponse({"code": 401, "message": "Unauthorized"}, 401)
        for prefix, handler in self.handlers.items():
            if path == prefix:
                return await handler(request)
        return JSONResponse({"code": 404, "message": "Resource id not found."}, 404)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/v1/token", self.token, methods=["POST"]),
                Route("/{rest:path}", self.dispatch, methods=["GET"]),
            ]
        )


def settings(**kw: Any) -> RunaiSettings:
    base: dict[str, Any] = {
        "base_url": BASE,
        "client_id": "etl",
        "client_secret": SECRET,
        "max_retry_wait": 0.05,
        "min_retry_wait": 0.001,
        "max_attempts": 4,
    }
    base.update(kw)
    return RunaiSettings(**base)


def asgi_client(cp: ControlPlane, recorder: Any = None, **kw: Any) -> RunaiClient:
    return RunaiClient(settings(**kw), recorder, transport=httpx.ASGITransport(app=cp.app()))


def reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    async def h(request: Request) -> Response:
        return JSONResponse(body, status, headers=headers)

    return h


def sequence(*responses: Handler) -> Handler:
    """Answer with the given handlers in turn; the last one repeats."""
    calls = {"n": 0}

    async def h(request: Request) -> Response:
        i = min(calls["n"], len(responses) - 1)
        calls["n"] += 1
        return await responses[i](request)

    return h


def workload(i: int) -> dict[str, Any]:
    return {"id": f"00000000-0000-0000-0000-{i:012d}", "name": f"w{i}"}


# --- settings, filters and spec agreement ---------------------------------------------------


def test_settings_from_env_and_clear_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RUNAI_BASE_URL", "RUNAI_CLIENT_ID", "RUNAI_CLIENT_SECRET", "RUNAI_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(errors.ConfigurationError, match="RUNAI_BASE_URL"):
        RunaiEnvironment.read().settings()
    monkeypatch.setenv("RUNAI_BASE_URL", "https://runai.example.com/")
    with pytest.raises(errors.ConfigurationError, match="credentials are missing"):
        RunaiEnvironment.read().settings()
    monkeypatch.setenv("RUNAI_CLIENT_ID", "etl")
    monkeypatch.setenv("RUNAI_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("RUNAI_MAX_CONCURRENCY", "4")
    monkeypatch.setenv("RUNAI_REQUESTS_PER_SECOND", "2.5")
    monkeypatch.setenv("RUNAI_VERIFY_TLS", "false")
    s = RunaiEnvironment.read().settings(timeout=5.0)
    assert s.base_url == "https://runai.example.com"
    assert (s.max_concurrency, s.requests_per_second, s.timeout, s.verify) == (4, 2.5, 5.0, False)
    assert SECRET not in repr(s)
    assert SECRET not in str(s)
    assert s.client_secret_value == SECRET
    monkeypatch.setenv("RUNAI_VERIFY_TLS", "maybe")
    with pytest.raises(errors.ConfigurationError, match="RUNAI_VERIFY_TLS"):
        RunaiEnvironment.read()
    monkeypatch.delenv("RUNAI_VERIFY_TLS")
    monkeypatch.setenv("RUNAI_CA_BUNDLE", "/nonexistent/ca.pem")
    with pytest.raises(errors.ConfigurationError, match="CA bundle"):
        RunaiEnvironment.read().settings()
    with pytest.raises(errors.ConfigurationError, match="http"):
        RunaiSettings(base_url="runai.example.com", token="t")
    with pytest.raises(errors.ConfigurationError, match="page_size"):
        RunaiSettings(base_url=BASE, token="t", page_size=501)


def test_filter_fields_operators_and_enums_match_the_spec() -> None:
    spec = load_spec()
    pattern = spec["components"]["parameters"]["WorkloadsFilter"]["schema"]["items"]["pattern"]
    fields = pattern.split("(", 1)[1].split(")", 1)[0].split("|")
    assert tuple(fields) == FILTER_FIELDS
    ops = pattern.split(")(", 1)[1].split(")", 1)[0].replace("\\", "").split("|")
    assert tuple(ops) == FILTER_OPERATORS
    assert tuple(enum_values("WorkloadTelemetryType")) == TELEMETRY_TYPES
    params = spec["paths"]["/api/v1/workloads/telemetry"]["get"]["parameters"]
    resolved = [
        spec["components"]["parameters"][p["$ref"].rsplit("/", 1)[-1]] if "$ref" in p else p
        for p in params
    ]
    group_by = next(p for p in resolved if p["name"] == "groupBy")
    assert tuple(group_by["schema"]["items"]["enum"]) == TELEMETRY_GROUP_BY


def test_filter_builder_encodes_explode_false_and_refuses_commas() -> None:
    fb = (
        FilterBy()
        .eq("phase", "Running")
        .ge("allocatedGPU", 2)
        .ge("createdAt", datetime(2024, 1, 1, tzinfo=UTC))
        .starts_with("name", "train-")
    )
    assert fb.to_param() == (
        "phase==Running,allocatedGPU>=2,createdAt>=2024-01-01T00:00:00Z,name=^train-"
    )
    with pytest.raises(errors.ConfigurationError, match="comma"):
        FilterBy().eq("name", "a,b")
    with pytest.raises(errors.ConfigurationError, match="unknown filterBy field"):
        FilterBy().eq("colour", "red")
    with pytest.raises(errors.ConfigurationError, match="dates"):
        FilterBy().contains("createdAt", datetime(2024, 1, 1, tzinfo=UTC))


# --- paging -------------------------------------------------------------------------------


async def _collect(client: RunaiClient, **kw: Any) -> list[list[dict[str, Any]]]:
    return [[dict(w) for w in page] async for page in client.iter_workload_pages(**kw)]


async def test_paging_follows_next_dedups_and_stops_when_next_is_missing() -> None:
    cp = ControlPlane()
    rows = [workload(i) for i in range(7)]

    async def page(request: Request) -> Response:
        off, lim = int(request.query_params["offset"]), int(request.query_params["limit"])
        start = max(0, off - 1)  # every page after the first repeats one row (list drift)
        body: dict[str, Any] = {"workloads": rows[start : start + lim]}
        if start + lim < len(rows):
            body["next"] = off + lim
        return JSONResponse(body)

    cp.handlers["/api/v1/workloads"] = page
    cp.handlers["/api/v1/workloads/count"] = reply({"count": 7})
    recorded: list[RawResponse] = []
    async with asgi_client(cp, recorded.append, page_size=3) as c:
        pages = await _collect(c, filter_by=FilterBy().eq("phase", "Running"), deleted=True)
    ids = [w["id"] for p in pages for w in p]
    assert ids == [r["id"] for r in rows]
    list_calls = [q for p, q in cp.seen if p == "/api/v1/workloads"]
    assert [q["offset"] for q in list_calls] == ["0", "3", "6"]
    assert all(q["filterBy"] == "phase==Running" and q["deleted"] == "true" for q in list_calls)
    ops = [r.operation for r in recorded]
    # The count first (it bounds the pages), the pages, the count again (reconciliation).
    assert ops == ["count_workloads"] + ["get_workloads"] * 3 + ["count_workloads"]
    pages_recorded = [r for r in recorded if r.operation == "get_workloads"]
    assert [r.meta["page"] for r in pages_recorded] == [0, 1, 2]
    assert json.loads(pages_recorded[0].text)["workloads"][0]["id"] == rows[0]["id"]
    assert pages_recorded[1].params["offset"] == "3"


async def test_paging_stops_on_empty_page() -> None:
    cp = ControlPlane()
    cp.handlers["/api/v1/workloads"] = sequence(
        reply({"workloads": [workload(1)], "next": 1}), reply({"workloads": [], "next": 2})
    )
    cp.handlers["/api/v1/workloads/count"] = reply({"count": 1})
    async with asgi_client(cp) as c:
        pages = await _collect(c)
    assert [[w["id"] for w in p] for p in pages] == [[workload(1)["id"]]]
    assert [p for p, _ in cp.seen].count("/api/v1/workloads") == 2


async def test_paging_fails_on_a_next_that_does_not_advance() -> None:
    cp = ControlPlane()
    cp.handlers["/api/v1/workloads"] = sequence(
        reply({"workloads": [workload(1)], "next": 1}),
        reply({"workloads": [workload(2)], "next": 1}),  # the same next forever
    )
    cp.handlers["/api/v1/workloads/count"] = reply({"count": 3})
    async with asgi_client(cp) as c:
        with pytest.raises(errors.PagingError, match=r"'next'=1 does not advance past offset 1"):
            await asyncio.wait_for(_collect(c), 5)
    assert [p for p, _ in cp.seen].count("/api/v1/workloads") == 2


async def test_listing_reads_again_when_count_shows_skipped_rows() -> None:
    cp = ControlPlane()
    rows = [workload(i) for i in range(4)]
    state = {"pass": 0}

    async def page(request: Request) -> Response:
        off = int(request.query_params["offset"])
        if off == 0:
            state["pass"] += 1
        view = rows if state["pass"] > 1 else [rows[0], rows[2], rows[3]]  # row 1 skipped
        body: dict[str, Any] = {"workloads": view[off : off + 2]}
        if off + 2 < len(view):
            body["next"] = off + 2
        return JSONResponse(body)

    cp.handlers["/api/v1/workloads"] = page
    cp.handlers["/api/v1/workloads/count"] = reply({"count": 4})
    async with asgi_client(cp, page_size=2) as c:
        ids = [w["id"] async for w in c.iter_workloads()]
    assert sorted(ids) == [r["id"] for r in rows]
    assert len(ids) == 4


# --- tokens -------------------------------------------------------------------------------


async def test_fifty_concurrent_requests_with_an_expired_token_share_one_refresh() -> None:
    cp = ControlPlane()
    cp.handlers[f"/api/v1/workloads/{WID}"] = reply({"id": WID, "name": "w"})
    recorded: list[RawResponse] = []
    async with asgi_client(cp, recorded.append) as c:
        await c.get_workload(WID)
        assert len(cp.issued) == 1
        cp.valid.clear()  # the server expires the token before the client expected it to
        results = await asyncio.gather(*(c.get_workload(WID) for _ in range(50)))
    assert all(r["id"] == WID for r in results)
    assert len(cp.token_bodies) == 2  # the first token and exactly one refresh
    assert cp.token_bodies[0] == {
        "grantType": "client_credentials",
        "clientID": "etl",
        "clientSecret": SECRET,
    }
    assert len(recorded) == 51
    assert {r.operation for r in recorded} == {"get_workload"}
    assert all(r.path_params == {"workloadId": WID} for r in recorded)


async def test_token_is_renewed_before_expiry_from_expires_in() -> None:
    cp = ControlPlane(token_ttl=1)  # margin 0.1 s: renewed after 0.9 s
    cp.handlers["/api/v1/workloads/count"] = reply({"count": 3})
    async with asgi_client(cp) as c:
        assert await c.count_workloads() == 3
        await asyncio.sleep(1.0)
        assert await c.count_workloads() == 3
        assert c.token_requests == 2
    # no request was ever refused: the renewal happened before the server would have said 401
    assert len(cp.seen) == 2


async def test_a_401_that_survives_a_refresh_is_an_authentication_error() -> None:
    cp = ControlPlane()

    async def refuse(request: Request) -> Response:
        token = request.headers["authorization"].removeprefix("Bearer ")
        return JSONResponse(
            {"code": 401, "message": "nope", "details": f"token {token} is revoked"}, 401
        )

    cp.handlers["/api/v1/workloads/count"] = refuse
    async with asgi_client(cp) as c:
        with pytest.raises(errors.AuthenticationError, match="401") as ei:
            await c.count_workloads()
    e = ei.value
    assert isinstance(e, errors.RunaiError)
    assert (e.status, e.code, e.message) == (401, 401, "nope")
    assert e.details == "token *** is revoked"
    assert (e.method, e.path) == ("GET", "/api/v1/workloads/count")
    assert len(cp.token_bodies) == 2
    text = str(e) + repr(e) + str(e.details)
    assert SECRET not in text
    assert all(tok not in text for tok in cp.issued)


async def test_static_token_and_refused_credentials() -> None:
    cp = ControlPlane()
    cp.valid.add("ready-token")
    cp.handlers["/api/v1/workloads/count"] = reply({"count": 1})
    async with RunaiClient(
        RunaiSettings(base_url=BASE, token="ready-token"),
        transport=httpx.ASGITransport(app=cp.app()),
    ) as c:
        assert await c.count_workloads() == 1
        cp.valid.clear()
        with pytest.raises(errors.AuthenticationError) as ei:
            await c.count_workloads()
    assert (ei.value.status, ei.value.code, ei.value.message) == (401, 401, "Unauthorized")
    assert "ready-token" not in str(ei.value)
    assert cp.token_bodies == []
    async with asgi_client(cp, client_secret="wrong-secret-value") as c:
        with pytest.raises(errors.AuthenticationError, match="refused") as ei2:
            await c.count_workloads()
    e = ei2.value
    assert (e.status, e.code, e.details) == (400, 400, None)
    assert (e.method, e.path) == ("POST", "/api/v1/token")
    # the server echoed the secret in its message; it is scrubbed
    assert e.message == "bad secret ***"
    assert "wrong-secret-value" not in str(e) + repr(e)


# --- retries and typed errors ---------------------------------------------------------------


def test_retry_after_both_forms() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0 ") == 0.0
    date = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert parse_retry_after(date, now=now) == 7.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=5), usegmt=True), now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("form", ["seconds", "date"])
async def test_429_waits_for_retry_after_capped_by_max_retry_wait(form: str) -> None:
    cp = ControlPlane()
    ra = "1" if form == "seconds" else format_datetime(datetime.now(UTC) + timedelta(seconds=2))
    cp.handlers["/api/v1/workloads/count"] = sequence(
        reply({"code": 429, "message": "slow down"}, 429, {"Retry-After": ra}),
        reply({"count": 5}),
    )
    recorded: list[RawResponse] = []
    async with asgi_client(cp, recorded.append, max_retry_wait=0.3) as c:
        t0 = time.monotonic()
        assert await c.count_workloads() == 5
        waited = time.monotonic() - t0
    assert 0.25 <= waited < 1.0  # honoured, but capped at max_retry_wait
    assert len(recorded) == 1
    assert recorded[0].status == 200


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [
        ("application/json", "utf-8"),
        ("application/json; Charset=UTF-8", "utf-8"),
    ],
)
async def test_the_landed_text_is_the_body_decoded_as_its_charset_says(
    content_type: str, encoding: str
) -> None:
    """The raw landing keeps the body as text, non-ASCII characters included, whether the
    answer names its charset or not (JSON is UTF-8)."""
    text = '{"count": 3, "note": "caf\u00e9 d\u00e9j\u00e0"}'

    async def h(request: Request) -> Response:
        return Response(
            text.encode(encoding), 200, media_type=None, headers={"content-type": content_type}
        )

    cp = ControlPlane()
    cp.handlers["/api/v1/workloads/count"] = h
    recorded: list[RawResponse] = []
    async with asgi_client(cp, recorded.append) as c:
        assert await c.count_workloads() == 3
    assert recorded[0].text == text


async def test_retry_after_shorter_than_the_cap_is_honoured_exactly() -> None:
    cp = ControlPlane()
    cp.handlers["/api/v1/workloads/count"] = sequence(
        reply({"code": 429, "message": "slow"}, 429, {"Retry-After": "0.2"}), reply({"count": 1})
    )
    async with asgi_client(cp, max_retry_wait=5.0) as c:
        t0 = time.monotonic()
        await c.count_workloads()
        assert 0.2 <= time.monotonic() - t0 < 1.0


async def test_server_errors_are_retried_then_exhausted_with_the_last_cause() -> None:
    cp = ControlPlane()
    cp.handlers["/api/v1/workloads/count"] = sequence(
        reply({"code": 503, "message": "Please try again"}, 503),
        reply({"code": 408, "message": "timeout"}, 408),
        reply({"count": 2}),
    )
    async with asgi_client(cp) as c:
        assert await c.count_workloads() == 2
    cp2 = ControlPlane()
    cp2.handlers["/api/v1/workloads/count"] = reply({"code": 500, "message": "boom"}, 500)
    async with asgi_client(cp2, max_attempts=3) as c:
        with pytest.raises(errors.RetryExhaustedError) as ei:
            await c.count_workloads()
    assert ei.value.attempts == 3
    assert isinstance(ei.value.last_error, errors.ServerError)
    assert ei.value.__cause__ is ei.value.last_error
    assert ei.value.last_error.message == "boom"
    assert [p for p, _ in cp2.seen].count("/api/v1/workloads/count") == 3


async def test_total_retry_time_bounds_the_retries() -> None:
    cp = ControlPlane()
    cp.handlers["/api/v1/workloads/count"] = reply(
        {"code": 429, "message": "slow"}, 429, {"Retry-After": "0.2"}
    )
    async with asgi_client(cp, max_attempts=50, max_retry_wait=1.0, max_total_retry_time=0.5) as c:
        with pytest.raises(errors.RetryExhaustedError) as ei:
            await c.count_workloads()
    assert isinstance(ei.value.last_error, errors.RateLimitedError)
    assert 2 <= ei.value.attempts <= 4


async def test_the_first_attempts_time_counts_toward_the_total_retry_time() -> None:
    """The first attempt is made before the retry loop starts; its time is still part of
    the total: an answer slower than the whole retry time is not retried."""
    cp = ControlPlane()

    async def slow_failure(request: Request) -> Response:
        await asyncio.sleep(0.4)
        return JSONResponse({"code": 503, "message": "busy"}, 503)

    cp.handlers["/api/v1/workloads/count"] = sequence(slow_failure, reply({"count": 2}))
    async with asgi_client(cp, max_attempts=5, max_total_retry_time=0.3) as c:
        with pytest.raises(errors.RetryExhaustedError) as ei:
            await c.count_workloads()
    assert ei.value.attempts == 1
    assert isinstance(ei.value.last_error, errors.ServerError)
    async with asgi_client(cp, max_attempts=5, max_total_retry_time=30) as c:
        cp.handlers["/api/v1/workloads/count"] = sequence(slow_failure, reply({"count": 2}))
        assert await c.count_workloads() == 2


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, errors.BadRequestError),
        (403, errors.ForbiddenError),
        (404, errors.NotFoundError),
    ],
)
async def test_client_errors_fail_at_once_with_the_error_body(
    status: int, cls: type[errors.ApiError]
) -> None:
    cp = ControlPlane()
    cp.handlers[f"/api/v1/workloads/{WID}"] = reply(
        {"code": status, "message": f"m{status}", "details": "d"}, status
    )
    async with asgi_client(cp) as c:
        with pytest.raises(cls) as ei:
            await c.get_workload(WID)
    e = ei.value
    assert isinstance(e, errors.ApiError)
    assert isinstance(e, errors.RunaiError)
    assert (e.status, e.code, e.message, e.details) == (status, status, f"m{status}", "d")
    assert f"/api/v1/workloads/{WID}" in str(e)
    assert len(cp.seen) == 1


async def test_garbled_success_body_is_retried_then_a_protocol_error() -> None:
    cp = ControlPlane()

    async def garbled(request: Request) -> Response:
        return Response("<html>proxy</html>", 200, media_type="text/html")

    cp.handlers["/api/v1/workloads/count"] = sequence(garbled, reply({"count": 9}))
    async with asgi_client(cp) as c:
        assert await c.count_workloads() == 9
    cp.handlers["/api/v1/workloads/count"] = reply({"total": 9})
    async with asgi_client(cp) as c:
        with pytest.raises(errors.ProtocolError, match="count"):
            await c.count_workloads()


async def test_dropped_connections_over_real_http_are_retried() -> None:
    state = {"n": 0}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        state["n"] += 1
        if scope["path"] == "/api/v1/workloads/count" and state["n"] <= 2:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"4096")],
                }
            )
            await send({"type": "http.response.body", "body": b'{"cou', "more_body": True})
            raise RuntimeError("drop")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"count": 4}'})

    logging.getLogger("uvicorn.error").disabled = True
    try:
        with serve(app) as port:
            s = RunaiSettings(base_url=f"http://127.0.0.1:{port}", token="t", max_retry_wait=0.05)
            async with RunaiClient(s) as c:
                assert await c.count_workloads() == 4
    finally:
        logging.getLogger("uvicorn.error").disabled = False
    assert state["n"] == 3


async def test_concurrency_is_bounded_by_the_semaphore() -> None:
    cp = ControlPlane()
    live = {"now": 0, "max": 0}

    async def slow(request: Request) -> Response:
        live["now"] += 1
        live["max"] = max(live["max"], live["now"])
        await asyncio.sleep(0.02)
        live["now"] -= 1
        return JSONResponse({"count": 1})

    cp.handlers["/api/v1/workloads/count"] = slow
    async with asgi_client(cp, max_concurrency=3) as c:
        await asyncio.gather(*(c.count_workloads() for _ in range(12)))
    assert live["max"] == 3


async def test_requests_per_second_budget() -> None:
    cp = ControlPlane()
    cp.handlers["/api/v1/workloads/count"] = reply({"count": 1})
    async with asgi_client(cp, requests_per_second=10.0) as c:
        await c.count_workloads()  # obtains the token inside the budget too
        t0 = time.monotonic()
        await asyncio.gather(*(c.count_workloads() for _ in range(15)))
        elapsed = time.monotonic() - t0
    assert elapsed >= 0.5  # 17 requests at 10/s with a burst of 10


# --- telemetry and metrics ------------------------------------------------------------------


async def test_telemetry_params_and_validation() -> None:
    cp = ControlPlane()
    body = {"type": "GPU_ALLOCATION", "timestamp": "2024-01-01T00:00:00Z", "values": []}
    cp.handlers["/api/v1/workloads/telemetry"] = reply(body)
    async with asgi_client(cp) as c:
        t = await c.get_telemetry(
            "GPU_ALLOCATION", group_by=["ClusterId", "Phase"], phases=["Running", "Failed"]
        )
        assert t == body
        with pytest.raises(errors.ConfigurationError):
            await c.get_telemetry("GPU_HOURS")
    q = cp.seen[-1][1]
    assert q == {
        "telemetryType": "GPU_ALLOCATION",
        "groupBy": "ClusterId,Phase",
        "filterByPhases": "Running,Failed",
    }


@pytest.mark.parametrize(("samples", "windows"), [(999, [999]), (1000, [1000]), (1001, [1000, 1])])
def test_windows_split_at_1000_samples(samples: int, windows: list[int]) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    end = start + timedelta(seconds=60 * samples)
    plan = plan_windows(start, end, 60)
    assert [n for _, _, n in plan] == windows
    assert plan[0][0] == start
    assert plan[-1][1] == end
    for k, (ws, we, _) in enumerate(plan):
        assert ws == start + timedelta(seconds=60 * 1000 * k)
        assert we == min(end, ws + timedelta(seconds=60_000))
    with pytest.raises(errors.ConfigurationError):
        plan_windows(end, start, 60)


def _metrics_app(cp: ControlPlane, partial: dict[str, int]) -> Handler:
    """Samples at start + i*step; value = minutes since epoch; 207 drops types a few times."""

    async def h(request: Request) -> Response:
        q = request.query_params
        start = datetime.fromisoformat(q["start"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(q["end"].replace("Z", "+00:00"))
        n = int(q["numberOfSamples"])
        types = q["metricType"].split(",")
        step = (end - start) / n
        status = 200
        key = q["start"]
        if partial.get(key, 0) > 0:
            partial[key] -= 1
            types, status = types[:-1], 207
        out = []
        for t in types:
            vals = []
            for i in range(n + 1):  # one sample past the end, as some servers do
                ts = start + step * i
                form = "%Y-%m-%dT%H:%M:%SZ" if i % 2 else "%Y-%m-%d %H:%M:%S.000"
                vals.append({"value": str(ts.timestamp() / 60), "timestamp": ts.strftime(form)})
            out.append({"type": t, "labels": None, "values": vals})
        return JSONResponse({"measurements": out}, status)

    return h


async def test_metrics_windows_merge_and_partial_answers_are_completed() -> None:
    cp = ControlPlane()
    start = datetime(2025, 1, 1, tzinfo=UTC)
    end = start + timedelta(minutes=2500)
    w1 = (start + timedelta(minutes=1000)).isoformat(timespec="milliseconds")
    partial = {w1.replace("+00:00", "Z"): 2}
    cp.handlers[f"/api/v1/workloads/{WID}/metrics"] = _metrics_app(cp, partial)
    recorded: list[RawResponse] = []
    async with asgi_client(cp, recorded.append) as c:
        m = await c.get_workload_metrics(
            WID, ["GPU_UTILIZATION", "CPU_USAGE_CORES"], start, end, step_seconds=60
        )
    assert m.windows == 3
    assert m.status == "complete"
    assert m.missing_types == []
    assert m.table.num_rows == 2 * 2500
    gpu = m.series("GPU_UTILIZATION")
    assert gpu[0][0] == start
    assert gpu[-1][0] == end - timedelta(minutes=1)
    assert all(v == ts.timestamp() / 60 for ts, v in gpu)
    calls = [q for p, q in cp.seen if p.endswith("/metrics")]
    first_round = sorted(
        (q["start"], q["numberOfSamples"]) for q in calls if "," in q["metricType"]
    )
    assert [n for _, n in first_round] == ["1000", "1000", "500"]
    # window 1 was partial twice: re-asked for the missing type only
    reasks = [q["metricType"] for q in calls if q["metricType"] == "CPU_USAGE_CORES"]
    assert len(reasks) == 2
    assert [r.status for r in recorded].count(207) == 2
    assert sorted((r.meta["window"], r.meta["round"]) for r in recorded) == [
        (0, 0),
        (1, 0),
        (1, 1),
        (1, 2),
        (2, 0),
    ]


async def test_metrics_partial_that_never_completes_reports_missing_types() -> None:
    cp = ControlPlane()
    start = datetime(2025, 1, 1, tzinfo=UTC)
    end = start + timedelta(minutes=10)
    partial = {start.isoformat(timespec="milliseconds").replace("+00:00", "Z"): 100}
    cp.handlers[f"/api/v1/workloads/{WID}/pods/p1/metrics"] = _metrics_app(cp, partial)
    async with asgi_client(cp, metrics_partial_retries=2) as c:
        m = await c.get_pod_metrics(WID, "p1", ["GPU_UTILIZATION", "CPU_USAGE_CORES"], start, end)
    assert m.status == "partial"
    assert m.missing_types == ["CPU_USAGE_CORES"]
    assert m.table.num_rows == 10
    assert m.pod_id == "p1"
    assert len([p for p, _ in cp.seen if p.endswith("/metrics")]) == 3


# --- secrets and TLS ------------------------------------------------------------------------


async def test_logs_and_errors_never_show_secret_or_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cp = ControlPlane()
    cp.handlers["/api/v1/workloads/count"] = sequence(
        reply({"code": 500, "message": "x"}, 500), reply({"count": 1})
    )
    async with asgi_client(cp) as c:
        await c.count_workloads()
        cp.valid.clear()
        cp.handlers["/api/v1/workloads/count"] = reply({"code": 401, "message": "no"}, 401)
        with pytest.raises(errors.AuthenticationError) as ei:
            await c.count_workloads()
    text = caplog.text + str(ei.value) + repr(ei.value)
    assert "/api/v1/workloads/count" in caplog.text  # the per-request lines are there
    assert SECRET not in text
    assert cp.issued
    assert all(tok not in text for tok in cp.issued)
    assert "Bearer" not in text


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path_factory.mktemp("tls")
    ca_path, key_path, chain_path = d / "ca.pem", d / "key.pem", d / "chain.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(chain_path))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(chain_path), append=True)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"count": 11}'})

    with serve(app, ssl_keyfile=str(key_path), ssl_certfile=str(chain_path)) as port:
        yield port, ca_path


async def test_tls_with_ca_bundle(tls_server: tuple[int, Path]) -> None:
    port, ca_path = tls_server
    s = RunaiSettings(base_url=f"https://127.0.0.1:{port}", token="t", verify=str(ca_path))
    async with RunaiClient(s) as c:
        assert await c.count_workloads() == 11


async def test_tls_default_verification_fails_clearly_and_at_once(
    tls_server: tuple[int, Path],
) -> None:
    port, _ = tls_server
    s = RunaiSettings(base_url=f"https://127.0.0.1:{port}", token="t", max_retry_wait=0.01)
    async with RunaiClient(s) as c:
        with pytest.raises(errors.TLSVerificationError, match="CA") as ei:
            await c.count_workloads()
        assert c.request_count == 1
    assert isinstance(ei.value, errors.ConfigurationError)


async def test_tls_verification_off_works_and_warns(
    tls_server: tuple[int, Path], caplog: pytest.LogCaptureFixture
) -> None:
    port, _ = tls_server
    caplog.set_level(logging.WARNING, "workloads_etl.runai")
    s = RunaiSettings(base_url=f"https://127.0.0.1:{port}", token="t", verify=False)
    async with RunaiClient(s) as c:
        assert await c.count_workloads() == 11
    assert any("verification is switched off" in r.getMessage() for r in caplog.records)


def test_ssl_context_from_bundle(tls_server: tuple[int, Path]) -> None:
    _, ca_path = tls_server
    ctx = RunaiSettings(base_url=BASE, token="t", verify=str(ca_path)).ssl_verify()
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED


async def test_metrics_of_an_unknown_workload_fail_with_not_found() -> None:
    cp = ControlPlane()
    start = datetime(2025, 1, 1, tzinfo=UTC)
    async with asgi_client(cp) as c:
        with pytest.raises(errors.NotFoundError):
            await c.get_workload_metrics(
                WID, ["GPU_UTILIZATION"], start, start + timedelta(days=2), step_seconds=60
            )
        with pytest.raises(errors.ConfigurationError, match="empty"):
            await c.get_workload_metrics(WID, ["GPU_UTILIZATION"], start, start)


# --- review fixes: Retry-After parsing, jitter, error fields, whole-step windows ------------


@pytest.mark.parametrize(
    "value",
    [
        "nan",
        "NaN",
        "inf",
        "-inf",
        "Infinity",
        "-1",
        "-0.5",
        "1e3",
        "+3",
        "0x10",
        pytest.param("9" * 400, id="overflows-to-inf"),
    ],
)
def test_retry_after_refuses_non_finite_negative_and_odd_numbers(value: str) -> None:
    assert parse_retry_after(value) is None


def test_retry_after_accepts_integer_and_decimal_seconds() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("0.25") == 0.25


def test_retry_after_date_is_measured_against_the_servers_date_header() -> None:
    local_now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    for skew in (timedelta(hours=-1), timedelta(minutes=10)):  # server clock behind / ahead
        server_now = local_now + skew
        ra = format_datetime(server_now + timedelta(seconds=5), usegmt=True)
        date = format_datetime(server_now, usegmt=True)
        assert parse_retry_after(ra, now=local_now, server_date=date) == 5.0
    # an unreadable Date header: the local clock is the reference
    ra = format_datetime(local_now + timedelta(seconds=4), usegmt=True)
    assert parse_retry_after(ra, now=local_now, server_date="yesterday") == 4.0
    assert parse_retry_after(ra, now=local_now, server_date=None) == 4.0


async def test_429_with_retry_after_nan_falls_back_to_backoff() -> None:
    cp = ControlPlane()
    cp.handlers["/api/v1/workloads/count"] = sequence(
        reply({"code": 429, "message": "slow"}, 429, {"Retry-After": "nan"}), reply({"count": 3})
    )
    async with asgi_client(cp) as c:
        with anyio.fail_after(5):
            assert await c.count_workloads() == 3


async def test_429_retry_after_date_honours_a_server_clock_behind_ours() -> None:
    server_now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    headers = {
        "Date": format_datetime(server_now, usegmt=True),
        "Retry-After": format_datetime(server_now + timedelta(seconds=1), usegmt=True),
    }
    cp = ControlPlane()
    cp.handlers["/api/v1/workloads/count"] = sequence(
        reply({"code": 429, "message": "slow"}, 429, headers), reply({"count": 4})
    )
    async with asgi_client(cp, max_retry_wait=5.0) as c:
        t0 = time.monotonic()
        assert await c.count_workloads() == 4
        waited = time.monotonic() - t0
    assert 1.0 <= waited < 2.0


def _retry_state(attempt: int, exc: BaseException) -> RetryCallState:
    state = RetryCallState(retry_object=AsyncRetrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    outcome: Future = Future(attempt)
    outcome.set_exception(exc)
    state.outcome = outcome
    return state


def test_backoff_waits_are_full_jitter_spread_and_capped() -> None:
    wait = RetryAfterWait(0.1, 2.0, rng=random.Random(7))
    err = errors.ServerError(503, 503, "busy")
    for attempt in range(1, 11):
        ceiling = min(2.0, 0.1 * 2 ** (attempt - 1))
        waits = [wait(_retry_state(attempt, err)) for _ in range(300)]
        assert all(0.0 <= w <= ceiling for w in waits), attempt
        assert len(set(waits)) > 250, attempt  # spread, not in lockstep
        assert max(waits) - min(waits) > 0.8 * ceiling, attempt
    capped = [wait(_retry_state(12, err)) for _ in range(300)]
    assert 0.85 < sum(capped) / len(capped) < 1.15  # uniform over [0, 2]
    assert max(capped) <= 2.0


def test_retry_after_waits_are_honoured_with_a_small_positive_jitter() -> None:
    wait = RetryAfterWait(0.1, 2.0, rng=random.Random(3))
    for ra, lo, hi in ((0.5, 0.5, 0.65), (0.0, 0.0, 0.1), (10.0, 1.8, 2.0)):
        err = errors.RateLimitedError(429, 429, "slow", retry_after=ra)
        waits = [wait(_retry_state(2, err)) for _ in range(200)]
        assert all(lo <= w <= hi for w in waits), ra
        assert len(set(waits)) > 150, ra
        assert sum(w > lo for w in waits) > 190, ra


def test_whole_step_windows_for_a_range_off_the_step() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    end = start + timedelta(seconds=7 * 1234 + 3)
    plan = plan_windows(start, end, 7)
    assert [n for _, _, n in plan] == [1000, 235]
    assert [ws for ws, _, _ in plan] == [start, start + timedelta(seconds=7000)]
    for ws, we, n in plan:
        assert we - ws == timedelta(seconds=7 * n)
    assert plan[-1][1] == start + timedelta(seconds=7 * 1235)  # past end; merging clips
    assert plan_windows(start, start + timedelta(seconds=150), 60) == [
        (start, start + timedelta(seconds=180), 3)
    ]


def _even_split_app() -> Handler:
    """Samples at start + i * (end - start) / n, i < n, with microsecond timestamps."""

    async def h(request: Request) -> Response:
        q = request.query_params
        start = datetime.fromisoformat(q["start"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(q["end"].replace("Z", "+00:00"))
        n = int(q["numberOfSamples"])
        stamps = [(start + (end - start) * i / n).isoformat() for i in range(n)]
        values = [{"value": "1", "timestamp": ts} for ts in stamps]
        out = [{"type": t, "labels": None, "values": values} for t in q["metricType"].split(",")]
        return JSONResponse({"measurements": out})

    return h


@pytest.mark.parametrize(("seconds", "step"), [(7 * 1234 + 3, 7), (150, 60), (60_000 + 59, 60)])
async def test_metrics_samples_lie_on_the_step_grid_inside_the_range(
    seconds: int, step: int
) -> None:
    cp = ControlPlane()
    cp.handlers[f"/api/v1/workloads/{WID}/metrics"] = _even_split_app()
    start = datetime(2025, 1, 1, tzinfo=UTC)
    end = start + timedelta(seconds=seconds)
    landed: list[RawResponse] = []
    async with asgi_client(cp, landed.append) as c:
        m = await c.get_workload_metrics(WID, ["GPU_UTILIZATION"], start, end, step_seconds=step)
    landed.sort(key=lambda r: r.meta["window"])
    stamps = [ts for ts, _ in m.series("GPU_UTILIZATION")]
    expected = [start + timedelta(seconds=step * k) for k in range(-(-seconds // step))]
    assert stamps == expected
    assert all(start <= ts < end for ts in stamps)
    assert all(r.meta["range_end"] == end.isoformat().replace("+00:00", ".000Z") for r in landed)
    assert landed[-1].params["end"] >= landed[-1].meta["range_end"]


async def test_a_token_answer_without_access_token_is_an_authentication_error() -> None:
    cp = ControlPlane()

    async def no_token(request: Request) -> Response:
        return JSONResponse({"expiresIn": 60})

    app = Starlette(
        routes=[
            Route("/api/v1/token", no_token, methods=["POST"]),
            Route("/{rest:path}", cp.dispatch, methods=["GET"]),
        ]
    )
    async with RunaiClient(settings(), transport=httpx.ASGITransport(app=app)) as c:
        with pytest.raises(errors.AuthenticationError, match="without an accessToken") as ei:
            await c.count_workloads()
    e = ei.value
    assert (e.status, e.code, e.details) == (None, None, None)
    assert (e.method, e.path) == ("POST", "/api/v1/token")
    assert e.message == e.reason
    assert SECRET not in str(e)
    assert cp.seen == []  # the listing was never sent without a token
