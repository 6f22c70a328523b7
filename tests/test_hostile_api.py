"""The client against a hostile control plane (a real proxy in front of the simulator, one
fault at a time): paging that cannot loop or lose, deadlines, size limits, errors retrying
cannot fix, the run's retry budget, and the named cause of each failure."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.hostile import PAGE, HostileControlPlane
from workloads_etl.failures import describe, explain
from workloads_etl.runai import RunaiClient, RunaiSettings, errors
from workloads_etl.runai.body import CUT_DEPTH, depth, dumps, loads, too_deep, valid_text
from workloads_etl.runai.retry import RetryBudget
from workloads_etl.simulator import SimulatorConfig, SimulatorServer

NOW = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimulatorConfig(seed=3, workloads=150, days=3, now=NOW)) as sim:
        yield sim


@pytest.fixture
def hostile(simulator: SimulatorServer) -> Iterator[tuple[HostileControlPlane, str]]:
    proxy = HostileControlPlane(simulator.base_url)
    with proxy.running() as url:
        yield proxy, url


def _settings(sim: SimulatorServer, url: str, **kw: Any) -> RunaiSettings:
    return RunaiSettings(
        base_url=url,
        client_id=sim.client_id,
        client_secret=sim.client_secret,
        max_retry_wait=0.2,
        **kw,
    )


async def _listing(settings: RunaiSettings, budget: RetryBudget | None = None) -> int:
    async with RunaiClient(settings, budget=budget) as client:
        n = 0
        async for page in client.iter_workload_pages():
            n += len(page)
        return n


def _list(settings: RunaiSettings) -> tuple[int | BaseException, float]:
    started = time.monotonic()
    try:
        result: int | BaseException = asyncio.run(asyncio.wait_for(_listing(settings), 60))
    except Exception as exc:
        result = exc
    return result, time.monotonic() - started


# --- paging --------------------------------------------------------------------------------


def test_a_clean_listing_in_small_pages_is_whole(simulator: SimulatorServer, hostile: Any) -> None:
    _, url = hostile
    listed, _ = _list(_settings(simulator, url))
    assert isinstance(listed, int) and listed > 2 * PAGE  # several pages of the proxy's size


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ("repeat_page", errors.PagingError, "repeats the rows of the page at offset 0"),
        ("stuck_next", errors.PagingError, f"'next'={PAGE} does not advance"),
        ("stall", errors.PagingError, "3 pages in a row"),
        ("short_list", errors.IncompleteListError, f"gave {PAGE}, the count endpoint says"),
        ("dup_replace", errors.IncompleteListError, "an incomplete list would bill less"),
    ],
)
def test_broken_paging_stops_with_a_named_error(
    simulator: SimulatorServer, hostile: Any, fault: str, error: type, message: str
) -> None:
    proxy, url = hostile
    proxy.faults = {fault}
    result, seconds = _list(_settings(simulator, url))
    assert isinstance(result, error), result
    assert message in str(result)
    assert seconds < 10 and proxy.requests < 20  # no endless paging
    kind = explain(result).kind
    assert kind == ("broken paging" if error is errors.PagingError else "incomplete list")


def test_pages_are_bounded_by_the_count(simulator: SimulatorServer, hostile: Any) -> None:
    """``next`` keeps going with fresh ids beyond what the count allows: the listing stops
    after the count's rows with their margin, and one page more."""
    proxy, url = hostile
    proxy.faults = {"stall"}
    settings = _settings(
        simulator, url, list_stall_pages=1000, list_page_margin=0.0, page_size=PAGE
    )
    result, _ = _list(settings)
    assert isinstance(result, errors.PagingError)
    assert "more than the" in str(result) and "workloads the count endpoint reports" in str(result)


def test_a_tolerance_lets_a_short_list_through(simulator: SimulatorServer, hostile: Any) -> None:
    proxy, url = hostile
    proxy.faults = {"dup_replace"}
    listed, _ = _list(_settings(simulator, url, list_tolerance=0.1))
    assert isinstance(listed, int)


def test_a_duplicate_with_other_content_is_not_a_missing_workload(
    simulator: SimulatorServer, hostile: Any
) -> None:
    proxy, url = hostile
    clean, _ = _list(_settings(simulator, url))
    proxy.faults = {"dup_content"}
    listed, _ = _list(_settings(simulator, url))
    assert listed == clean  # each id once; the normaliser keeps the newer copy (see runs)


# --- deadlines and sizes -------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["drip", "hang"])
def test_a_slow_or_hanging_answer_meets_its_deadline(
    simulator: SimulatorServer, hostile: Any, fault: str
) -> None:
    proxy, url = hostile
    proxy.faults = {fault}
    settings = _settings(simulator, url, request_deadline=1.0, max_attempts=2)
    result, seconds = _list(settings)
    assert isinstance(result, errors.RetryExhaustedError)
    assert isinstance(result.last_error, errors.DeadlineExceededError)
    assert seconds < 6  # two attempts of 1 s each, a short wait, the count calls
    assert explain(result).kind == "timeout"


def test_an_oversized_answer_is_refused_unread_and_not_retried(
    simulator: SimulatorServer, hostile: Any
) -> None:
    proxy, url = hostile
    proxy.faults = {"huge"}
    result, _ = _list(_settings(simulator, url))  # the default limit: 32 MiB
    assert isinstance(result, errors.ResponseTooLargeError), result
    assert "larger than 32 MiB" in str(result)
    assert proxy.requests == 3  # token, count, the one list request: no retry
    assert explain(result).kind == "response too large"


def test_the_size_limit_holds_for_a_declared_length_too(
    simulator: SimulatorServer, hostile: Any
) -> None:
    _, url = hostile
    result, _ = _list(_settings(simulator, url, max_response_bytes=2048))
    assert isinstance(result, errors.ResponseTooLargeError)  # a page is above 2 KiB


# --- errors retrying cannot fix ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("token_401", "credentials"),
        ("token_400", "credentials"),
        ("forbidden", "permission"),
        ("wrong_base", "wrong URL"),
    ],
)
def test_errors_retrying_cannot_fix_fail_at_once(
    simulator: SimulatorServer, hostile: Any, fault: str, kind: str
) -> None:
    proxy, url = hostile
    proxy.faults = {fault}
    result, seconds = _list(_settings(simulator, url))
    assert isinstance(result, errors.RunaiError)
    assert seconds < 2
    assert proxy.requests <= 2  # the token call, and at most the first workloads call
    assert explain(result).kind == kind


def test_tls_failure_is_named(tmp_path: Any, simulator: SimulatorServer) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    key, chain = tmp_path / "key.pem", tmp_path / "chain.pem"
    cert.private_key_pem.write_to_path(key)
    cert.private_key_and_cert_chain_pem.write_to_path(chain)
    proxy = HostileControlPlane(simulator.base_url)
    with proxy.running(ssl_keyfile=str(key), ssl_certfile=str(chain)) as url:
        result, seconds = _list(_settings(simulator, url))
    assert isinstance(result, errors.TLSVerificationError)
    assert explain(result).kind == "TLS" and seconds < 2


# --- the run's retry budget ----------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_down_control_plane_spends_the_budget_once_then_fails_at_once() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    settings = RunaiSettings(
        base_url=url, token="a-bearer-token", retry_budget=2.0, max_attempts=100, max_retry_wait=0.5
    )
    budget = RetryBudget(settings.retry_budget)

    def attempt() -> tuple[BaseException, float]:
        started = time.monotonic()
        with pytest.raises(errors.ControlPlaneUnavailableError) as caught:
            asyncio.run(_listing(settings, budget))
        return caught.value, time.monotonic() - started

    first, first_seconds = attempt()
    assert 1.0 < first_seconds < 4.0  # retried for the budget, not for 100 attempts
    assert "retry budget" in str(first)
    cause = describe(first)
    assert cause.startswith("connection refused:") and "gave up" in cause
    second, second_seconds = attempt()  # the next step of the same run
    assert second_seconds < 1.0 and second.attempts == 1


def test_a_success_refills_the_budget() -> None:
    clock = [0.0]
    budget = RetryBudget(10.0, clock=lambda: clock[0])
    clock[0] = 8.0
    assert budget.left() == pytest.approx(2.0)
    budget.success()
    clock[0] = 9.0
    assert budget.left() == pytest.approx(9.0) and not budget.spent()
    clock[0] = 30.0
    assert budget.spent()


# --- bodies of any depth and any text ------------------------------------------------------


def test_a_body_nested_beyond_the_decoder_is_cut_not_crashed() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    text = '{"workloads":[{"id":"a","x":' + deep + '},{"id":"b","s":"[[\\"]]"}],"next":2}'
    doc = loads(text)
    assert [w["id"] for w in doc["workloads"]] == ["a", "b"]
    assert doc["workloads"][1]["s"] == '[["]]'  # brackets inside strings are not nesting
    assert too_deep(doc["workloads"][0]["x"]) and not too_deep(doc["workloads"][1])
    assert depth(text) == 100_003
    assert depth(dumps(doc)) == CUT_DEPTH + 1


def test_text_with_a_lone_surrogate_is_kept_losslessly_as_valid_utf8() -> None:
    value = {"name": "gpu\ud800"}
    assert not valid_text(value["name"]) and valid_text("Zürich ✓")
    text = dumps(value)
    text.encode("utf-8")  # valid UTF-8
    assert loads(text) == value
    assert dumps({"name": "Zürich"}) == '{"name":"Zürich"}'


def test_a_host_that_does_not_resolve_is_named() -> None:
    settings = RunaiSettings(
        base_url="http://control-plane.workloads-etl.invalid",
        token="a-bearer-token",
        retry_budget=1.0,
        max_retry_wait=0.2,
    )
    with pytest.raises(errors.RetryExhaustedError) as caught:
        asyncio.run(asyncio.wait_for(_listing(settings), 60))
    assert explain(caught.value).kind == "DNS"


def test_errors_of_our_own_side_are_named(tmp_path: Any) -> None:
    from workloads_etl.warehouse.dbt import DbtRunError
    from workloads_etl.warehouse.loader import WarehouseLockedError

    full = OSError(28, "No space left on device", str(tmp_path / "raw" / "x.jsonl"))
    assert explain(full).line().startswith("disk error: no space left on the device writing ")
    from_dbt = DbtRunError(["build"], ["[Errno 30] Read-only file system: 'target'"])
    assert explain(from_dbt).kind == "disk error"
    locked = WarehouseLockedError("the warehouse w.duckdb is locked by another process (PID 42)")
    assert explain(locked).detail == str(locked)
    assert explain(locked).kind == "locked warehouse"
    assert explain(ValueError("odd")).line() == "error: ValueError: odd; see the run log"
