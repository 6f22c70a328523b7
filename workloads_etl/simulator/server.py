"""Run the simulated control plane on a real socket: in a background thread or a subprocess."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from types import TracebackType
from typing import IO, Self

import httpx
import uvicorn

from workloads_etl.children import die_with_parent
from workloads_etl.simulator.app import create_app
from workloads_etl.simulator.cluster import Cluster
from workloads_etl.simulator.config import SimulatorConfig
from workloads_etl.simulator.faults import CLOCK_PATH, FaultConfig, install_log_filter
from workloads_etl.simulator.filters import parse_datetime
from workloads_etl.simulator.responses import iso_z

HOST = "127.0.0.1"
CLIENT_ID_ENV = "WORKLOADS_ETL_SIM_CLIENT_ID"
CLIENT_SECRET_ENV = "WORKLOADS_ETL_SIM_CLIENT_SECRET"  # noqa: S105 - a variable name


class SimulatorStartError(RuntimeError):
    """The simulator did not come up."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


class SimulatorServer:
    """Context manager serving ``config`` on ``127.0.0.1`` at a free port.

    ``in_process=True`` runs uvicorn in a daemon thread of this process (``cluster`` is the
    served model). ``in_process=False`` starts ``python -m workloads_etl.simulator`` and waits
    for ``/healthz``; ``cluster`` is then a local model built from the same config, identical
    because the model is deterministic. Credentials travel to the subprocess through the
    environment, never the command line.

    ``set_clock(when)`` moves the served cluster's clock (``config.admin`` must be set) and
    the local model's with it.
    """

    def __init__(
        self,
        config: SimulatorConfig,
        in_process: bool = True,
        startup_timeout: float = 60.0,
        cluster: Cluster | None = None,
    ) -> None:
        self.config = config
        self.in_process = in_process
        self.startup_timeout = startup_timeout
        self._cluster = cluster
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._clock: datetime | None = None  # set by set_clock, for a model built later

    # -- properties

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("the simulator is not running")
        return f"http://{HOST}:{self._port}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not running")
        return self._port

    @property
    def client_id(self) -> str:
        return self.config.client_id

    @property
    def client_secret(self) -> str:
        return self.config.client_secret

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = Cluster(self.config)
            if self._clock is not None:
                self._cluster.set_now(self._clock)
        return self._cluster

    def set_clock(self, when: datetime) -> datetime:
        """Set the served cluster's clock through ``POST /_simulator/clock``; returns it.

        Needs ``config.admin``. The local model (``cluster``) follows: in-process it is the
        served one, with a subprocess it is set to the same instant.
        """
        if not self.config.admin:
            raise RuntimeError("set_clock needs a simulator started with SimulatorConfig.admin")
        response = httpx.post(
            f"{self.base_url}{CLOCK_PATH}", json={"now": iso_z(when)}, timeout=30.0
        )
        response.raise_for_status()
        now = parse_datetime(str(response.json()["now"]))
        self._clock = now
        if self._cluster is not None:
            self._cluster.set_now(now)
        return now

    # -- lifecycle

    def start(self) -> Self:
        try:
            if self.in_process:
                self._start_thread()
            else:
                self._start_process()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_thread(self) -> None:
        app = create_app(self.config, self.cluster)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        self._port = sock.getsockname()[1]
        install_log_filter()
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            date_header=False,  # the app sends the cluster clock's Date
            proxy_headers=False,  # no proxy in front: the peer is the client
        )
        server = uvicorn.Server(config)
        self._server = server
        self._sock = sock

        def run() -> None:
            try:
                server.run(sockets=[sock])
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name="simulator-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not server.started:
            if not self._thread.is_alive():
                raise SimulatorStartError("the simulator thread exited during startup")
            if time.monotonic() > deadline:
                raise SimulatorStartError("the simulator did not start in time")
            time.sleep(0.01)

    def _command(self, port: int) -> list[str]:
        cfg = self.config
        cmd = [
            sys.executable,
            "-m",
            "workloads_etl.simulator",
            "--host",
            HOST,
            "--port",
            str(port),
            "--seed",
            str(cfg.seed),
            "--workloads",
            str(cfg.workloads),
            "--days",
            str(cfg.days),
            "--token-ttl",
            str(cfg.token_ttl_seconds),
        ]
        if cfg.now is not None:
            cmd += ["--now", iso_z(cfg.now)]
        for option, value in (
            ("--clusters", cfg.clusters),
            ("--gpus", cfg.gpus),
            ("--nodepools-per-cluster", cfg.nodepools_per_cluster),
        ):
            if value is not None:
                cmd += [option, str(value)]
        if isinstance(cfg.faults, FaultConfig) and cfg.faults.to_spec():
            cmd += ["--faults", cfg.faults.to_spec()]
        cmd.append("--admin" if cfg.admin else "--no-admin")
        return cmd

    def _start_process(self) -> None:
        port = _free_port()
        env = {
            **os.environ,
            CLIENT_ID_ENV: self.config.client_id,
            CLIENT_SECRET_ENV: self.config.client_secret,
        }
        # stderr goes to a file, not a pipe nobody drains (a full pipe would block the server)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        # The server ends with the process that started it, even one killed with SIGKILL.
        self._process = subprocess.Popen(
            self._command(port),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            preexec_fn=die_with_parent(),
        )
        self._port = port
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self._process.poll() is not None:
                    self._stderr.seek(0)
                    err = self._stderr.read().decode(errors="replace")
                    raise SimulatorStartError(
                        f"the simulator exited with {self._process.returncode}: {err[-2000:]}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.base_url}/healthz").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise SimulatorStartError("the simulator did not answer in time")
                time.sleep(0.1)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout=5)
            self._thread = None
        self._server = None
        if self._process is not None:
            proc = self._process
            self._process = None
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
