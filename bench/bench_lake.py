"""Normalise + write throughput of metric points, the client's per-answer parse rate, and the
warehouse load rate vs DuckDB COPY (measured side by side in one run).

Usage: .venv/bin/python bench/bench_lake.py [--workloads 500] [--samples 1440] [--types 4]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from workloads_etl.lake.normalise.metrics import normalise_metrics
from workloads_etl.lake.parquet import file_path, file_schema, write_partition
from workloads_etl.runai.measurements import parse_measurements
from workloads_etl.runai.models import RawResponse
from workloads_etl.settings import DataPaths
from workloads_etl.warehouse.loader import Warehouse, duckdb_type

DAY = date(2024, 12, 20)
TYPES = [
    "GPU_UTILIZATION",
    "GPU_MEMORY_USAGE_BYTES",
    "CPU_USAGE_CORES",
    "CPU_MEMORY_USAGE_BYTES",
    "POD_COUNT",
    "GPU_ALLOCATION",
]


def responses(workloads: int, samples: int, types: int) -> list[RawResponse]:
    start = datetime(2024, 12, 20, tzinfo=UTC)
    step = 86400 // samples
    stamps = [
        (start + timedelta(seconds=i * step)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(samples)
    ]
    out = []
    for w in range(workloads):
        wid = str(uuid.UUID(int=w + 1))
        measurements = [
            {
                "type": t,
                "labels": {"gpu": str(w % 8)} if t.startswith("GPU") else None,
                "values": [
                    {"value": f"{(w * 7 + i) % 1000 / 10}", "timestamp": ts}
                    for i, ts in enumerate(stamps)
                ],
            }
            for t in TYPES[:types]
        ]
        out.append(
            RawResponse(
                "get_workload_metrics",
                "GET",
                f"/api/v1/workloads/{wid}/metrics",
                {
                    "start": "2024-12-20T00:00:00Z",
                    "end": "2024-12-21T00:00:00Z",
                    "numberOfSamples": str(samples),
                    "metricType": ",".join(TYPES[:types]),
                },
                {"workloadId": wid},
                200,
                datetime(2024, 12, 21, 0, 5, tzinfo=UTC),
                json.dumps({"measurements": measurements}),
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workloads", type=int, default=500)
    ap.add_argument("--samples", type=int, default=1440)
    ap.add_argument("--types", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    resps = responses(args.workloads, args.samples, args.types)
    points = args.workloads * args.samples * args.types
    with tempfile.TemporaryDirectory() as tmp:
        paths = DataPaths(Path(tmp)).ensure()
        normalise_metrics(
            "workload_metrics", resps[:1], DAY, "warm-up"
        )  # first-call imports are not throughput
        t0 = time.perf_counter()
        result = normalise_metrics("workload_metrics", resps, DAY, "bench")
        rows, quarantine = result.rows, result.quarantine
        t1 = time.perf_counter()
        manifest = write_partition(
            paths.lake, "workload_metrics", rows, DAY, "bench", quarantine=quarantine
        )
        t2 = time.perf_counter()
        assert rows.num_rows == points, (rows.num_rows, points)
        print(f"points                 {points:>12,}")
        print(f"normalise              {t1 - t0:>10.2f} s  {points / (t1 - t0):>12,.0f} points/s")
        print(f"write parquet          {t2 - t1:>10.2f} s  {manifest.bytes / 1e6:>8.1f} MB")
        print(f"normalise + write      {t2 - t0:>10.2f} s  {points / (t2 - t0):>12,.0f} points/s")
        a = time.perf_counter()
        parsed = sum(parse_measurements(r.text).table.num_rows for r in resps)
        b = time.perf_counter()
        assert parsed == points, (parsed, points)
        print(f"client parse (1/answer){b - a:>10.2f} s  {points / (b - a):>12,.0f} points/s")

        (data_file,) = manifest.data_files
        file = file_path(paths.lake, data_file)
        cols = ", ".join(
            f'"{f.name}" {duckdb_type(f.type)}' for f in file_schema("workload_metrics")
        )
        load_times, copy_times = [], []
        with Warehouse.open(paths) as wh:
            wh.con.execute(f"CREATE TABLE raw.copy_target ({cols})")
            for _ in range(args.repeat):  # interleaved, side by side
                a = time.perf_counter()
                wh.load_partition("workload_metrics", DAY)
                load_times.append(time.perf_counter() - a)
                a = time.perf_counter()
                wh.con.execute("BEGIN; DELETE FROM raw.copy_target;")
                wh.con.execute(f"COPY raw.copy_target FROM '{file}' (FORMAT parquet)")
                wh.con.execute("COMMIT")
                copy_times.append(time.perf_counter() - a)
            n = wh.con.execute("SELECT count(*) FROM raw.workload_metrics").fetchall()[0][0]
            assert n == points
        load, copy = min(load_times), min(copy_times)
        print(f"warehouse load         {load:>10.2f} s  {points / load:>12,.0f} rows/s")
        print(f"duckdb COPY            {copy:>10.2f} s  {points / copy:>12,.0f} rows/s")
        print(f"load rate / COPY rate  {copy / load:>10.2f}  (goal >= 0.5)")
        print(f"duckdb {duckdb.__version__}")


if __name__ == "__main__":
    main()
