from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from workloads_etl.runai.transport import AiohttpTransport


async def _slow_server(delay: float) -> tuple[asyncio.Server, str, dict[str, int]]:
    """An HTTP/1.1 server (and its URL) answering every request after ``delay``, counting
    the requests it holds at once and the connections it was opened."""
    seen = {"now": 0, "peak": 0, "connections": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["connections"] += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                seen["now"] += 1
                seen["peak"] = max(seen["peak"], seen["now"])
                await asyncio.sleep(delay)
                seen["now"] -= 1
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed the connection

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen


async def _server(answer: bytes) -> tuple[asyncio.Server, str, dict[str, list[bytes]]]:
    """A server giving ``answer`` (raw HTTP) to each request, keeping the requests' heads."""
    heads: dict[str, list[bytes]] = {"requests": []}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            heads["requests"].append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(answer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", heads


def test_connections_are_bounded_kept_alive_and_reused() -> None:
    async def main() -> None:
        server, url, seen = await _slow_server(0.2)
        transport = AiohttpTransport(url, 18, verify=False)
        async with server, httpx.AsyncClient(base_url=url, transport=transport) as client:
            t0 = time.perf_counter()
            answers = await asyncio.gather(*(client.get("/") for _ in range(18)))
            took = time.perf_counter() - t0
            assert [a.text for a in answers] == ["ok"] * 18
            # one round: had a request waited for a connection, it would take two delays
            assert took < 0.2 * 1.9
            await asyncio.gather(*(client.get("/") for _ in range(54)))
            assert seen["peak"] <= 18  # never more than the connections asked for
            assert seen["connections"] == 18  # each opened once, kept alive and reused

    asyncio.run(main())


def test_answers_reach_httpx_as_sent_and_it_decodes_them() -> None:
    """Status, reason, repeated headers and a gzip body: httpx decodes it, not the transport."""
    import gzip

    body = gzip.compress(b'{"count": 7}')
    answer = (
        b"HTTP/1.1 207 Multi-Status\r\ncontent-type: application/json\r\n"
        b"content-encoding: gzip\r\nx-note: a\r\nx-note: b\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )

    async def main() -> None:
        server, url, heads = await _server(answer)
        transport = AiohttpTransport(url, 2, verify=False)
        async with server, httpx.AsyncClient(base_url=url, transport=transport) as client:
            resp = await client.post(
                "/api/v1/workloads/a%2Fb/metrics",
                params={"metricType": "GPU_UTILIZATION,CPU_USAGE_CORES"},
                json={"k": "v"},
                headers={"Authorization": "Bearer t0ken"},
            )
        assert resp.status_code == 207 and resp.reason_phrase == "Multi-Status"
        assert resp.headers.get_list("x-note") == ["a", "b"]
        assert resp.json() == {"count": 7}
        head = heads["requests"][0]
        # the path and query exactly as httpx encoded them; httpx's headers as they were
        assert head.startswith(
            b"POST /api/v1/workloads/a%2Fb/metrics?metricType=GPU_UTILIZATION%2CCPU_USAGE_CORES "
        )
        lines = head.lower().split(b"\r\n")
        assert b"authorization: bearer t0ken" in lines and b"content-length: 9" in lines
        for name in (b"host", b"user-agent", b"accept-encoding", b"content-length"):
            assert sum(line.startswith(name + b":") for line in lines) == 1  # none added

    asyncio.run(main())


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort", httpx.RemoteProtocolError),
        (b"", httpx.RemoteProtocolError),  # closed without an answer
        (b"NOT HTTP AT ALL\r\n\r\n", httpx.RemoteProtocolError),
    ],
)
def test_broken_answers_raise_httpx_transport_errors(
    answer: bytes, error: type[httpx.TransportError]
) -> None:
    async def main() -> None:
        server, url, _ = await _server(answer)
        transport = AiohttpTransport(url, 2, verify=False)
        async with server, httpx.AsyncClient(base_url=url, transport=transport) as client:
            with pytest.raises(error):
                await client.get("/")  # reads the whole body

    asyncio.run(main())


def test_a_refused_connection_is_a_connect_error_and_the_pool_recovers() -> None:
    async def main() -> None:
        transport = AiohttpTransport("http://127.0.0.1:9", 1, verify=False)
        async with httpx.AsyncClient(base_url="http://127.0.0.1:9", transport=transport) as c:
            for _ in range(3):  # a pool of one connection: a leaked one would hang here
                with pytest.raises(httpx.ConnectError):
                    await asyncio.wait_for(c.get("/"), 5)

    asyncio.run(main())


def test_a_read_timeout_is_httpx_read_timeout() -> None:
    async def main() -> None:
        server, url, _ = await _slow_server(2.0)
        transport = AiohttpTransport(url, 1, verify=False)
        async with server, httpx.AsyncClient(base_url=url, transport=transport) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get("/", timeout=httpx.Timeout(5.0, read=0.2))

    asyncio.run(main())


def test_a_body_left_unread_closes_its_connection() -> None:
    """An answer closed before its end (too large to read) does not go back to the pool
    half-read: the next request gets a fresh connection and a whole answer."""

    async def main() -> None:
        big = b"x" * 1_000_000
        server, url, heads = await _server(
            b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(big) + big
        )
        transport = AiohttpTransport(url, 1, verify=False)
        async with server, httpx.AsyncClient(base_url=url, transport=transport) as client:
            async with client.stream("GET", "/") as resp:
                async for _ in resp.aiter_bytes():
                    break
            resp = await client.get("/")
            assert len(resp.content) == len(big)
        assert len(heads["requests"]) == 2

    asyncio.run(main())


def test_the_proxy_variables_apply_as_to_httpx_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    via = AiohttpTransport("https://cp.example", 4, verify=True)
    assert via.proxy == "http://proxy.example:3128"
    assert AiohttpTransport("https://cp.internal.example", 4, verify=True).proxy is None


def test_a_proxy_gets_the_requests_with_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain-HTTP control plane through a proxy: the request goes to the proxy, with the
    target's absolute URL and the proxy URL's credentials as Proxy-Authorization."""

    async def main() -> None:
        proxy, proxy_url, heads = await _server(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        monkeypatch.setenv("HTTP_PROXY", proxy_url.replace("http://", "http://me:s3cret@"))
        for name in ("http_proxy", "NO_PROXY", "no_proxy"):  # lower case would win
            monkeypatch.delenv(name, raising=False)
        target = "http://cp.example:8080"
        transport = AiohttpTransport(target, 1, verify=False)
        async with proxy, httpx.AsyncClient(base_url=target, transport=transport) as client:
            assert (await client.get("/api/v1/workloads/count")).text == "ok"
        head = heads["requests"][0].lower()
        assert head.startswith(b"get http://cp.example:8080/api/v1/workloads/count http/1.1")
        assert b"proxy-authorization: basic bwu6cznjcmv0" in head  # me:s3cret

    asyncio.run(main())
