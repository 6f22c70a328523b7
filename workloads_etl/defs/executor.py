"""How a run launched by Dagster executes its steps (``WORKLOADS_ETL_EXECUTOR``)."""

from __future__ import annotations

import dagster as dg

from workloads_etl.settings import PipelineSettings, SettingsError


def run_executor(settings: PipelineSettings) -> dg.ExecutorDefinition | None:
    """The executor of the definitions: ``None`` keeps Dagster's default (multiprocess; the
    command line runs in-process whatever this says), ``k8s`` runs each step as a Kubernetes
    Job of its own (dagster-k8s's ``k8s_job_executor``, configured by the instance's
    ``K8sRunLauncher``: image, namespace, secrets, volumes)."""
    if settings.executor == "default":
        return None
    try:
        from dagster_k8s import k8s_job_executor
    except ImportError:
        raise SettingsError(
            "WORKLOADS_ETL_EXECUTOR=k8s needs dagster-k8s: install workloads-etl[k8s]"
        ) from None
    return k8s_job_executor
