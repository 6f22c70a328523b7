"""The client over real HTTP against the simulated control plane, with every fault switched on
at once, must return exactly what it returns with faults off."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyarrow as pa
import pytest

from workloads_etl.runai import RawResponse, RunaiClient, RunaiSettings
from workloads_etl.simulator import FaultConfig, SimulatorConfig, SimulatorServer

pytestmark = pytest.mark.anyio

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TYPES = ["GPU_UTILIZATION", "CPU_USAGE_CORES", "GPU_MEMORY_USAGE_BYTES"]
ALL_FAULTS = FaultConfig(
    seed=11,
    error_rate=0.2,  # 500 / 502 / 503 mixed
    rate_limit_rate=0.1,  # 429 with Retry-After
    retry_after=1,
    retry_after_form="mixed",  # delta-seconds and HTTP-date
    drop_rate=0.05,  # connections dropped mid-response
    token_ttl=3,  # tokens expire every few seconds
    list_drift=0.5,  # offset paging over a growing list repeats rows
    partial_rate=0.3,  # 207 with some metric types missing
    metrics_timestamp_format="space",  # the other timestamp form of the spec
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _config(faults: FaultConfig | None) -> SimulatorConfig:
    return SimulatorConfig(seed=5, workloads=120, days=3, now=NOW, faults=faults)


@pytest.fixture(scope="module")
def clean_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(_config(None)) as sim:
        yield sim


@pytest.fixture(scope="module")
def faulty_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(_config(ALL_FAULTS)) as sim:
        yield sim


class TokenSpy(httpx.AsyncHTTPTransport):
    """A real HTTP transport that notes every access token the server hands out."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.tokens: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.url.path == "/api/v1/token" and response.status_code == 200:
            await response.aread()
            self.tokens.append(json.loads(response.content)["accessToken"])
        return response


def _settings(sim: SimulatorServer) -> RunaiSettings:
    return RunaiSettings(
        base_url=sim.base_url,
        client_id=sim.client_id,
        client_secret=sim.client_secret,
        max_attempts=15,
        max_retry_wait=0.5,
        min_retry_wait=0.01,
        max_total_retry_time=60.0,
        page_size=25,
        metrics_partial_retries=8,
    )


async def _harvest(
    sim: SimulatorServer, recorded: list[RawResponse], spy: TokenSpy | None = None
) -> dict[str, Any]:
    async with RunaiClient(_settings(sim), recorded.append, transport=spy) as client:
        live = [w async for w in client.iter_workloads()]
        deleted = [w async for w in client.iter_workloads(deleted=True)]
        count = await client.count_workloads()
        long_running = [
            w
            for w in live
            if w.get("phase") == "Running"
            and datetime.fromisoformat(w["createdAt"].replace("Z", "+00:00"))
            < NOW - timedelta(minutes=1001)
        ]
        running = sorted(long_running, key=lambda w: w["id"])[:4]
        assert len(running) == 4
        metrics: dict[str, pa.Table] = {}
        missing: dict[str, list[str]] = {}
        for w in running:
            # 1001 samples at 60 s: two windows, the second holding one sample
            start = NOW - timedelta(minutes=1001)
            m = await client.get_workload_metrics(w["id"], TYPES, start, NOW, step_seconds=60)
            metrics[w["id"]] = m.table
            missing[w["id"]] = m.missing_types
        one = await client.get_workload(running[0]["id"])
        telemetry = await client.get_telemetry("WORKLOADS_COUNT", group_by=["Phase"])
        tokens = client.token_requests
    return {
        "live": [w["id"] for w in live],
        "deleted": [w["id"] for w in deleted],
        "count": count,
        "metrics": metrics,
        "missing": missing,
        "one": one,
        "telemetry": telemetry,
        "tokens": tokens,
    }


async def test_every_fault_at_once_gives_the_same_data_and_leaks_no_secret(
    clean_server: SimulatorServer,
    faulty_server: SimulatorServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clean_recorded: list[RawResponse] = []
    clean = await _harvest(clean_server, clean_recorded)

    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    for name in ("httpx", "httpcore", "workloads_etl.runai"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    spy = TokenSpy(limits=httpx.Limits(max_connections=16, max_keepalive_connections=16))
    faulty_recorded: list[RawResponse] = []
    faulty = await _harvest(faulty_server, faulty_recorded, spy)

    # the same workloads, once each
    assert len(clean["live"]) == len(set(clean["live"])) == clean["count"] > 0
    assert len(faulty["live"]) == len(set(faulty["live"]))
    assert set(faulty["live"]) == set(clean["live"])
    assert set(faulty["deleted"]) == set(clean["deleted"])
    assert faulty["count"] == clean["count"]
    assert faulty["one"] == clean["one"]
    assert faulty["telemetry"]["values"] == clean["telemetry"]["values"]

    # the same samples, complete
    assert set(faulty["metrics"]) == set(clean["metrics"])
    for wid, table in clean["metrics"].items():
        assert clean["missing"][wid] == []
        assert faulty["missing"][wid] == []
        assert table.num_rows > 0
        assert faulty["metrics"][wid].equals(table), wid

    # the faults really happened: refreshed tokens, retried requests, partial answers
    assert faulty["tokens"] >= 2  # tokens live 3 s; the run takes longer
    assert len(spy.tokens) == faulty["tokens"]
    messages = [r.getMessage() for r in caplog.records if r.name == "workloads_etl.runai"]
    for failure in ("-> 429", "-> 50", "ProtocolError"):  # 429, 5xx, dropped connections
        assert any(failure in m for m in messages), failure
    assert any(r.status == 207 for r in faulty_recorded)
    assert any("retrying" in r.getMessage() for r in caplog.records)
    assert len(faulty_recorded) > len(clean_recorded)

    # nothing secret in logs or in the raw landing records
    assert spy.tokens
    assert all(r.operation != "grant_token" for r in faulty_recorded)
    landed = "\n".join(json.dumps(r.to_json_dict()) for r in faulty_recorded)
    text = caplog.text + "\n" + landed
    assert "/api/v1/workloads" in caplog.text
    assert faulty_server.client_secret not in text
    for token in spy.tokens:
        assert token not in text
    assert "Bearer" not in text
