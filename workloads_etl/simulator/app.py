"""The simulated Run:ai control plane: a Starlette app serving the workloads API slice.

``create_app`` wires the routes to the handlers of ``handlers.Simulator``, maps errors to
the spec's Error body (``responses``) and adds the fault injection and ``Date`` header
middleware. With ``config.admin`` it also serves ``POST /_simulator/clock`` (body
``{"now": "<ISO 8601>"}``; answer ``{"now": "<iso>"}``), which sets the cluster clock
(``Cluster.set_now``), and ``GET /_simulator/faults``, the log of every fault decision
taken (``FaultState.to_json``: ``{"decisions": [{"key", "attempt", "fault", "result"}],
"decisionsDropped", "counts"}``): no token needed, never faulted; without ``admin`` both
are 404 like any unknown path. The parts: ``params`` (query parameters), ``responses``
(JSON, Error body, value and timestamp formatting), ``telemetry`` (aggregating a snapshot
into telemetry values) and ``handlers`` (the endpoints, with the choices made where the
contract leaves room).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from email.utils import format_datetime

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workloads_etl.openapi import load_spec
from workloads_etl.simulator import filters
from workloads_etl.simulator.auth import AuthError
from workloads_etl.simulator.cluster import Cluster
from workloads_etl.simulator.config import SimulatorConfig
from workloads_etl.simulator.faults import (
    CLOCK_PATH,
    FAULTS_PATH,
    DroppedConnection,
    FaultMiddleware,
)
from workloads_etl.simulator.handlers import Simulator
from workloads_etl.simulator.responses import ApiError, JSONResponse, error_response, iso_z

log = logging.getLogger(__name__)


def create_app(config: SimulatorConfig, cluster: Cluster | None = None) -> Starlette:
    """The ASGI app; ``app.state.cluster`` is the served model, ``app.state.simulator``."""
    cluster = cluster if cluster is not None else Cluster(config)
    load_spec()  # fail fast when the contract cannot be found
    sim = Simulator(config, cluster)

    routes = [
        Route("/healthz", lambda request: JSONResponse({"status": "ok"}), methods=["GET"]),
        Route("/api/v1/token", sim.token, methods=["POST"]),
        Route("/api/v1/workloads", sim.list_workloads, methods=["GET"]),
        Route("/api/v1/workloads/count", sim.count_workloads, methods=["GET"]),
        Route("/api/v1/workloads/telemetry", sim.telemetry, methods=["GET"]),
        Route("/api/v1/workloads/{workloadId}", sim.get_workload, methods=["GET"]),
        Route("/api/v1/workloads/{workloadId}/metrics", sim.workload_metrics, methods=["GET"]),
        Route(
            "/api/v1/workloads/{workloadId}/pods/{podId}/metrics",
            sim.pod_metrics,
            methods=["GET"],
        ),
    ]
    if config.admin:
        routes.append(Route(CLOCK_PATH, _clock_endpoint(cluster), methods=["POST"]))
        routes.append(
            Route(
                FAULTS_PATH,
                lambda request: JSONResponse(sim.fault_state.to_json()),
                methods=["GET"],
            )
        )

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.message, exc.details)

    async def auth_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AuthError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.message, headers=headers)

    async def filter_error(request: Request, exc: Exception) -> Response:
        return error_response(400, str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: "Resource not found.", 405: "Method not allowed."}.get(
            exc.status_code, str(exc.detail)
        )
        return error_response(exc.status_code, message, headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, DroppedConnection):
            log.exception("unhandled error serving %s", request.url.path)
        return error_response(500, "Something went wrong.")

    app = Starlette(
        routes=routes,
        exception_handlers={
            ApiError: api_error,
            AuthError: auth_error,
            filters.FilterError: filter_error,
            HTTPException: http_error,
            Exception: server_error,
        },
    )
    app.state.cluster = cluster
    app.state.simulator = sim
    app.state.config = config
    app.add_middleware(FaultMiddleware, config=sim.faults, clock=cluster.now, state=sim.fault_state)
    app.add_middleware(ClusterDateMiddleware, cluster=cluster)
    return app


def _clock_endpoint(cluster: Cluster) -> Callable[[Request], Awaitable[Response]]:
    async def set_clock(request: Request) -> Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, 'Request body must be JSON: {"now": "<ISO 8601>"}') from None
        raw = body.get("now") if isinstance(body, dict) else None
        if not isinstance(raw, str):
            raise ApiError(400, "Field now (an ISO 8601 date-time) is required")
        when = filters.parse_datetime(raw)  # FilterError: 400
        return JSONResponse({"now": iso_z(cluster.set_now(when))})

    return set_clock


class ClusterDateMiddleware:
    """Every response's ``Date`` header tells the cluster's clock (frozen with ``--now``), as a
    real control plane's tells its own; servers must not add a wall-clock one of their own."""

    def __init__(self, app: ASGIApp, cluster: Cluster) -> None:
        self.app = app
        self.cluster = cluster
        self._date: tuple[datetime, bytes] | None = None  # the latest clock, as sent

    def _date_header(self) -> bytes:
        now = self.cluster.now()
        if self._date is None or self._date[0] != now:  # frozen clocks: formatted once
            self._date = (now, format_datetime(now, usegmt=True).encode("latin-1"))
        return self._date[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_date(message: Message) -> None:
            if message["type"] == "http.response.start":
                # read when the answer starts: a clock set by this request shows already
                date = self._date_header()
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                message = {**message, "headers": [*headers, (b"date", date)]}
            await send(message)

        await self.app(scope, receive, send_with_date)
