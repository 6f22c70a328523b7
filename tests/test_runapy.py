"""The official Python SDK of the Run:ai control plane (``runapy`` 1.224, unmodified, in a
virtual environment of its own) against the simulated control plane started from the CLI:
it logs in with an app token, refreshes it from the JWT's ``exp``, pages through the
workloads, gets one, counts them, reads metrics and telemetry, and its own models accept
every answer, which match the simulator's."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.tools import uv
from workloads_etl.simulator import Cluster, SimulatorConfig
from workloads_etl.simulator.handlers import snapshot_table
from workloads_etl.simulator.server import CLIENT_ID_ENV, CLIENT_SECRET_ENV

SDK = "runapy==1.224.*"
NOW = datetime(2026, 11, 26, 15, tzinfo=UTC)
CONFIG = SimulatorConfig(
    seed=7,
    workloads=120,
    days=7,
    now=NOW,
    client_id="runapy-app",
    client_secret="runapy-secret-0123456789",
    token_ttl_seconds=61,  # the SDK renews a token 60 s before its exp: after a second or two
)
METRIC_TYPES = ["GPU_UTILIZATION", "CPU_USAGE_CORES", "GPU_ALLOCATION"]
WINDOW = ("2026-11-26T00:00:00+00:00", "2026-11-26T06:00:00+00:00")
# What uv says when it cannot reach the package index (and only then the test is skipped).
UNREACHABLE = (
    "failed to fetch",
    "error sending request",
    "dns error",
    "could not connect",
    "connection refused",
    "network is unreachable",
    "operation timed out",
    "temporary failure in name resolution",
)

SCRIPT = textwrap.dedent(
    """
    import base64, json, os, sys, time
    from datetime import datetime, timezone
    import runai
    from runai import ApiClient, Configuration, MetricsResponse, TelemetryResponse, Workload
    from runai.runai_client import RunaiClient

    base_url, workload_hint, start, end, metric_types = sys.argv[1:6]
    config = Configuration(
        client_id=os.environ["SDK_APP_ID"],
        client_secret=os.environ["SDK_APP_SECRET"],
        runai_base_url=base_url,
        retry_enabled=False,
    )
    client = RunaiClient(ApiClient(config))
    api = client.workloads.workloads

    def claims(token):
        return json.loads(base64.b64decode(token.split(".")[1] + "=="))

    first_token = client.api_client._token
    out = {"version": runai.__version__, "claims": claims(first_token)}
    out["count"] = api.count_workloads().data["count"]

    ids, offset, pages = [], 0, 0
    while True:
        page = api.get_workloads(offset=offset, limit=37, sort_by="createdAt").data
        pages += 1
        for record in page["workloads"]:
            Workload.from_dict(record)
            ids.append(record["id"])
        if "next" not in page or not page["workloads"]:
            break
        offset = page["next"]
    out["ids"], out["pages"] = ids, pages

    one = api.get_workload(workload_hint).data
    Workload.from_dict(one)
    out["workload"] = one

    metrics = api.get_workload_metrics(
        workload_id=workload_hint,
        metric_type=metric_types.split(","),
        start=datetime.fromisoformat(start),
        end=datetime.fromisoformat(end),
        number_of_samples=12,
    )
    MetricsResponse.from_dict(metrics.data)
    out["metrics"] = {"status": metrics.status_code, "body": metrics.data}

    telemetry = {}
    for kind, group_by in (
        ("WORKLOADS_COUNT", ["ClusterId", "Phase"]),
        ("GPU_ALLOCATION", ["DepartmentId"]),
        ("PENDING_TIME_DISTRIBUTION", ["ProjectId"]),
    ):
        answer = api.get_workloads_telemetry(telemetry_type=kind, group_by=group_by).data
        TelemetryResponse.from_dict(answer)
        telemetry[kind] = answer
    out["telemetry"] = telemetry

    # the SDK renews the token once it is within 60 s of the JWT's exp
    time.sleep(max(0.0, out["claims"]["exp"] - 60 - time.time()) + 0.2)
    out["count_after_refresh"] = api.count_workloads().data["count"]
    out["refreshed"] = client.api_client._token != first_token
    out["refreshed_claims"] = claims(client.api_client._token)
    print(json.dumps(out))
    """
)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    return Path(base) / "workloads-etl" / f"runapy-1.224-{py}"


def _sdk_python(venv: Path) -> Path | None:
    """The venv's python when it has the SDK installed, else None."""
    python = venv / "bin" / "python"
    if not (venv / "complete").is_file() or not python.is_file():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import runai; print(runai.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return python if probe.returncode == 0 and probe.stdout.startswith("1.224.") else None


def sdk_venv() -> Path:
    """A virtual environment with the official SDK, built once with uv and kept in the cache
    directory; skips the test only when the package index cannot be reached."""
    venv = _cache_dir()
    python = _sdk_python(venv)
    if python is not None:
        return python
    building = venv.with_name(f"{venv.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.parent.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(
        [uv(), "venv", "-q", "--python", sys.executable, str(building)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    install = [uv(), "pip", "install", "-q", "--python", str(building / "bin" / "python"), SDK]
    # from uv's cache when it has the SDK, from the package index otherwise
    done = subprocess.run([*install, "--offline"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        done = subprocess.run(install, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        if any(marker in done.stderr.lower() for marker in UNREACHABLE):
            pytest.skip(f"the package index is unreachable, so {SDK} cannot be installed")
        raise AssertionError(f"installing {SDK} failed:\n{done.stderr[-3000:]}")
    (building / "complete").write_text(SDK + "\n")
    shutil.rmtree(venv, ignore_errors=True)  # an incomplete one left by an interrupted run
    try:
        building.rename(venv)
    except OSError:  # another run finished first: use its copy
        shutil.rmtree(building, ignore_errors=True)
    python = _sdk_python(venv)
    assert python is not None, f"{venv} has no working {SDK}"
    return python


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def sdk_python() -> Path:
    return sdk_venv()


@pytest.fixture(scope="module")
def simulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``workloads-etl simulate`` serving CONFIG on a free port of 127.0.0.1."""
    cli = Path(sys.executable).parent / "workloads-etl"
    port = _free_port()
    cmd = [
        str(cli),
        "simulate",
        "--port",
        str(port),
        "--seed",
        str(CONFIG.seed),
        "--workloads",
        str(CONFIG.workloads),
        "--days",
        str(CONFIG.days),
        "--now",
        NOW.isoformat(),
        "--token-ttl",
        str(CONFIG.token_ttl_seconds),
    ]
    env = {**os.environ, CLIENT_ID_ENV: CONFIG.client_id, CLIENT_SECRET_ENV: CONFIG.client_secret}
    log = tmp_path_factory.mktemp("simulator") / "stderr.log"
    with log.open("wb") as stderr:  # a file, not a pipe nobody drains
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the simulator did not come up"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _own_answers(url: str, workload_id: str) -> dict[str, Any]:
    """What the simulator answers the same questions, asked directly."""
    with httpx.Client(base_url=url, timeout=30) as http:
        token = http.post(
            "/api/v1/token",
            json={
                "grantType": "client_credentials",
                "clientID": CONFIG.client_id,
                "clientSecret": CONFIG.client_secret,
            },
        ).json()["accessToken"]
        http.headers["Authorization"] = f"Bearer {token}"
        metrics = http.get(
            f"/api/v1/workloads/{workload_id}/metrics",
            params={
                "metricType": ",".join(METRIC_TYPES),
                "start": WINDOW[0],
                "end": WINDOW[1],
                "numberOfSamples": 12,
            },
        )
        return {
            "count": http.get("/api/v1/workloads/count").json()["count"],
            "workload": http.get(f"/api/v1/workloads/{workload_id}").json(),
            "metrics": {"status": metrics.status_code, "body": metrics.json()},
            "telemetry": {
                kind: http.get(
                    "/api/v1/workloads/telemetry",
                    params={"telemetryType": kind, "groupBy": group_by},
                ).json()
                for kind, group_by in (
                    ("WORKLOADS_COUNT", "ClusterId,Phase"),
                    ("GPU_ALLOCATION", "DepartmentId"),
                    ("PENDING_TIME_DISTRIBUTION", "ProjectId"),
                )
            },
        }


def test_the_official_sdk_works_against_the_simulator(
    sdk_python: Path, simulator_url: str, tmp_path: Path
) -> None:
    rows = snapshot_table(Cluster(CONFIG).snapshot(NOW)).to_pylist()
    active = [r for r in rows if not r["deleted"]]
    window_start = datetime.fromisoformat(WINDOW[0])
    running = next(
        r["id"] for r in active if r["phase"] == "Running" and r["createdAt"] < window_start
    )
    script = tmp_path / "sdk_session.py"
    script.write_text(SCRIPT)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "SDK_APP_ID": CONFIG.client_id,
        "SDK_APP_SECRET": CONFIG.client_secret,
    }
    proc = subprocess.run(
        [str(sdk_python), str(script), simulator_url, running, *WINDOW, ",".join(METRIC_TYPES)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sdk = json.loads(proc.stdout.strip().splitlines()[-1])
    own = _own_answers(simulator_url, running)

    assert sdk["version"].startswith("1.224.")
    assert sdk["claims"]["sub"] == CONFIG.client_id  # logged in with the app token grant
    assert sdk["count"] == own["count"] == len(active)
    assert len(sdk["ids"]) == len(set(sdk["ids"])) == sdk["count"]
    assert set(sdk["ids"]) == {r["id"] for r in active}
    assert sdk["pages"] == -(-len(active) // 37)
    assert sdk["workload"] == own["workload"]
    assert sdk["workload"]["id"] == running
    assert sdk["metrics"] == own["metrics"]
    assert sdk["metrics"]["status"] == 200
    measured = {m["type"] for m in sdk["metrics"]["body"]["measurements"] if m["values"]}
    assert measured == set(METRIC_TYPES)
    assert sdk["telemetry"] == own["telemetry"]
    assert sdk["refreshed"], "the SDK renews its token from the JWT's exp"
    assert sdk["refreshed_claims"]["exp"] > sdk["claims"]["exp"]
    assert sdk["count_after_refresh"] == own["count"]
