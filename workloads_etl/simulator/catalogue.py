"""The fixed catalogue of the synthetic cluster and the model's time base.

What never varies with the seed: the two clusters and their node pools (GPU type,
capacity; a pool's name is unique only within its cluster: both clusters have an ``a100``
pool), the workload types with their categories, the priority classes, the phases, and
the name pools the org chart and the workloads are drawn from (departments and their
projects, user names, models, AI applications, images). Which of them a seed uses is
drawn in ``draws``.

Time is whole epoch seconds throughout the model; ``NEVER`` stands for "no such time".
"""

from __future__ import annotations

from dataclasses import dataclass
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


CLUSTERS = (
    ClusterInfo("7c1f3a52-6a1e-4c4f-9f3e-2b8f0d9e1a01", "prod-east"),
    ClusterInfo("0b9d2e61-3c7a-4e58-8d2f-5a6b7c8d9e02", "research-west"),
)
NODEPOOLS = (
    NodePool("a100", CLUSTERS[0].id, "A100-80GB", 32),
    NodePool("h100-80gb", CLUSTERS[0].id, "H100-80GB", 16),
    NodePool("l40s-48gb", CLUSTERS[0].id, "L40S-48GB", 24),
    NodePool("a100", CLUSTERS[1].id, "A100-40GB", 16),
    NodePool("t4-16gb", CLUSTERS[1].id, "T4-16GB", 16),
)
POOL_CLUSTER = np.array([0, 0, 0, 1, 1])
POOL_GPU_MEMORY_GIB = np.array([80, 80, 48, 40, 16])  # all divisible by 4 (quarter GPUs)
POOL_CAPACITY_Q = np.array([p.gpus * 4 for p in NODEPOOLS])
# A pool's identity is (cluster id, pool name); the name alone is ambiguous.
POOL_INDEX = {(p.cluster_id, p.name): k for k, p in enumerate(NODEPOOLS)}
# Node-pool moves (see ``moves``): prod-east's a100 -> h100-80gb, both 80 GB GPUs.
POOL_MOVES = ((0, 1),)

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
