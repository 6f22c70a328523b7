"""The fixed catalogue of the synthetic cluster and the model's time base.

What never varies with the seed: the clusters and their node pools (GPU type,
capacity; a pool's name is unique only within its cluster: both clusters have an ``a100``
pool), the workload types with their categories, the priority classes, the phases, and
the name pools the org chart and the workloads are drawn from (departments and their
projects, user names, models, AI applications, images). Which of them a seed uses is
drawn in ``draws``.

Clusters and node pools are a ``Catalogue``, built from the config and handed to the
parts of the model that need it: ``DEFAULT_CATALOGUE`` (2 clusters, 5 pools, 104 GPUs,
also exported under its old names ``CLUSTERS``, ``NODEPOOLS``, ``POOL_*``) unless the
config asks for ``clusters``/``gpus``/``nodepools_per_cluster``, then ``generate``.

Time is whole epoch seconds throughout the model; ``NEVER`` stands for "no such time".
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

NEVER = 2**62  # epoch seconds standing for "no such time" (open interval, never deleted)
TENANT_ID = 1001
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY = 86_400
GIB = 2**30


def to_seconds(t: datetime) -> int:
    """Whole epoch seconds (floor) of an aware datetime; naive ones are taken as UTC."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - EPOCH) // timedelta(seconds=1)


def to_micros(t: datetime) -> int:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class ClusterInfo:
    id: str
    name: str


@dataclass(frozen=True)
class NodePool:
    name: str
    cluster_id: str
    gpu_type: str
    gpus: int  # capacity in GPUs


class CatalogueError(ValueError):
    """Clusters, GPUs and node pools that make no catalogue."""


MIN_POOL_GPUS = 4  # a pool of fewer GPUs could not hold the halved requests of ``draws``
MAX_CLUSTERS = 16
# GPU types of generated node pools: (GPU type, GPU memory in GiB, pool name, weight).
# Memory is divisible by 4 (quarter GPUs); both A100 types make pools named ``a100``.
GPU_TYPES = {
    "A100-80GB": (80, "a100", 4.0),
    "H100-80GB": (80, "h100-80gb", 3.0),
    "L40S-48GB": (48, "l40s-48gb", 2.5),
    "B200-192GB": (192, "b200-192gb", 2.0),
    "L4-24GB": (24, "l4-24gb", 1.5),
    "A100-40GB": (40, "a100", 2.5),
    "T4-16GB": (16, "t4-16gb", 1.5),
    "V100-32GB": (32, "v100-32gb", 1.5),
    "A10-24GB": (24, "a10-24gb", 1.0),
}
# The pools of a generated cluster: even clusters like prod-east, odd ones like
# research-west (``nodepools_per_cluster`` of them; default 3 and 2, see ``_pool_types``).
POOL_TEMPLATES = (
    ("A100-80GB", "H100-80GB", "L40S-48GB", "B200-192GB", "L4-24GB"),
    ("A100-40GB", "T4-16GB", "V100-32GB", "A10-24GB", "H100-80GB"),
)
DEFAULT_POOLS_PER_CLUSTER = (3, 2)
MAX_POOLS_PER_CLUSTER = len(POOL_TEMPLATES[0])
_CLUSTER_NAMESPACE = uuid.UUID("5b0e6a8e-3f64-4f0a-9a57-8a3f1c2d4e00")


@dataclass(frozen=True, eq=False)
class Catalogue:
    """The clusters and node pools of one simulated control plane, and its org scale.

    Node pools are indexed in ``nodepools`` order; per pool index: ``pool_cluster`` (index
    into ``clusters``), ``pool_gpu_memory_gib``, ``pool_capacity_q`` (capacity in quarter
    GPUs). ``pool_index`` maps ``(cluster id, pool name)`` to the index (a name alone is
    ambiguous). ``pool_moves``: (source, target) pool index pairs of node-pool moves (see
    ``moves``), GPUs of the same memory in one cluster. ``departments``, ``dept_range``
    (departments drawn: ``integers(*dept_range)``), ``n_users`` and ``max_members`` (of a
    project) size the org chart ``draws`` draws; ``scaled_org``: the org chart of a
    generated catalogue (projects spread over all clusters by capacity) rather than the
    fixed two-cluster one.
    """

    clusters: tuple[ClusterInfo, ...]
    nodepools: tuple[NodePool, ...]
    gpu_memory_gib: tuple[int, ...]
    pool_moves: tuple[tuple[int, int], ...]
    departments: Mapping[str, tuple[str, ...]]
    dept_range: tuple[int, int] = (4, 7)
    n_users: int = 40
    max_members: int = 10
    scaled_org: bool = False
    pool_cluster: np.ndarray = field(init=False, repr=False)
    pool_gpu_memory_gib: np.ndarray = field(init=False, repr=False)
    pool_capacity_q: np.ndarray = field(init=False, repr=False)
    pool_index: dict[tuple[str, str], int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        index_of = {c.id: k for k, c in enumerate(self.clusters)}
        pool_index = {(p.cluster_id, p.name): k for k, p in enumerate(self.nodepools)}
        if len(pool_index) != len(self.nodepools):
            raise CatalogueError("node pool names must be unique within a cluster")
        sets = object.__setattr__
        sets(self, "pool_cluster", np.array([index_of[p.cluster_id] for p in self.nodepools]))
        sets(self, "pool_gpu_memory_gib", np.array(self.gpu_memory_gib, dtype=np.int64))
        sets(self, "pool_capacity_q", np.array([p.gpus * 4 for p in self.nodepools]))
        sets(self, "pool_index", pool_index)
        for name in ("pool_cluster", "pool_gpu_memory_gib", "pool_capacity_q"):
            getattr(self, name).flags.writeable = False

    @property
    def gpus(self) -> int:
        return sum(p.gpus for p in self.nodepools)

    @classmethod
    def for_config(
        cls, clusters: int | None, gpus: int | None, nodepools_per_cluster: int | None
    ) -> Catalogue:
        """``DEFAULT_CATALOGUE`` when all are None, else ``generate`` (clusters default to
        2, GPUs to 52 per cluster)."""
        if clusters is None and gpus is None and nodepools_per_cluster is None:
            return DEFAULT_CATALOGUE
        n = 2 if clusters is None else clusters
        return generate(n, 52 * n if gpus is None else gpus, nodepools_per_cluster)


def _split(total: int, weights: np.ndarray, minimum: int, unit: int) -> np.ndarray:
    """``total`` split by ``weights`` into parts of at least ``minimum``, in multiples of
    ``unit`` beyond it (largest remainders, ties by position); what is left over goes to
    the heaviest part."""
    spare_units, rest = divmod(total - minimum * len(weights), unit)
    share = weights / weights.sum() * spare_units
    parts = np.floor(share).astype(np.int64)
    left = spare_units - int(parts.sum())
    parts[np.argsort(-(share - parts), kind="stable")[:left]] += 1
    out = minimum + parts * unit
    out[int(np.argmax(weights))] += rest
    return out


def pool_counts(clusters: int, nodepools_per_cluster: int | None) -> list[int]:
    """Node pools of each generated cluster."""
    if nodepools_per_cluster is not None:
        return [nodepools_per_cluster] * clusters
    return [DEFAULT_POOLS_PER_CLUSTER[k % 2] for k in range(clusters)]


def validate_generated(clusters: int, gpus: int, nodepools_per_cluster: int | None) -> None:
    """Raise ``CatalogueError`` unless ``generate`` can build this catalogue."""
    if not 1 <= clusters <= MAX_CLUSTERS:
        raise CatalogueError(f"clusters must be between 1 and {MAX_CLUSTERS}, got {clusters}")
    if nodepools_per_cluster is not None and not (
        1 <= nodepools_per_cluster <= MAX_POOLS_PER_CLUSTER
    ):
        raise CatalogueError(
            f"nodepools per cluster must be between 1 and {MAX_POOLS_PER_CLUSTER}, "
            f"got {nodepools_per_cluster}"
        )
    pools = sum(pool_counts(clusters, nodepools_per_cluster))
    if gpus < MIN_POOL_GPUS * pools:
        raise CatalogueError(
            f"gpus must be at least {MIN_POOL_GPUS} per node pool: {clusters} cluster(s) "
            f"with {pools} node pools need at least {MIN_POOL_GPUS * pools} GPUs, got {gpus}"
        )


def _pool_types(k: int, count: int) -> tuple[str, ...]:
    """GPU types of cluster k's pools: its template's first, then the others rotated by
    ``k // 2`` (clusters 0 and 1 take their template as it is)."""
    first, *rest = POOL_TEMPLATES[k % 2]
    r = (k // 2) % len(rest)
    return (first, *rest[r:], *rest[:r])[:count]


def cluster_name(k: int) -> str:
    return DEFAULT_CLUSTERS[k].name if k < len(DEFAULT_CLUSTERS) else f"cluster-{k + 1:02d}"


def cluster_id(k: int) -> str:
    if k < len(DEFAULT_CLUSTERS):
        return DEFAULT_CLUSTERS[k].id
    return str(uuid.uuid5(_CLUSTER_NAMESPACE, cluster_name(k)))


def generate(clusters: int, gpus: int, nodepools_per_cluster: int | None = None) -> Catalogue:
    """A deterministic catalogue of ``clusters`` clusters with ``gpus`` GPUs in all.

    Clusters ``prod-east``, ``research-west`` (the default catalogue's ids), then
    ``cluster-03``, ... (uuid5 ids of their names). Cluster k's pools follow
    ``POOL_TEMPLATES[k % 2]`` (see ``_pool_types``); capacity is split by cluster weight
    (the first cluster is the largest) and GPU type weight, at least ``MIN_POOL_GPUS`` a
    pool, in multiples of 4 GPUs where the total allows. Pool moves: in each cluster, its
    ``a100`` pool to the first other pool of the same GPU memory, if any (``h100-80gb``
    in clusters with one).
    The org chart grows with the catalogue (``scaled_org``).
    """
    validate_generated(clusters, gpus, nodepools_per_cluster)
    infos = tuple(ClusterInfo(cluster_id(k), cluster_name(k)) for k in range(clusters))
    counts = pool_counts(clusters, nodepools_per_cluster)
    types = [_pool_types(k, counts[k]) for k in range(clusters)]
    weights = []
    for k, local in enumerate(types):
        cluster_weight = 2.0 if k == 0 else 1.0 + ((k * 5) % 4) / 4
        type_weights = np.array([GPU_TYPES[t][2] for t in local])
        weights.extend(cluster_weight * type_weights / type_weights.sum())
    sizes = _split(gpus, np.array(weights), MIN_POOL_GPUS, 4).tolist()
    pools: list[NodePool] = []
    memory: list[int] = []
    moves: list[tuple[int, int]] = []
    for k, local in enumerate(types):
        first = len(pools)
        for t in local:
            mem, name, _ = GPU_TYPES[t]
            pools.append(NodePool(name, infos[k].id, t, int(sizes[len(pools)])))
            memory.append(mem)
        same = [first + j for j in range(1, len(local)) if memory[first + j] == memory[first]]
        if same:
            moves.append((first, same[0]))
    n_dept = min(len(ALL_DEPARTMENTS), max(6, 2 * clusters + 2))
    n_users = min(len(FIRST_NAMES) * len(LAST_NAMES), max(len(FIRST_NAMES), gpus // 5))
    return Catalogue(
        clusters=infos,
        nodepools=tuple(pools),
        gpu_memory_gib=tuple(memory),
        pool_moves=tuple(moves),
        departments=ALL_DEPARTMENTS,
        dept_range=(max(4, n_dept - 2), n_dept + 1),
        n_users=n_users,
        max_members=max(10, min(n_users, 60)),
        scaled_org=True,
    )


TYPES = ("training", "workspace", "inference", "distributed")
CATEGORIES = ("Train", "Build", "Deploy", "Train")
# Priority classes, lowest first: a scheduler level is an index into these.
PRIORITY_CLASSES = ("train", "interactive-preemptible", "build", "inference")
PRIORITIES = (50, 75, 100, 125)
PREEMPTIBLE = (True, True, False, False)
N_LEVELS = len(PRIORITY_CLASSES)

PENDING, RUNNING, COMPLETED, FAILED, STOPPED = range(5)
PHASES = ("Pending", "Running", "Completed", "Failed", "Stopped")
K8S_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Succeeded")

DEPARTMENTS = {
    "ml-research": ("proj-llm-pretrain", "proj-rlhf", "proj-moe", "proj-diffusion"),
    "vision": ("proj-detection", "proj-segmentation", "proj-video", "proj-ocr"),
    "nlp": ("proj-translation", "proj-summarize", "proj-embeddings", "proj-chat"),
    "platform": ("proj-infra", "proj-ci-gpu", "proj-benchmarks", "proj-serving"),
    "finance-analytics": ("proj-forecast", "proj-fraud", "proj-risk", "proj-pricing"),
    "speech": ("proj-asr", "proj-tts", "proj-diarization", "proj-voice"),
}
FIRST_NAMES = (  # noqa: SIM905
    "alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy "
    "rupert sybil trent victor walter yara zoe liam noah emma mia lucas sofia omar priya "
    "chen kenji fatima diego ingrid tariq mei arjun elena hugo nadia"
).split()
LAST_NAMES = (  # noqa: SIM905
    "smith jones garcia miller davis wilson moore taylor anderson thomas jackson white "
    "harris martin thompson young king wright lopez hill scott green adams baker nelson "
    "carter mitchell perez roberts turner phillips campbell parker evans edwards collins "
    "stewart morris rogers reed"
).split()
MODELS = (  # noqa: SIM905
    "llama3-8b resnet50 vit-b16 bert-large t5-base whisper-small yolov8 mistral-7b sdxl "
    "gpt2-xl deberta-v3 clip-vit unet3d wav2vec2 mixtral-8x7b gemma-2b"
).split()
APPS = ("chat-assistant", "rag-search", "code-helper", "doc-summarizer", "vision-api")
IMAGES = (
    "nvcr.io/nvidia/pytorch:24.08-py3",
    "jupyter/scipy-notebook:2024-07-29",
    "nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3",
    "nvcr.io/nvidia/pytorch:24.08-py3",
)

# More departments, for the org chart of a generated (larger) catalogue.
EXTRA_DEPARTMENTS = {
    "robotics": ("proj-grasping", "proj-sim2real", "proj-navigation", "proj-manipulation"),
    "recsys": ("proj-ranking", "proj-retrieval", "proj-ctr", "proj-feeds"),
    "genomics": ("proj-protein-fold", "proj-variant-call", "proj-single-cell", "proj-drug"),
    "search": ("proj-query-rewrite", "proj-indexing", "proj-rerank", "proj-spelling"),
    "autonomy": ("proj-perception", "proj-planning", "proj-mapping", "proj-lidar"),
    "security": ("proj-malware", "proj-anomaly", "proj-phishing", "proj-threat-intel"),
    "healthcare": ("proj-radiology", "proj-pathology", "proj-ehr", "proj-triage"),
    "climate": ("proj-weather", "proj-emissions", "proj-satellite", "proj-ocean"),
    "ads": ("proj-bidding", "proj-creative", "proj-attribution", "proj-audience"),
    "games": ("proj-npc", "proj-procgen", "proj-anti-cheat", "proj-matchmaking"),
    "materials": ("proj-crystal", "proj-catalyst", "proj-battery", "proj-polymer"),
    "edge-ai": ("proj-quantize", "proj-distill", "proj-on-device", "proj-pruning"),
}
ALL_DEPARTMENTS = {**DEPARTMENTS, **EXTRA_DEPARTMENTS}

DEFAULT_CLUSTERS = (
    ClusterInfo("7c1f3a52-6a1e-4c4f-9f3e-2b8f0d9e1a01", "prod-east"),
    ClusterInfo("0b9d2e61-3c7a-4e58-8d2f-5a6b7c8d9e02", "research-west"),
)
# The catalogue of a config without clusters/gpus/nodepools_per_cluster: fixed since the
# first release (served bytes of existing seeds depend on it).
DEFAULT_CATALOGUE = Catalogue(
    clusters=DEFAULT_CLUSTERS,
    nodepools=(
        NodePool("a100", DEFAULT_CLUSTERS[0].id, "A100-80GB", 32),
        NodePool("h100-80gb", DEFAULT_CLUSTERS[0].id, "H100-80GB", 16),
        NodePool("l40s-48gb", DEFAULT_CLUSTERS[0].id, "L40S-48GB", 24),
        NodePool("a100", DEFAULT_CLUSTERS[1].id, "A100-40GB", 16),
        NodePool("t4-16gb", DEFAULT_CLUSTERS[1].id, "T4-16GB", 16),
    ),
    gpu_memory_gib=(80, 80, 48, 40, 16),
    # prod-east's a100 -> h100-80gb, both 80 GB GPUs
    pool_moves=((0, 1),),
    departments=DEPARTMENTS,
)
# The default catalogue's parts under their old names (read-only; never changed at run time).
CLUSTERS = DEFAULT_CATALOGUE.clusters
NODEPOOLS = DEFAULT_CATALOGUE.nodepools
POOL_CLUSTER = DEFAULT_CATALOGUE.pool_cluster
POOL_GPU_MEMORY_GIB = DEFAULT_CATALOGUE.pool_gpu_memory_gib
POOL_CAPACITY_Q = DEFAULT_CATALOGUE.pool_capacity_q
POOL_INDEX = DEFAULT_CATALOGUE.pool_index
POOL_MOVES = DEFAULT_CATALOGUE.pool_moves
