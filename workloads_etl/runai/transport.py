"""Connections to the control plane: httpx requests sent over aiohttp's connection pool.

The client speaks httpx: requests, responses, timeouts and httpx's exception tree, which
the retry policy (:mod:`workloads_etl.runai.retry`) classifies. :class:`AiohttpTransport`
is the httpx transport that carries them, over one ``aiohttp.ClientSession`` of
``max_connections`` keep-alive connections. aiohttp parses HTTP/1.1 in compiled code (llhttp)
and hands out pooled connections without re-examining each of them per request, where
httpcore's pool polls every idle socket for every request it assigns (encode/httpcore#1035).
On metrics answers at concurrency 16 that took the client's CPU per request from about 5.7
to 4.0 ms, landing and normalising included; ``bench/bench_client.py`` compares the client
with bare httpx side by side.

What the transport owns is the wire: connecting (TLS verification as ``verify`` says, the
standard proxy variables as httpx reads them), sending, and streaming the body as it arrives.
It follows no redirect, keeps no cookie and leaves decoding ``Content-Encoding`` to httpx's
``Response``, so an answer reads the same whichever transport carried it. aiohttp's errors
become httpx's (:func:`transport_error`): a refused or failed connection ``ConnectError``
(a failed certificate check keeps the ``ssl`` error as its cause), a timeout to connect
``ConnectTimeout``, a read timeout ``ReadTimeout``, a connection closed or a malformed answer
``RemoteProtocolError``, other socket errors ``ReadError``.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import yarl


def transport_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    """The httpx exception for an aiohttp error met while sending ``request`` or reading its
    answer (raise it ``from`` the original)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(text, request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError):  # the socket read timeout, or a subclass
        return httpx.ReadTimeout(text, request=request)
    if isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return httpx.ProxyError(text, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, unresolved, TLS failures
        return httpx.ConnectError(text, request=request)
    if isinstance(exc, aiohttp.ClientOSError):
        return httpx.ReadError(text, request=request)
    # The connection closed early, a body shorter than announced, a malformed answer.
    return httpx.RemoteProtocolError(text, request=request)


def _tls_cause(exc: BaseException) -> BaseException:
    """The ``ssl`` error behind a failed certificate check, as the cause to keep."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return exc.certificate_error
    return exc


class _Body(httpx.AsyncByteStream):
    """An answer's body as it arrives; closing it gives the connection back to the pool
    once the body was read to its end, and closes it otherwise."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except aiohttp.ClientError as exc:
            raise transport_error(exc, self._request) from exc

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """At most ``max_connections`` keep-alive connections to ``base_url``'s host.

    ``verify`` is what httpx would take: an ``ssl.SSLContext``, True (the default context)
    or False (no verification). A proxy is taken from the standard variables
    (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``), as httpx's own transport
    does. The aiohttp session opens on the first request, in the running event loop, and
    :meth:`aclose` closes it.
    """

    def __init__(self, base_url: str, max_connections: int, verify: ssl.SSLContext | bool) -> None:
        url = httpx.URL(base_url)
        proxies = urllib.request.getproxies()
        proxy = proxies.get(url.scheme) or proxies.get("all")
        if proxy and urllib.request.proxy_bypass(url.host):
            proxy = None
        # aiohttp sends credentials in the proxy's URL as its Proxy-Authorization.
        self.proxy = proxy or None
        self.max_connections = max_connections
        self._ssl: ssl.SSLContext | bool = verify
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[Any, Any], aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.max_connections, limit_per_host=0, ssl=self._ssl
        )
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # httpx decodes Content-Encoding
            cookie_jar=aiohttp.DummyCookieJar(),  # the control plane's API sets none
            trust_env=False,  # the proxy variables are read once, above
            timeout=aiohttp.ClientTimeout(total=None),
        )

    def _timeout(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        """httpx's connect and read timeouts of ``request`` (the whole attempt's deadline is
        the session's)."""
        t = request.extensions.get("timeout", {})
        key = (t.get("connect"), t.get("read"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=key[0], sock_read=key[1])
            self._timeouts[key] = timeout
        return timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open()
        content = await request.aread()
        try:
            response = await self._session.request(
                request.method,
                yarl.URL(str(request.url), encoded=True),
                headers=request.headers.multi_items(),
                data=content or None,
                allow_redirects=False,
                proxy=self.proxy,
                timeout=self._timeout(request),
            )
        except aiohttp.ClientError as exc:
            raise transport_error(exc, request) from _tls_cause(exc)
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response, request),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("ascii", "replace"),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
