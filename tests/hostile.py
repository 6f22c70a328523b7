"""A hostile control plane for the tests: a real HTTP proxy in front of the simulator that
corrupts its answers in named ways.

The proxy serves the workload list in pages of its own (:data:`PAGE` rows, as a control
plane may return fewer rows than asked for), so paging faults can be played at any size.
Record faults pick their victim by position among the running workloads of the list (a
running workload has metrics to charge), so each corrupts one known workload
(:meth:`HostileControlPlane.victim`):

- ``negative_gpu`` (position 0): ``allocatedResources.gpu`` = -1
- ``negative_runtime`` (1): ``totalRunningTimeSeconds`` = -1
- ``huge_gpu`` (2): ``allocatedResources.gpu`` = 1e308
- ``deep`` (3): a field nested 100,000 levels deep
- ``surrogate`` (4): a lone surrogate (``\\ud800``) in the name
- ``markup`` (5): department ``[/]``, an escape sequence in the project's name
- ``dup_content`` (0): a second, older copy of that workload on the second page

Metric faults take, in turn, workloads whose metrics answer holds GPU allocation samples
and that no other fault took (:attr:`HostileControlPlane.metric_victims`):
``metric_nan``, ``metric_negative``, ``metric_huge`` (a GPU sample that is NaN, -1 or
1e308), ``overallocate`` (1,000 GPUs allocated all day: below the GPU ceiling, above any node
pool; no record is wrong alone, the bill is, and a dbt test catches it).
``telemetry_negative``: a telemetry value of -5.

Paging faults: ``repeat_page`` (every page is the first), ``stuck_next`` (the second page's
``next`` does not advance), ``stall`` (pages of rows already sent, in a new order each time),
``short_list`` (the list ends after its first page), ``dup_replace`` (a row of the second page
takes the id of the first workload: one workload is never listed).

Transport faults (on the list): ``drip`` (the body at one byte a second), ``hang`` (no answer
ever; ``hang_deleted``: on the list of deleted workloads), ``huge`` (a 50 MB body, streamed).
Auth faults: ``token_401``, ``token_400``
(garbage), ``forbidden`` (403 on workloads), ``wrong_base`` (404 on everything).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

PAGE = 20
DEEP_LEVELS = 100_000
_DEEP = "__deep__"
_FORWARDED = ("date", "content-type")
VICTIMS = {
    "negative_gpu": 0,
    "negative_runtime": 1,
    "huge_gpu": 2,
    "deep": 3,
    "surrogate": 4,
    "markup": 5,
}
METRIC_FAULTS = ("metric_nan", "metric_negative", "metric_huge", "overallocate")
MARKUP_DEPARTMENT = "[/]"
MARKUP_DEPARTMENT_ID = "00000000-0000-4000-8000-00000000feed"
MARKUP_PROJECT = "proj\x1b[31mred\x1b[0m"


@contextmanager
def serve(app: Any, **ssl_kw: Any) -> Iterator[int]:
    """Run ``app`` under uvicorn on a free 127.0.0.1 port in a thread; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="critical", lifespan="off", **ssl_kw)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        server.force_exit = True
        thread.join(5)
        sock.close()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status)


class HostileControlPlane:
    """The proxy. ``faults`` may be changed between runs; ``order`` is the ids of the running
    workloads of the list last served (the victims' positions refer to it)."""

    def __init__(self, upstream: str, faults: Iterable[str] = ()) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults: set[str] = set(faults)
        self.order: list[str] = []
        self.metric_victims: dict[str, str] = {}
        self.requests = 0
        self.token_requests = 0
        self._client: httpx.AsyncClient | None = None  # made in the server's event loop
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["GET", "POST"])])

    def victim(self, fault: str) -> str:
        """The id of the workload ``fault`` corrupts."""
        return self.order[VICTIMS[fault]]

    @contextmanager
    def running(self, **ssl_kw: Any) -> Iterator[str]:
        """Serve; yields the base URL."""
        scheme = "https" if ssl_kw else "http"
        try:
            with serve(self.app, **ssl_kw) as port:
                yield f"{scheme}://127.0.0.1:{port}"
        finally:
            self._client = None  # bound to the stopped server's event loop

    # -------------------------------------------------------------------------- handling

    async def handle(self, request: Request) -> Response:
        self.requests += 1
        path = "/" + request.path_params["path"]
        f = self.faults
        if path == "/api/v1/token":
            self.token_requests += 1
            if "token_401" in f:
                return _error(401, "invalid client credentials")
            if "token_400" in f:
                return _error(400, "grant type garbage is not supported")
        if "wrong_base" in f:
            return _error(404, "Not Found")
        if "forbidden" in f and path.startswith("/api/v1/workloads"):
            return _error(403, "the service account may not read workloads")
        if path == "/api/v1/workloads":
            return await self._list(request)
        status, headers, body = await self._forward(request, path, dict(request.query_params))
        if status == 200 and path.endswith("/metrics"):
            body = self._metrics(path, body)
        if status == 200 and path.endswith("/telemetry") and "telemetry_negative" in f:
            doc = json.loads(body)
            if doc.get("values"):
                doc["values"][0]["value"] = "-5"
            body = json.dumps(doc).encode()
        return Response(body, status_code=status, headers=headers)

    async def _forward(
        self, request: Request, path: str, params: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "content-type", "accept")
        }
        if self._client is None:  # one for all requests: making one costs about 40 ms of CPU
            self._client = httpx.AsyncClient(timeout=60)
        resp = await self._client.request(
            request.method,
            self.upstream + path,
            params=params,
            content=await request.body(),
            headers=headers,
        )
        kept = {k: v for k, v in resp.headers.items() if k.lower() in _FORWARDED}
        return resp.status_code, kept, resp.content

    async def _full_list(self, request: Request) -> tuple[int, dict[str, str], list[Any], bytes]:
        params = {k: v for k, v in request.query_params.items() if k not in ("offset", "limit")}
        rows: list[Any] = []
        offset = 0
        while True:
            status, headers, body = await self._forward(
                request, "/api/v1/workloads", {**params, "offset": str(offset), "limit": "500"}
            )
            if status != 200:
                return status, headers, [], body
            doc = json.loads(body)
            rows += doc["workloads"]
            if doc.get("next") is None:
                return status, headers, rows, body
            offset = doc["next"]

    async def _list(self, request: Request) -> Response:
        f = self.faults
        status, headers, rows, body = await self._full_list(request)
        if status != 200:
            return Response(body, status_code=status, headers=headers)
        deleted = request.query_params.get("deleted") == "true"
        if not deleted:
            running = [r for r in rows if r.get("phase") == "Running"]
            self.order = [r["id"] for r in running]
            self._corrupt_records(running)
        offset = int(request.query_params.get("offset", "0"))
        page = rows[offset : offset + PAGE]
        nxt: int | None = offset + PAGE if offset + PAGE < len(rows) else None
        if not deleted:
            if "repeat_page" in f:
                page, nxt = rows[:PAGE], offset + PAGE
            if "stuck_next" in f and offset == PAGE:
                nxt = offset
            if "stall" in f and offset >= PAGE:
                shift = (offset // PAGE) % PAGE
                page, nxt = rows[shift:PAGE] + rows[:shift], offset + PAGE
            if "short_list" in f:
                nxt = None
            if offset == PAGE and "dup_content" in f:
                older = json.loads(json.dumps(self._by_id(rows, self.victim("negative_gpu"))))
                older["updatedAt"] = "2020-01-01T00:00:00Z"
                older["phase"] = "Pending"
                page = [*page, older]
            if offset == PAGE and "dup_replace" in f and page:
                page = [{**page[0], "id": rows[0]["id"]}, *page[1:]]
        doc: dict[str, Any] = {"workloads": page}
        if nxt is not None:
            doc["next"] = nxt
        text = json.dumps(doc)
        if _DEEP in text:
            text = text.replace(f'"{_DEEP}"', "[" * DEEP_LEVELS + "]" * DEEP_LEVELS)
        data = text.encode()
        if ("hang_deleted" if deleted else "hang") in f:
            await asyncio.sleep(3600)
        if not deleted and "drip" in f:
            return StreamingResponse(_drip(data), headers=headers)
        if not deleted and "huge" in f:
            return StreamingResponse(_huge(doc), headers=headers)
        return Response(data, headers=headers)

    @staticmethod
    def _by_id(rows: list[Any], workload_id: str) -> Any:
        return next(r for r in rows if r["id"] == workload_id)

    def _corrupt_records(self, rows: list[Any]) -> None:
        f = self.faults

        def at(fault: str) -> dict[str, Any] | None:
            i = VICTIMS[fault]
            return rows[i] if fault in f and i < len(rows) else None

        if (w := at("negative_gpu")) is not None:
            w["allocatedResources"] = {**(w.get("allocatedResources") or {}), "gpu": -1.0}
        if (w := at("negative_runtime")) is not None:
            w["totalRunningTimeSeconds"] = -1
        if (w := at("huge_gpu")) is not None:
            w["allocatedResources"] = {**(w.get("allocatedResources") or {}), "gpu": 1e308}
        if (w := at("deep")) is not None:
            w["hostileField"] = _DEEP
        if (w := at("surrogate")) is not None:
            w["name"] = str(w.get("name")) + "\ud800"
        if (w := at("markup")) is not None:
            w["departmentId"] = MARKUP_DEPARTMENT_ID
            w["departmentName"] = MARKUP_DEPARTMENT
            w["projectName"] = MARKUP_PROJECT

    def _metrics(self, path: str, body: bytes) -> bytes:
        workload = path.split("/")[4]
        doc = json.loads(body)
        allocation = [m for m in doc.get("measurements", []) if m.get("type") == "GPU_ALLOCATION"]
        fault = next((k for k, v in self.metric_victims.items() if v == workload), None)
        if fault is None:
            wanted = [k for k in METRIC_FAULTS if k in self.faults and k not in self.metric_victims]
            allocated = any(
                float(v.get("value") or 0) > 0 for m in allocation for v in m.get("values") or []
            )
            if not wanted or not allocated or workload in self.order[: len(VICTIMS)]:
                return body
            fault = wanted[0]
            self.metric_victims[fault] = workload
        for m in doc.get("measurements", []):
            values = m.get("values") or []
            if not values:
                continue
            if fault == "metric_nan" and m.get("type") == "GPU_UTILIZATION":
                values[0]["value"] = "NaN"
            elif m.get("type") != "GPU_ALLOCATION":
                continue
            elif fault == "metric_negative":
                values[0]["value"] = "-1"
            elif fault == "metric_huge":
                values[0]["value"] = "1e308"
            elif fault == "overallocate":
                for v in values:
                    v["value"] = "1000"
        return json.dumps(doc).encode()


async def _drip(data: bytes) -> AsyncIterator[bytes]:
    for i in range(len(data)):
        yield data[i : i + 1]
        await asyncio.sleep(1.0)


async def _huge(doc: dict[str, Any]) -> AsyncIterator[bytes]:
    """The page with 50 MB of padding, in 1 MB chunks."""
    yield b'{"padding":"'
    chunk = b"x" * (1024 * 1024)
    for _ in range(50):
        yield chunk
    yield b'",' + json.dumps(doc).encode()[1:]
