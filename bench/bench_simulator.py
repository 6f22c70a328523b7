"""Request rates and memory of the simulated control plane at 100,000 workloads.

    .venv/bin/python bench/bench_simulator.py [--workloads 100000] [--repeat 20]

Builds the cluster, serves it on a real socket (uvicorn in a thread of this process), and
times sequential requests per operation with one keep-alive httpx client. Peak RSS is the
whole process (model + server + client).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np

from workloads_etl.simulator import Cluster, SimulatorConfig, SimulatorServer
from workloads_etl.simulator.handlers import snapshot_table

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(label: str, n: int, call: Callable[[int], httpx.Response]) -> tuple[Any, ...]:
    durations, sizes = [], []
    for i in range(n):
        t0 = time.perf_counter()
        r = call(i)
        durations.append(time.perf_counter() - t0)
        if r.status_code != 200:
            raise SystemExit(f"{label}: HTTP {r.status_code} {r.text[:200]}")
        sizes.append(len(r.content))
    ms = sorted(d * 1000 for d in durations)
    return (
        label,
        n,
        statistics.fmean(ms),
        ms[min(len(ms) - 1, int(0.95 * len(ms)))],
        n / sum(durations),
        statistics.fmean(sizes) / 1024,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workloads", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    config = SimulatorConfig(seed=7, workloads=args.workloads, days=args.days, now=NOW)
    t0 = time.perf_counter()
    cluster = Cluster(config)
    build_s = time.perf_counter() - t0
    rss_model = peak_rss_mb()
    t0 = time.perf_counter()
    table = snapshot_table(cluster.snapshot(NOW))
    snapshot_s = time.perf_counter() - t0
    ids = table.column("id").to_pylist()
    running = [
        r["id"]
        for r in table.select(["id", "phase", "deleted"]).to_pylist()
        if r["phase"] == "Running" and not r["deleted"]
    ]
    rng = np.random.default_rng(1)
    n = args.repeat

    with (
        SimulatorServer(config, cluster=cluster) as server,
        httpx.Client(base_url=server.base_url, timeout=60) as client,
    ):
        token = client.post(
            "/api/v1/token",
            json={
                "grantType": "client_credentials",
                "clientID": server.client_id,
                "clientSecret": server.client_secret,
            },
        ).json()["accessToken"]
        client.headers["Authorization"] = f"Bearer {token}"
        total = client.get("/api/v1/workloads/count").json()["count"]
        offsets = rng.integers(0, max(1, total - 500), n)
        window = {
            "start": (NOW - timedelta(days=2)).isoformat(),
            "end": (NOW - timedelta(days=1)).isoformat(),
        }
        types = ",".join(
            [
                "GPU_UTILIZATION",
                "GPU_MEMORY_USAGE_BYTES",
                "GPU_MEMORY_REQUEST_BYTES",
                "CPU_USAGE_CORES",
                "CPU_REQUEST_CORES",
                "CPU_MEMORY_USAGE_BYTES",
                "POD_COUNT",
                "GPU_ALLOCATION",
            ]
        )
        rows = [
            timed(
                "list limit=500",
                n,
                lambda i: client.get(
                    "/api/v1/workloads", params={"offset": int(offsets[i]), "limit": 500}
                ),
            ),
            timed(
                "list limit=500 sortBy=name desc",
                n,
                lambda i: client.get(
                    "/api/v1/workloads",
                    params={
                        "offset": int(offsets[i]),
                        "limit": 500,
                        "sortBy": "name",
                        "sortOrder": "desc",
                    },
                ),
            ),
            timed(
                "list limit=500 filterBy+search",
                n,
                lambda i: client.get(
                    "/api/v1/workloads",
                    params={
                        "limit": 500,
                        "filterBy": "allocatedGPU>=1,phase!=Failed",
                        "search": "a",
                    },
                ),
            ),
            timed("count", n, lambda i: client.get("/api/v1/workloads/count")),
            timed(
                "count filterBy",
                n,
                lambda i: client.get(
                    "/api/v1/workloads/count", params={"filterBy": f"name=@{i % 10}"}
                ),
            ),
            timed(
                "get",
                n * 5,
                lambda i: client.get(f"/api/v1/workloads/{ids[int(rng.integers(len(ids)))]}"),
            ),
            timed(
                "telemetry GPU_ALLOCATION by 2",
                n,
                lambda i: client.get(
                    "/api/v1/workloads/telemetry",
                    params={"telemetryType": "GPU_ALLOCATION", "groupBy": "ProjectId,Phase"},
                ),
            ),
            timed(
                "metrics 8 types x 1000 samples",
                n,
                lambda i: client.get(
                    f"/api/v1/workloads/{running[i % len(running)]}/metrics",
                    params={"metricType": types, "numberOfSamples": 1000, **window},
                ),
            ),
        ]

    print(f"workloads: {args.workloads:,}  visible at now: {table.num_rows:,}  active: {total:,}")
    print(f"cluster build: {build_s:.2f} s   snapshot: {snapshot_s * 1000:.0f} ms")
    print(f"peak RSS after build: {rss_model:.0f} MB   peak RSS overall: {peak_rss_mb():.0f} MB")
    print()
    header = f"{'operation':34} {'n':>4} {'mean ms':>9} {'p95 ms':>9} {'req/s':>8} {'KiB':>8}"
    print(header)
    print("-" * len(header))
    for label, count, mean, p95, rate, kib in rows:
        print(f"{label:34} {count:>4} {mean:>9.1f} {p95:>9.1f} {rate:>8.1f} {kib:>8.1f}")


if __name__ == "__main__":
    main()
