"""Connections to the control plane: a pool of small connection pools.

httpcore's pool (httpx's default transport) re-examines every connection for every request
it assigns, polling each idle socket; with 16 connections that bookkeeping cost more CPU
than the requests themselves (encode/httpcore#1035). :class:`PoolOfPools` keeps the same
number of connections in pools of at most :data:`POOL_SIZE` and sends each request to the
pool with the most free connections, so each pool's bookkeeping stays small.
"""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

POOL_SIZE = 4


class _Released(httpx.AsyncByteStream):
    """A response body that tells its pool when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._release is not None:
                self._release()
                self._release = None


class PoolOfPools(httpx.AsyncBaseTransport):
    """``max_connections`` connections in pools of at most :data:`POOL_SIZE`."""

    def __init__(self, base_url: str, max_connections: int, verify: Any) -> None:
        scheme = httpx.URL(base_url).scheme
        host = httpx.URL(base_url).host
        # The standard proxy variables, as httpx reads them for its default transport.
        proxies = urllib.request.getproxies()
        proxy = proxies.get(scheme) or proxies.get("all")
        if proxy and urllib.request.proxy_bypass(host):
            proxy = None
        sizes = [POOL_SIZE] * (max_connections // POOL_SIZE)
        if max_connections % POOL_SIZE:
            sizes.append(max_connections % POOL_SIZE)
        self._pools = [
            httpx.AsyncHTTPTransport(
                verify=verify,
                proxy=proxy,
                limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
            )
            for n in sizes
        ]
        self._sizes = sizes
        self._busy = [0] * len(self._pools)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        i = max(range(len(self._pools)), key=lambda k: self._sizes[k] - self._busy[k])
        self._busy[i] += 1

        def release() -> None:
            self._busy[i] -= 1

        try:
            resp = await self._pools[i].handle_async_request(request)
        except BaseException:
            release()
            raise
        assert isinstance(resp.stream, httpx.AsyncByteStream)
        return httpx.Response(
            resp.status_code,
            headers=resp.headers,
            stream=_Released(resp.stream, release),
            extensions=resp.extensions,
        )

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()
