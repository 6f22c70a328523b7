"""Request rates and memory of the simulated control plane at 100,000 workloads.

    .venv/bin/python bench/bench_simulator.py [--workloads 100000] [--repeat 20]

Builds the cluster, serves it on a real socket (uvicorn in a thread of this process), and
times sequential requests per operation with one keep-alive httpx client. Peak RSS is the
whole process (model + server + client).

A large generated cluster, ~50,000 workloads alive a day, its simulator in a subprocess
(so the client does not share its core), metrics only:

    .venv/bin/python bench/bench_simulator.py --clusters 8 --gpus 4000 \
        --workloads 150000 --days 2 --process --metrics-only

``--process`` serves from ``python -m workloads_etl.simulator`` and reports that
process's peak RSS (VmHWM). Besides the operations it reports the workloads alive on day
D-1 (the last full day: created before its end, not ended before its start) and those
that ran in it, and the metrics rate (10 metric types x 1000 samples over day D-1 of a
workload that ran that day) with one keep-alive client and with ``--concurrency`` clients
(httpx.AsyncClient, one connection each).
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
METRIC_TYPES_10 = (
    "GPU_UTILIZATION",
    "GPU_MEMORY_USAGE_BYTES",
    "GPU_MEMORY_REQUEST_BYTES",
    "CPU_USAGE_CORES",
    "CPU_REQUEST_CORES",
    "CPU_LIMIT_CORES",
    "CPU_MEMORY_USAGE_BYTES",
    "CPU_MEMORY_REQUEST_BYTES",
    "POD_COUNT",
    "GPU_ALLOCATION",
)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def process_peak_rss_mb(pid: int) -> float:
    """Peak RSS (VmHWM) of another process, in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def day_counts(cluster: Cluster, day: int) -> tuple[int, int, list[str], list[str]]:
    """Workloads alive on day ``day`` of the timeline (created before its end, not ended
    before its start), those of them that ran in it, their ids, and the ids of those
    alive all day (a metrics window of that day is full)."""
    start = int(cluster.draws.start) + day * 86_400
    end = start + 86_400
    tl = cluster.timeline
    alive = (cluster.draws.created < end) & (tl.end > start)
    ran = np.zeros(len(alive), dtype=bool)
    ran[tl.iv_w[(tl.iv_start < end) & (tl.iv_end > start)]] = True
    full = ran & (cluster.draws.created <= start) & (tl.end >= end)
    ids = cluster.draws.ids
    return (
        int(alive.sum()),
        int(ran.sum()),
        [ids[i] for i in np.flatnonzero(ran).tolist()],
        [ids[i] for i in np.flatnonzero(full).tolist()],
    )


def metrics_rate_sequential(
    base_url: str, token: str, ids: list[str], params: dict[str, Any], n: int
) -> float:
    with httpx.Client(
        base_url=base_url, timeout=60, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        client.get(f"/api/v1/workloads/{ids[0]}/metrics", params=params)  # warm up
        t0 = time.perf_counter()
        for i in range(n):
            r = client.get(f"/api/v1/workloads/{ids[i % len(ids)]}/metrics", params=params)
            if r.status_code != 200:
                raise SystemExit(f"metrics: HTTP {r.status_code} {r.text[:200]}")
        return n / (time.perf_counter() - t0)


async def _metrics_rate_concurrent(
    base_url: str, token: str, ids: list[str], params: dict[str, Any], n: int, workers: int
) -> float:
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(
        base_url=base_url,
        timeout=120,
        limits=limits,
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        counter = iter(range(n))

        async def worker() -> None:
            for i in counter:
                r = await client.get(
                    f"/api/v1/workloads/{ids[i % len(ids)]}/metrics", params=params
                )
                if r.status_code != 200:
                    raise SystemExit(f"metrics: HTTP {r.status_code} {r.text[:200]}")

        await client.get(f"/api/v1/workloads/{ids[0]}/metrics", params=params)  # warm up
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        return n / (time.perf_counter() - t0)


def metrics_rate_concurrent(
    base_url: str, token: str, ids: list[str], params: dict[str, Any], n: int, workers: int
) -> float:
    return asyncio.run(_metrics_rate_concurrent(base_url, token, ids, params, n, workers))


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
    parser.add_argument("--clusters", type=int, default=None)
    parser.add_argument("--gpus", type=int, default=None)
    parser.add_argument("--nodepools-per-cluster", type=int, default=None)
    parser.add_argument(
        "--now", default=NOW.isoformat(), help="cluster clock (default %(default)s)"
    )
    parser.add_argument("--process", action="store_true", help="serve from a subprocess")
    parser.add_argument("--metrics-only", action="store_true", help="only the metrics rates")
    parser.add_argument("--metrics-requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    now = datetime.fromisoformat(args.now)
    config = SimulatorConfig(
        seed=7,
        workloads=args.workloads,
        days=args.days,
        now=now,
        clusters=args.clusters,
        gpus=args.gpus,
        nodepools_per_cluster=args.nodepools_per_cluster,
    )
    t0 = time.perf_counter()
    cluster = Cluster(config)
    build_s = time.perf_counter() - t0
    rss_model = peak_rss_mb()
    alive, ran, ran_ids, full_ids = day_counts(cluster, args.days - 1)
    print(
        f"catalogue: {len(cluster.clusters)} clusters, {len(cluster.nodepools)} node pools, "
        f"{cluster.catalogue.gpus:,} GPUs"
    )
    print(f"day D-1: {alive:,} workloads alive, {ran:,} ran")
    print(f"cluster build: {build_s:.2f} s   peak RSS after build: {rss_model:.0f} MB")
    day_start = cluster.anchor + timedelta(days=args.days - 1)
    metrics_params = {
        "metricType": ",".join(METRIC_TYPES_10),
        "numberOfSamples": 1000,
        "start": day_start.isoformat(),
        "end": (day_start + timedelta(days=1)).isoformat(),
    }
    if args.metrics_only:
        rng = np.random.default_rng(1)
        samples = {
            "ran on day D-1": [ran_ids[i] for i in rng.permutation(len(ran_ids))[:500].tolist()],
            "alive all day D-1": [
                full_ids[i] for i in rng.permutation(len(full_ids))[:500].tolist()
            ],
        }
        with SimulatorServer(config, in_process=not args.process, cluster=cluster) as server:
            token = httpx.post(
                f"{server.base_url}/api/v1/token",
                json={
                    "grantType": "client_credentials",
                    "clientID": server.client_id,
                    "clientSecret": server.client_secret,
                },
            ).json()["accessToken"]
            print(
                f"metrics, 10 types x 1000 samples over day D-1 ({len(full_ids):,} alive all day):"
            )
            pid = server._process.pid if args.process and server._process is not None else None
            for label, sample in samples.items():
                cpu0 = process_cpu_seconds(pid) if pid else 0.0
                one = metrics_rate_sequential(
                    server.base_url, token, sample, metrics_params, args.metrics_requests
                )
                cpu1 = process_cpu_seconds(pid) if pid else 0.0
                many = metrics_rate_concurrent(
                    server.base_url,
                    token,
                    sample,
                    metrics_params,
                    args.metrics_requests,
                    args.concurrency,
                )
                cpu2 = process_cpu_seconds(pid) if pid else 0.0
                print(
                    f"  workloads {label:18}: {one:6.0f} req/s (1 client), "
                    f"{many:6.0f} req/s ({args.concurrency} clients)"
                )
                if pid:  # requests + one warm-up each
                    per = [(cpu1 - cpu0), (cpu2 - cpu1)]
                    per = [1000 * x / (args.metrics_requests + 1) for x in per]
                    print(
                        f"  {'':28}  simulator CPU {per[0]:.2f} / {per[1]:.2f} ms per request "
                        f"(<= {1000 / max(per[0], 1e-9):.0f} req/s on one core)"
                    )
            if args.process and server._process is not None:
                rss = process_peak_rss_mb(server._process.pid)
                print(f"simulator process peak RSS: {rss:.0f} MB")
        return
    t0 = time.perf_counter()
    table = snapshot_table(cluster.snapshot(now))
    snapshot_s = time.perf_counter() - t0
    ids = table.column("id").to_pylist()
    running = [
        r["id"]
        for r in table.select(["id", "phase", "deleted"]).to_pylist()
        if r["phase"] == "Running" and not r["deleted"]
    ]
    rng = np.random.default_rng(1)
    n = args.repeat
    busy_ids = full_ids or ran_ids  # a whole day of samples where there are such workloads

    with (
        SimulatorServer(config, in_process=not args.process, cluster=cluster) as server,
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
            "start": (now - timedelta(days=2)).isoformat(),
            "end": (now - timedelta(days=1)).isoformat(),
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
                "metrics 10 types x 1000 samples, D-1",
                n,
                lambda i: client.get(
                    f"/api/v1/workloads/{busy_ids[i % len(busy_ids)]}/metrics",
                    params=metrics_params,
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
        if args.process and server._process is not None:
            print(f"simulator process peak RSS: {process_peak_rss_mb(server._process.pid):.0f} MB")
        rate = metrics_rate_concurrent(
            server.base_url, token, busy_ids, metrics_params, n * 10, args.concurrency
        )
        print(f"metrics 10 types x 1000 samples, {args.concurrency} clients: {rate:.0f} req/s")

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
