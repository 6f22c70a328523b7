"""``python -m workloads_etl.simulator``: serve the simulated Run:ai control plane."""

from __future__ import annotations

import gc
from datetime import datetime

import click
import uvicorn

from workloads_etl.simulator.app import create_app
from workloads_etl.simulator.catalogue import (
    MAX_CLUSTERS,
    MAX_POOLS_PER_CLUSTER,
    MIN_POOL_GPUS,
    CatalogueError,
)
from workloads_etl.simulator.config import SimulatorConfig
from workloads_etl.simulator.faults import (
    METRICS_TIMESTAMP_FORMATS,
    FaultConfig,
    FaultConfigError,
    install_log_filter,
)
from workloads_etl.simulator.filters import FilterError, parse_datetime
from workloads_etl.simulator.server import CLIENT_ID_ENV, CLIENT_SECRET_ENV


def _parse_now(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_datetime(value)
    except FilterError as exc:
        raise click.BadParameter(str(exc)) from None


def _parse_faults(ctx: click.Context, param: click.Parameter, value: str | None) -> FaultConfig:
    try:
        return FaultConfig.parse(value or "")
    except FaultConfigError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command(context_settings={"show_default": True})
@click.option("--host", default="127.0.0.1", help="Interface to bind.")
@click.option("--port", default=8080, type=click.IntRange(0, 65535))
@click.option("--seed", default=7, type=int, help="Seed of the synthetic cluster.")
@click.option("--workloads", default=300, type=click.IntRange(1), help="Workloads to generate.")
@click.option("--days", default=14, type=click.IntRange(1), help="Days of history.")
@click.option(
    "--clusters",
    default=None,
    type=click.IntRange(1, MAX_CLUSTERS),
    help="Generate this many clusters (default: the fixed catalogue of 2 clusters, "
    "5 node pools, 104 GPUs; with --gpus only: 2).",
)
@click.option(
    "--gpus",
    default=None,
    type=click.IntRange(1),
    help=f"Total GPUs of the generated clusters, at least {MIN_POOL_GPUS} per node pool "
    "(default: 52 per cluster).",
)
@click.option(
    "--nodepools-per-cluster",
    default=None,
    type=click.IntRange(1, MAX_POOLS_PER_CLUSTER),
    help="Node pools of each generated cluster (default: 3 and 2, alternating).",
)
@click.option(
    "--now",
    default=None,
    callback=_parse_now,
    help="Freeze the cluster clock at this ISO 8601 instant (default: wall clock).",
)
@click.option(
    "--faults",
    default=None,
    callback=_parse_faults,
    help="Injected faults, e.g. 'latency_ms=50,error_rate=0.2,retry_after_form=date,seed=1'.",
)
@click.option(
    "--metrics-timestamp-format",
    type=click.Choice(METRICS_TIMESTAMP_FORMATS),
    default=None,
    help="How metric sample timestamps are written (overrides the faults setting).",
)
@click.option("--token-ttl", default=3600, type=click.IntRange(1), help="Token lifetime (s).")
@click.option("--client-id", envvar=CLIENT_ID_ENV, default="workloads-etl-demo")
@click.option(
    "--client-secret",
    envvar=CLIENT_SECRET_ENV,
    default="demo-secret-change-me",
    show_default=False,
    help=f"Client secret (better given via {CLIENT_SECRET_ENV}).",
)
@click.option("--log-level", default="warning", type=click.Choice(["debug", "info", "warning"]))
@click.option("--access-log/--no-access-log", default=False)
@click.option(
    "--admin/--no-admin",
    default=False,
    help="Serve POST /_simulator/clock, which moves the cluster clock (for tests).",
)
def main(
    host: str,
    port: int,
    seed: int,
    workloads: int,
    days: int,
    clusters: int | None,
    gpus: int | None,
    nodepools_per_cluster: int | None,
    now: datetime | None,
    faults: FaultConfig,
    metrics_timestamp_format: str | None,
    token_ttl: int,
    client_id: str,
    client_secret: str,
    log_level: str,
    access_log: bool,
    admin: bool,
) -> None:
    """Serve the Run:ai workloads API slice from a deterministic synthetic cluster."""
    if metrics_timestamp_format is not None:
        faults = faults.with_overrides(metrics_timestamp_format=metrics_timestamp_format)
    try:
        config = SimulatorConfig(
            seed=seed,
            workloads=workloads,
            days=days,
            now=now,
            client_id=client_id,
            client_secret=client_secret,
            token_ttl_seconds=token_ttl,
            faults=faults,
            admin=admin,
            clusters=clusters,
            gpus=gpus,
            nodepools_per_cluster=nodepools_per_cluster,
        )
    except CatalogueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--gpus'") from None
    app = create_app(config)
    # What was built to serve (the cluster's history, the imports) lives until the end:
    # out of the collector's way, so a collection walks only what requests allocate.
    gc.freeze()
    install_log_filter()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        date_header=False,  # the app sends the cluster clock's Date
        proxy_headers=False,  # no proxy in front: the peer is the client
    )


if __name__ == "__main__":
    main()
