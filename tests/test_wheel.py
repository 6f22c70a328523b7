"""The product stands alone: a wheel built from this repository, installed with its
dependencies into a fresh virtual environment, runs the demo and a real run from an empty
directory, with no checkout on its path.

The installation is read-only, as in a system or container site-packages: nothing is
writable in it, and the commands run as an unprivileged user (``nobody``, when the tests run
as root), so the pipeline must write only under its data directory."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import pytest

from tests.tools import ROOT, run, uv

pytestmark = pytest.mark.slow


NOBODY = 65534


def _usable_by_anyone(path: Path) -> bool:
    """Every directory above ``path`` can be entered by any user, and it can be run."""
    path = path.resolve()
    return all(os.stat(p).st_mode & 0o001 for p in path.parents) and bool(
        os.stat(path).st_mode & 0o001
    )


def _interpreter() -> str:
    """A Python for the venv that an unprivileged user can run too."""
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (Path(sys.executable), Path("/usr/bin") / minor):
        if candidate.exists() and (os.geteuid() != 0 or _usable_by_anyone(candidate)):
            return str(candidate)
    pytest.skip(f"no {minor} that an unprivileged user can run")


def unprivileged() -> list[str]:
    """The command prefix that runs as ``nobody`` when the tests run as root (root ignores
    file permissions); nothing otherwise."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv is needed to run as an unprivileged user")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def _writable_dir(installed: Path) -> Path:
    """An empty directory the unprivileged user can write, reachable from /: beside the
    installation, so that the fixture removes it with the installation."""
    work = Path(tempfile.mkdtemp(prefix="work-", dir=installed.parent.parent.parent))
    work.chmod(0o777)
    return work


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in directory.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A virtual environment holding the wheel and the locked dependencies, made read-only;
    its bin dir. At the end, nothing in it may have changed."""
    tmp = tmp_path_factory.mktemp("wheel")
    uv_bin = uv()
    run([uv_bin, "build", "--wheel", "-o", tmp / "dist"], cwd=ROOT)
    (wheel,) = (tmp / "dist").glob("workloads_etl-*.whl")
    constraints = tmp / "constraints.txt"
    run(
        [
            uv_bin,
            "export",
            "--frozen",
            "--no-dev",
            "--no-hashes",
            "--no-emit-project",
            "-o",
            constraints,
        ],
        cwd=ROOT,
    )
    # Outside pytest's private temporary directory, so that an unprivileged user reaches it.
    base = Path(tempfile.mkdtemp(prefix="workloads-etl-install-"))
    base.chmod(0o755)
    venv = base / "venv"
    run([uv_bin, "venv", "-q", "--python", _interpreter(), venv])
    run(
        [
            uv_bin,
            "pip",
            "install",
            "-q",
            # Bytecode compiled at install, as pip and system packages do: a read-only
            # installation cannot cache it at first import, so every process would compile
            # every module it imports again.
            "--compile-bytecode",
            "--python",
            venv / "bin" / "python",
            "-c",
            constraints,
            wheel,
        ]
    )
    subprocess.run(["chmod", "-R", "a-w", str(venv)], check=True)
    before = _snapshot(venv)
    try:
        yield venv / "bin"
        assert _snapshot(venv) == before, "nothing may be written inside the installation"
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def _clean_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    """Nothing of this checkout or its configuration: no PYTHONPATH, no RUNAI_*, no
    WORKLOADS_ETL_*, no DAGSTER_HOME."""
    return {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        **extra,
    }


def _warehouse_total(warehouse: Path) -> float:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        row = con.execute("select sum(total_cost) from marts.fct_workload_usage_daily").fetchone()
    assert row is not None and row[0] is not None
    return float(row[0])


def _printed_total(output: str) -> float:
    line = next(line for line in output.splitlines() if "total" in line and "│" in line)
    cells = [c.strip() for c in line.split("│") if c.strip()]
    return float(cells[5].replace(",", ""))  # department, 4 hour columns, util %, cost


def test_the_package_comes_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    proc = run(
        [
            *unprivileged(),
            installed / "python",
            "-c",
            "import workloads_etl; print(workloads_etl.__file__)",
        ],
        cwd=_writable_dir(installed),
        env=_clean_env(installed),
    )
    location = Path(proc.stdout.strip())
    assert installed.parent in location.parents
    assert ROOT not in location.parents
    assert (location.parent / "dbt_project" / "dbt_project.yml").is_file()
    assert (location.parent / "openapi" / "workloads-api.json").is_file()


def test_demo_runs_from_an_empty_directory(installed: Path, tmp_path: Path) -> None:
    work = _writable_dir(installed)
    proc = run(
        [*unprivileged(), installed / "workloads-etl", "demo", "--days", "1", "--workloads", "60"],
        cwd=work,
        env=_clean_env(installed, HOME=str(work)),
    )
    output = proc.stdout + proc.stderr
    assert "GPU usage and cost per department" in output
    serving = work / "data" / "serving" / "warehouse.duckdb"
    assert f"serving database: {serving}" in output.replace("\n", "")
    total = _warehouse_total(serving)
    assert total == pytest.approx(_warehouse_total(work / "data" / "warehouse.duckdb"))
    assert total > 0
    assert _printed_total(proc.stdout) == pytest.approx(total, abs=0.006)
    assert not (work / "dbt").exists(), "nothing may be written outside the data directory"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def simulator(installed: Path, tmp_path: Path) -> Iterator[tuple[str, datetime]]:
    """The installed package's own simulated control plane, as a separate process."""
    port = _free_port()
    now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    proc = subprocess.Popen(
        [
            *unprivileged(),
            str(installed / "workloads-etl"),
            "simulate",
            "--port",
            str(port),
            "--workloads",
            "60",
            "--days",
            "3",
            "--now",
            now.isoformat(),
        ],
        cwd=_writable_dir(installed),
        env=_clean_env(installed),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "the simulator exited"
            assert time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.2)
        yield url, now
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_run_against_a_control_plane_from_an_empty_directory(
    installed: Path, tmp_path: Path, simulator: tuple[str, datetime]
) -> None:
    url, now = simulator
    day = (now - timedelta(days=1)).date().isoformat()
    work = _writable_dir(installed)
    env = _clean_env(
        installed,
        HOME=str(work),
        RUNAI_BASE_URL=url,
        RUNAI_CLIENT_ID="workloads-etl-demo",
        RUNAI_CLIENT_SECRET="demo-secret-change-me",  # the simulator's documented default
    )
    proc = run(
        [*unprivileged(), installed / "workloads-etl", "run", "--start", day, "--end", day],
        cwd=work,
        env=env,
    )
    assert f"{day} to {day}" in proc.stdout
    assert _printed_total(proc.stdout) == pytest.approx(
        _warehouse_total(work / "data" / "warehouse.duckdb"), abs=0.006
    )
