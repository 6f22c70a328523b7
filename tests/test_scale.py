"""Memory stays bounded whatever a day's size: the metrics of a day are normalised and
written in chunks; a long window of days is built by dbt in windows of bounded samples.

Each measurement is a fresh process (its peak resident memory is the figure) that feeds a
day of metrics answers, made up as it goes so that nothing holds the day, through the
normaliser into a lake partition, then checks the partition holds every sample.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

SCRIPT = r"""
import json, sys
from datetime import UTC, date, datetime, timedelta
import orjson
from workloads_etl.lake.normalise.metrics import MetricsChunks
from workloads_etl.lake.parquet import PartitionWriter, read_manifest
from workloads_etl.runai.models import RawResponse

def peak_mb():
    # The high-water mark of this process's own memory (ru_maxrss would keep the parent's,
    # pytest's, across the exec).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

lake, workloads, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
day = date(2026, 11, 17)
start = datetime(2026, 11, 17, tzinfo=UTC)
stamps = [(start + timedelta(seconds=120 * i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(720)]

def answer(k):
    wid = f"{k:08x}-0000-4000-8000-000000000000"
    body = {"measurements": [
        {"type": t, "labels": None,
         "values": [{"value": str((k * 7 + i) % 97), "timestamp": s} for i, s in enumerate(stamps)]}
        for t in ("GPU_UTILIZATION", "GPU_ALLOCATION")
    ]}
    return RawResponse(
        operation="get_workload_metrics", method="GET", path=f"/api/v1/workloads/{wid}/metrics",
        params={"start": "2026-11-17T00:00:00Z", "end": "2026-11-18T00:00:00Z",
                "numberOfSamples": "720", "metricType": "GPU_UTILIZATION,GPU_ALLOCATION"},
        path_params={"workloadId": wid}, status=200,
        received_at=datetime(2026, 11, 18, 1, tzinfo=UTC), text=orjson.dumps(body).decode(),
    )

writer = PartitionWriter(lake, "workload_metrics", day, "run-1")
chunks = MetricsChunks("workload_metrics", day, "run-1", writer.write, chunk_samples=chunk)
for k in range(workloads):
    chunks.add([answer(k)])
chunks.finish()
manifest = writer.commit()
print(json.dumps({
    "rows": read_manifest(lake, "workload_metrics", day).rows,
    "files": len(manifest.data_files),
    "peak_mb": peak_mb(),
}))
"""
SAMPLES_PER_WORKLOAD = 2 * 720
CHUNK = 20_000


def _day(tmp_path: Path, workloads: int, chunk: int) -> dict[str, float]:
    lake = tmp_path / f"lake-{workloads}-{chunk}"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(lake), str(workloads), str(chunk)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["rows"] == workloads * SAMPLES_PER_WORKLOAD
    return figures


def test_memory_stays_bounded_on_a_day_many_times_larger_than_a_chunk(tmp_path: Path) -> None:
    small = _day(tmp_path, 100, CHUNK)  # 144,000 samples: 7 chunks
    large = _day(tmp_path, 800, CHUNK)  # 1,152,000 samples: 58 chunks
    whole = _day(tmp_path, 800, 10**9)  # the same day in one chunk: what chunks avoid
    assert large["files"] >= 50
    assert whole["files"] == 1
    # Eight times the data, one chunk size: the same memory, give or take a chunk.
    assert large["peak_mb"] < small["peak_mb"] + 40, (small, large)
    # Without chunks the day's samples are all held at once (the test can tell).
    assert whole["peak_mb"] > large["peak_mb"] + 60, (large, whole)


def test_a_long_window_is_built_in_windows_of_bounded_samples(tmp_path: Path) -> None:
    from workloads_etl.settings import PipelineSettings, SettingsError, memory_bytes
    from workloads_etl.warehouse.dbt import samples_by_day, split_window

    d = [date(2026, 11, 1) + timedelta(days=i) for i in range(6)]
    samples = {d[0]: 40, d[1]: 40, d[2]: 150, d[3]: 10, d[5]: 90}  # d[4]: none
    assert split_window((d[0], d[5]), samples, 100) == [
        (d[0], d[1]),  # 80
        (d[2], d[2]),  # a day above the limit is a window of its own
        (d[3], d[5]),  # 10 + 0 + 90
    ]
    assert split_window((d[0], d[5]), samples, 10**9) == [(d[0], d[5])]
    assert split_window((d[0], d[0]), {}, 1) == [(d[0], d[0])]
    assert split_window(None, samples, 1) == [None]
    # the default follows DuckDB's memory limit
    assert memory_bytes("320MB") == 320 * 10**6 and memory_bytes("1.5 GiB") == 3 * 2**29
    with pytest.raises(SettingsError, match="memory size"):
        memory_bytes("lots")
    assert PipelineSettings.read(duckdb_memory_limit="1GB").window_samples == 150_000_000
    assert PipelineSettings.read(dbt_window_samples=7).window_samples == 7
    # the samples of each day, from the warehouse
    import duckdb

    warehouse = tmp_path / "w.duckdb"
    assert samples_by_day(warehouse, (d[0], d[5])) == {}
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema raw")
        con.execute("create table raw.workload_metrics (usage_date date)")
        con.execute("insert into raw.workload_metrics values (?), (?), (?)", [d[0], d[0], d[5]])
    assert samples_by_day(warehouse, (d[0], d[4])) == {d[0]: 2}
