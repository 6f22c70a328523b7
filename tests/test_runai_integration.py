"""The client over real HTTP against the simulated control plane, with every fault switched on
at once (slow answers that overrun the client's read timeout included), must return exactly
what it returns with faults off. Malformed records change record content on purpose, so they
are checked on their own: the same workloads come back, the off-spec ones as served."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyarrow as pa
import pytest

from workloads_etl.runai import RawResponse, RunaiClient, RunaiSettings
from workloads_etl.simulator import FaultConfig, SimulatorConfig, SimulatorServer
from workloads_etl.simulator.faults import corrupt_record, malformed_kind

pytestmark = pytest.mark.anyio

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TYPES = ["GPU_UTILIZATION", "CPU_USAGE_CORES", "GPU_MEMORY_USAGE_BYTES"]
READ_TIMEOUT = 0.25  # seconds; answers slower than this are abandoned and retried
ALL_FAULTS = FaultConfig(
    seed=13,
    latency_ms=10,  # every answer is delayed by 10 ms ...
    jitter_ms=300,  # ... plus up to 300 ms: about one answer in six overruns READ_TIMEOUT
    error_rate=0.2,  # 500 / 502 / 503 mixed
    rate_limit_rate=0.1,  # 429 with Retry-After
    retry_after=1,
    retry_after_form="mixed",  # delta-seconds and HTTP-date
    drop_rate=0.05,  # connections dropped mid-response
    token_ttl=3,  # tokens expire every few seconds
    list_drift=0.5,  # offset paging over a growing list repeats rows
    list_skip=0.2,  # ... and over a shrinking one skips rows (the list is read again)
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
        timeout=READ_TIMEOUT,
        connect_timeout=5.0,
        max_attempts=15,
        max_retry_wait=0.5,
        min_retry_wait=0.01,
        max_total_retry_time=60.0,
        page_size=25,
        metrics_partial_retries=8,
    )


def _by_id(records: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {w["id"]: w for w in records}


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
        "live": live,
        "deleted": deleted,
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

    # the same workloads, once each, record for record
    clean_ids = [w["id"] for w in clean["live"]]
    faulty_ids = [w["id"] for w in faulty["live"]]
    assert len(clean_ids) == len(set(clean_ids)) == clean["count"] > 0
    assert len(faulty_ids) == len(set(faulty_ids))
    assert _by_id(faulty["live"]) == _by_id(clean["live"])
    assert clean["deleted"]
    assert _by_id(faulty["deleted"]) == _by_id(clean["deleted"])
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
    # slow answers overran the read timeout and were retried
    timed_out = [m for m in messages if "failed (ReadTimeout" in m and "retrying in" in m]
    assert timed_out
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


MALFORMED = FaultConfig(seed=11, malformed_rate=0.3)


async def test_malformed_records_come_back_as_served_with_the_same_ids(
    clean_server: SimulatorServer,
) -> None:
    async with RunaiClient(_settings(clean_server)) as client:
        clean = _by_id([w async for w in client.iter_workloads()])
        odd = sorted(wid for wid in clean if malformed_kind(MALFORMED, wid) is not None)
        assert odd
        clean_one = await client.get_workload(odd[0])
    with SimulatorServer(_config(MALFORMED)) as sim:
        async with RunaiClient(_settings(sim)) as client:
            served = _by_id([w async for w in client.iter_workloads()])
            count = await client.count_workloads()
            one = await client.get_workload(odd[0])
    assert list(served) == list(clean)  # same ids, same order
    assert count == len(clean)
    changed = sorted(wid for wid in clean if served[wid] != clean[wid])
    assert changed == odd  # exactly the malformed ones differ, the rest are untouched
    # the single read (which carries more fields than a list row) is corrupted the same way
    kind = malformed_kind(MALFORMED, odd[0])
    assert kind is not None
    assert one == corrupt_record(dict(clean_one), kind)
    for wid in odd:  # each list row carries its own corruption, nothing else changed
        row_kind = malformed_kind(MALFORMED, wid)
        assert row_kind is not None
        assert served[wid] == corrupt_record(dict(clean[wid]), row_kind), wid


@pytest.mark.parametrize(("seconds", "step"), [(7 * 1100 + 3, 7), (150, 60)])
async def test_metrics_at_an_odd_step_stay_on_the_grid(
    clean_server: SimulatorServer, seconds: int, step: int
) -> None:
    async with RunaiClient(_settings(clean_server)) as client:
        live = [w async for w in client.iter_workloads()]
        running = sorted(
            (
                w
                for w in live
                if w.get("phase") == "Running"
                and datetime.fromisoformat(w["createdAt"].replace("Z", "+00:00"))
                < NOW - timedelta(days=1)
            ),
            key=lambda w: w["id"],
        )
        end = NOW - timedelta(seconds=30)
        start = end - timedelta(seconds=seconds)
        m = await client.get_workload_metrics(
            running[0]["id"], ["GPU_UTILIZATION"], start, end, step_seconds=step
        )
    stamps = sorted(set(m.table.column("ts").to_pylist()))
    expected = [start + timedelta(seconds=step * k) for k in range(-(-seconds // step))]
    assert stamps == expected  # every sample on start + k * step, inside [start, end)
