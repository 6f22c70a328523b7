from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest

from workloads_etl.runai.transport import POOL_SIZE, PoolOfPools


async def _slow_server(delay: float) -> tuple[asyncio.Server, dict[str, int]]:
    """An HTTP/1.1 server answering every request after ``delay``, counting the requests it
    holds at once and the connections it was opened."""
    seen = {"now": 0, "peak": 0, "connections": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["connections"] += 1
        while await reader.readuntil(b"\r\n\r\n"):
            seen["now"] += 1
            seen["peak"] = max(seen["peak"], seen["now"])
            await asyncio.sleep(delay)
            seen["now"] -= 1
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, seen


def test_requests_go_to_the_pool_with_most_free_connections_and_use_them_all() -> None:
    async def main() -> None:
        server, seen = await _slow_server(0.2)
        port = server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        transport = PoolOfPools(url, 18, verify=False)
        assert [p._pool._max_connections for p in transport._pools] == [4, 4, 4, 4, 2]
        async with server, httpx.AsyncClient(base_url=url, transport=transport) as client:
            t0 = time.perf_counter()
            answers = await asyncio.gather(*(client.get("/") for _ in range(18)))
            took = time.perf_counter() - t0
            assert [a.text for a in answers] == ["ok"] * 18
            # one round: had a request waited in a full pool, it would take two delays
            assert took < 0.2 * 1.9
            assert transport._busy == [0] * 5  # every answer closed released its pool
            await asyncio.gather(*(client.get("/") for _ in range(54)))
            assert seen["peak"] <= 18  # never more than the connections asked for
            assert seen["connections"] == 18  # each opened once, kept alive and reused
        assert POOL_SIZE == 4

    asyncio.run(main())


def test_a_failed_request_releases_its_pool() -> None:
    async def main() -> None:
        transport = PoolOfPools("http://127.0.0.1:9", 4, verify=False)
        async with httpx.AsyncClient(base_url="http://127.0.0.1:9", transport=transport) as c:
            for _ in range(3):
                with contextlib.suppress(httpx.ConnectError):
                    await c.get("/")
        assert transport._busy == [0]

    asyncio.run(main())


def test_the_proxy_variables_apply_as_to_httpx_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    via = PoolOfPools("https://cp.example", 4, verify=True)
    direct = PoolOfPools("https://cp.internal.example", 4, verify=True)
    assert type(via._pools[0]._pool).__name__ == "AsyncHTTPProxy"
    assert type(direct._pools[0]._pool).__name__ == "AsyncConnectionPool"
