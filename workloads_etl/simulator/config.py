"""Settings of the simulated Run:ai control plane."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from workloads_etl.simulator.catalogue import Catalogue


@dataclass(frozen=True)
class SimulatorConfig:
    """What the simulated control plane serves; equal configs serve identical data.

    ``now`` freezes the clock (a naive value is taken as UTC); without it the cluster
    follows the wall clock and keeps evolving. ``faults`` is the HTTP layer's
    ``FaultConfig`` (typed loosely here so that this module imports nothing of it).
    ``admin`` serves ``POST /_simulator/clock``, which moves the cluster clock (for tests).

    ``clusters``, ``gpus`` (total over all clusters) and ``nodepools_per_cluster`` ask for a
    generated catalogue of clusters and node pools (``catalogue.generate``); all None (the
    default) is the fixed catalogue of 2 clusters, 5 node pools and 104 GPUs.
    """

    seed: int = 7
    workloads: int = 300
    days: int = 14
    now: datetime | None = None
    client_id: str = "workloads-etl-demo"
    client_secret: str = field(default="demo-secret-change-me", repr=False)
    token_ttl_seconds: int = 3600
    faults: Any = None
    admin: bool = False
    clusters: int | None = None
    gpus: int | None = None
    nodepools_per_cluster: int | None = None

    def __post_init__(self) -> None:
        if self.workloads < 0:
            raise ValueError(f"workloads must be >= 0, got {self.workloads}")
        if self.days < 1:
            raise ValueError(f"days must be >= 1, got {self.days}")
        if self.token_ttl_seconds < 1:
            raise ValueError(f"token_ttl_seconds must be >= 1, got {self.token_ttl_seconds}")
        if self.generated_catalogue:
            catalogue_for(self)  # CatalogueError (a ValueError) when it cannot be built
        if self.now is not None:
            aware = self.now if self.now.tzinfo else self.now.replace(tzinfo=UTC)
            object.__setattr__(self, "now", aware.astimezone(UTC))

    @property
    def generated_catalogue(self) -> bool:
        """Whether the config asks for a generated catalogue (see ``catalogue_for``)."""
        return (self.clusters, self.gpus, self.nodepools_per_cluster) != (None, None, None)


def catalogue_for(config: SimulatorConfig) -> Catalogue:
    """The clusters and node pools ``config`` asks for."""
    return Catalogue.for_config(config.clusters, config.gpus, config.nodepools_per_cluster)
