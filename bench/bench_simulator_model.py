"""Build time, memory and query costs of the synthetic cluster model at 100,000 workloads.

    .venv/bin/python bench/bench_simulator_model.py [--workloads 100000] [--days 14]
        [--clusters 8 --gpus 4000 [--nodepools-per-cluster 3]]

Goals: build < 10 s and < 500 MB peak RSS over the imports; ``snapshot(at)`` < 0.3 s; a page of
500 ``workload_json`` well under a second. Imports (pyarrow pulls in pandas) are paid
before the clock starts. Snapshots are cached for the latest ``SNAPSHOT_CACHE_SIZE`` seconds
asked for, so RSS stays flat however many distinct seconds are queried.
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas  # noqa: F401  (pyarrow imports it lazily; keep it out of the timings)
import pyarrow.compute as pc

from workloads_etl.simulator.cluster import SNAPSHOT_CACHE_SIZE, Cluster
from workloads_etl.simulator.config import SimulatorConfig

NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workloads", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--clusters", type=int, default=None)
    parser.add_argument("--gpus", type=int, default=None)
    parser.add_argument("--nodepools-per-cluster", type=int, default=None)
    args = parser.parse_args()
    config = SimulatorConfig(
        seed=7,
        workloads=args.workloads,
        days=args.days,
        now=NOW,
        clusters=args.clusters,
        gpus=args.gpus,
        nodepools_per_cluster=args.nodepools_per_cluster,
    )

    base_rss = rss_mb()
    t0 = time.perf_counter()
    cluster = Cluster(config)
    build_s = time.perf_counter() - t0
    print(f"workloads           {args.workloads:>10,}  days {args.days}")
    print(
        f"catalogue           {len(cluster.clusters):>10} clusters, "
        f"{len(cluster.nodepools)} node pools, {cluster.catalogue.gpus:,} GPUs"
    )
    print(f"build               {build_s:10.2f} s")
    print(f"peak RSS over base  {rss_mb() - base_rss:10.1f} MB")

    instants = [NOW - timedelta(hours=h, seconds=s) for h, s in ((0, 0), (30, 7), (200, 13))]
    for at in instants:
        t0 = time.perf_counter()
        snap = cluster.snapshot(at)
        dt = time.perf_counter() - t0
        print(f"snapshot {at:%m-%d %H:%M}  {dt * 1000:10.1f} ms  rows {len(snap):,}")
    t0 = time.perf_counter()
    cluster.snapshot(NOW)
    print(f"snapshot (cached)   {(time.perf_counter() - t0) * 1e6:10.1f} us")

    before = current_rss_mb()
    for s in range(17):  # as many distinct seconds as a slow paging client asks for
        cluster.snapshot(NOW - timedelta(minutes=5, seconds=s))
    print(
        f"17 more snapshots   {current_rss_mb() - before:+10.1f} MB RSS "
        f"(now {current_rss_mb():.0f} MB), cached {len(cluster._snapshots)} "
        f"of at most {SNAPSHOT_CACHE_SIZE}"
    )

    table = cluster.snapshot(NOW).table
    t0 = time.perf_counter()
    mask = pc.and_(pc.equal(table["phase"], "Running"), pc.greater_equal(table["allocatedGPU"], 1))
    picked = table.filter(mask)
    order = pc.sort_indices(picked, sort_keys=[("createdAt", "descending")])
    print(f"filter+sort (pc)    {(time.perf_counter() - t0) * 1000:10.1f} ms  -> {len(order)}")

    page = np.linspace(0, len(table) - 1, 500).astype(int).tolist()
    t0 = time.perf_counter()
    for i in page:
        cluster.workload_json(i, NOW)
    print(f"500 workload_json   {(time.perf_counter() - t0) * 1000:10.1f} ms")

    ts = np.arange(
        np.datetime64("2026-11-13T00:00:00", "us"),
        np.datetime64("2026-11-20T00:00:00", "us"),
        np.timedelta64(60, "s"),
    )
    t0 = time.perf_counter()
    for i in page[:100]:
        for metric in ("GPU_UTILIZATION", "GPU_ALLOCATION", "CPU_USAGE_CORES"):
            cluster.metrics(i, metric, ts)
    per = (time.perf_counter() - t0) / 300
    print(f"metrics 7d @60s     {per * 1000:10.2f} ms per series ({len(ts):,} samples)")

    t0 = time.perf_counter()
    for i in page[:100]:
        cluster.ground_truth(cluster.draws.ids[i], NOW - timedelta(days=7), NOW)
    print(f"ground_truth 7d     {(time.perf_counter() - t0) * 10:10.2f} ms per workload")


if __name__ == "__main__":
    main()
