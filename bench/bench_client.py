"""Benchmark of the Run:ai client.

1. Request rate: small answers (``count_workloads``) from a control plane that adds 50 ms to
   every request, at concurrency 16. The ideal is 16 / 0.05 s = 320 requests/s; the figure
   printed is the achieved rate as a fraction of it (goal >= 0.8). The served control plane is
   the simulator (``workloads_etl.simulator``, in a separate process) when it can be imported,
   else a minimal Starlette app with the same 50 ms latency in a thread.
2. Parsing: metrics points per second through ``parse_measurements`` for answers of
   8 types x 1000 samples, in both timestamp forms.

Run: ``.venv/bin/python bench/bench_client.py [--requests 960]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from workloads_etl.runai import RunaiClient, RunaiSettings, parse_measurements

LATENCY_S = 0.05
CONCURRENCY = 16


def minimal_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def token(request: Request) -> JSONResponse:
        return JSONResponse({"accessToken": "bench-token", "expiresIn": 3600})

    async def count(request: Request) -> JSONResponse:
        await asyncio.sleep(LATENCY_S)
        return JSONResponse({"count": 42})

    return Starlette(
        routes=[
            Route("/api/v1/token", token, methods=["POST"]),
            Route("/api/v1/workloads/count", count),
        ]
    )


def serve_minimal(port: int) -> None:
    import uvicorn

    uvicorn.run(minimal_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextlib.contextmanager
def minimal_control_plane() -> Iterator[tuple[str, str, str]]:
    """The minimal app in a separate process, so that it does not share the client's GIL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the benchmark control plane did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", "bench", "bench-secret"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def control_plane() -> Iterator[tuple[str, str, str, str]]:
    try:
        from workloads_etl.simulator import FaultConfig, SimulatorConfig, SimulatorServer
    except ImportError:
        with minimal_control_plane() as (url, cid, sec):
            yield url, cid, sec, "minimal Starlette app (50 ms latency, subprocess)"
        return
    config = SimulatorConfig(
        seed=1,
        workloads=200,
        days=1,
        now=datetime(2025, 1, 2, tzinfo=UTC),
        faults=FaultConfig(latency_ms=LATENCY_S * 1000),
    )
    with SimulatorServer(config, in_process=False) as sim:
        yield sim.base_url, sim.client_id, sim.client_secret, "simulator (subprocess, 50 ms)"


async def request_rate(base_url: str, client_id: str, secret: str, n: int) -> tuple[float, float]:
    """Achieved requests/s and the client's CPU milliseconds per request."""
    settings = RunaiSettings(
        base_url=base_url,
        client_id=client_id,
        client_secret=secret,
        max_concurrency=CONCURRENCY,
    )
    async with RunaiClient(settings) as client:
        # warm up: token and connection pool
        await asyncio.gather(*(client.count_workloads() for _ in range(CONCURRENCY)))
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        await asyncio.gather(*(client.count_workloads() for _ in range(n)))
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    return n / elapsed, cpu / n * 1000


async def raw_httpx_rate(base_url: str, client_id: str, secret: str, n: int) -> float:
    """The same requests with a bare httpx.AsyncClient (same pool size, a semaphore, no
    retries/auth refresh/logging): the ceiling the transport itself allows on this machine."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base_url, limits=limits) as http:
        tok = await http.post(
            "/api/v1/token",
            json={"grantType": "client_credentials", "clientID": client_id, "clientSecret": secret},
        )
        headers = {"Authorization": f"Bearer {tok.json()['accessToken']}"}
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one() -> None:
            async with sem:
                r = await http.get("/api/v1/workloads/count", headers=headers)
                r.raise_for_status()
                r.json()

        await asyncio.gather(*(one() for _ in range(CONCURRENCY)))
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - t0)


def metrics_body(types: int, samples: int, form: str) -> str:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    fmt = "%Y-%m-%dT%H:%M:%SZ" if form == "iso" else "%Y-%m-%d %H:%M:%S.%f"
    stamps = [(t0 + timedelta(minutes=i)).strftime(fmt) for i in range(samples)]
    measurements: list[dict[str, Any]] = [
        {
            "type": f"TYPE_{k}",
            "labels": {"gpu": str(k % 4)},
            "values": [
                {"value": f"{(i * 7 + k) % 100}.5", "timestamp": s} for i, s in enumerate(stamps)
            ],
        }
        for k in range(types)
    ]
    return json.dumps({"measurements": measurements})


def parse_rate(form: str, repeats: int) -> tuple[float, float]:
    body = metrics_body(8, 1000, form)
    points = parse_measurements(body).table.num_rows
    assert points == 8000, points
    t0 = time.perf_counter()
    for _ in range(repeats):
        parse_measurements(body)
    elapsed = time.perf_counter() - t0
    return points * repeats / elapsed, elapsed / repeats * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=960)
    ap.add_argument("--parse-repeats", type=int, default=30)
    ap.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve_minimal(args.serve)
        return

    with control_plane() as (url, cid, secret, what):
        rate, cpu_ms = asyncio.run(request_rate(url, cid, secret, args.requests))
        raw = asyncio.run(raw_httpx_rate(url, cid, secret, args.requests))
        rate2, _ = asyncio.run(request_rate(url, cid, secret, args.requests))
    ideal = CONCURRENCY / LATENCY_S
    print(f"control plane: {what}")
    print(
        f"request rate at concurrency {CONCURRENCY}: {rate:.1f} req/s "
        f"= {rate / ideal:.2f} of ideal {ideal:.0f} req/s (goal >= 0.80); "
        f"client CPU {cpu_ms:.2f} ms per request"
    )
    print(
        f"bare httpx on the same control plane, same run: {raw:.1f} req/s "
        f"= {raw / ideal:.2f} of ideal; client again: {rate2:.1f} req/s = {rate2 / ideal:.2f}"
    )
    print(f"load average while measuring: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for form in ("iso", "space"):
        pps, ms = parse_rate(form, args.parse_repeats)
        print(
            f"parse_measurements, 8 types x 1000 samples, {form} timestamps: "
            f"{pps / 1e6:.2f} M points/s ({ms:.1f} ms per answer)"
        )


if __name__ == "__main__":
    main()
