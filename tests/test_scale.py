"""Memory stays bounded whatever a day's size: the metrics of a day are normalised and
written in chunks.

Each measurement is a fresh process (its peak resident memory is the figure) that feeds a
day of metrics answers, made up as it goes so that nothing holds the day, through the
normaliser into a lake partition, then checks the partition holds every sample.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
