"""Separate virtual environments for tools that must not share the project's (a DuckDB 1.4
client, the FinOps FOCUS validator), built with uv from its cache, and a headless browser."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BROWSER_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def uv() -> str:
    local = ROOT / ".uv" / "bin" / "uv"
    found = str(local) if local.is_file() else shutil.which("uv")
    assert found, "uv is needed (make setup installs it into .uv/)"
    return found


def run(cmd: list[str | Path], **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(  # type: ignore[call-overload]
        [str(c) for c in cmd], capture_output=True, text=True, timeout=900, check=False, **kw
    )
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def tool_venv(directory: Path, python: str, *requirements: str) -> Path:
    """A virtual environment at ``directory`` with ``requirements``; returns its python."""
    run([uv(), "venv", "-q", "--python", python, directory])
    target = directory / "bin" / "python"
    run([uv(), "pip", "install", "-q", "--python", target, *requirements])
    return target


def python312() -> str:
    """A Python 3.12 or newer interpreter of this machine (the FOCUS validator needs one)."""
    candidates = [
        *sorted((Path.home() / ".pyenv" / "versions").glob("3.1[2-9]*/bin/python3")),
        *(shutil.which(name) for name in ("python3.13", "python3.12")),
    ]
    for candidate in candidates:
        if candidate is None:
            continue
        probe = subprocess.run(
            [str(candidate), "-c", "import sys; assert sys.version_info >= (3, 12)"],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return str(candidate)
    proc = subprocess.run(
        [uv(), "python", "find", ">=3.12"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, "no Python >= 3.12 on this machine (needed by focus-validator)"
    return proc.stdout.strip()


def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing (as root, like .ci/run does)."""
    found = shutil.which("chromium")
    if found:
        return found
    assert os.geteuid() == 0, "chromium is missing; install Debian's chromium package"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "chromium"], env=env)
    found = shutil.which("chromium")
    assert found, "apt-get installed chromium, but it is not on PATH"
    return found
