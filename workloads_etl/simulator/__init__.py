"""A simulated NVIDIA Run:ai control plane serving the workloads API slice over real HTTP."""

from workloads_etl.simulator.app import create_app
from workloads_etl.simulator.cluster import AttributedTruth, Cluster, GroundTruth
from workloads_etl.simulator.config import SimulatorConfig
from workloads_etl.simulator.faults import FaultConfig
from workloads_etl.simulator.moves import Move
from workloads_etl.simulator.server import SimulatorServer

__all__ = [
    "AttributedTruth",
    "Cluster",
    "FaultConfig",
    "GroundTruth",
    "Move",
    "SimulatorConfig",
    "SimulatorServer",
    "create_app",
]
