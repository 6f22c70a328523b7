"""The deployment files (deploy/): Dagster on Kubernetes with the user-code image.

Offline checks of what can be checked without a cluster or a Docker daemon: the definitions
load with the k8s step executor when the setting says so; deploy/dagster.yaml is a valid
instance config (Dagster's schema, K8sRunLauncher's and Postgres storage's); the Helm values
pass the official chart's values schema (tests/fixtures/dagster_helm/); the Dockerfile parses,
copies what exists, and starts the module the wheel it builds contains; the files agree with
one another. Each check is also shown to reject a broken copy.
"""

from __future__ import annotations

import copy
import json
import re
import sys
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import dockerfile
import jsonschema
import pytest
import yaml
from dagster._config import process_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import K8sRunLauncher, k8s_job_executor
from dagster_postgres import DagsterPostgresStorage

from tests.tools import ROOT, run, uv
from workloads_etl.defs import build_definitions
from workloads_etl.defs.schedules import JOB_NAME
from workloads_etl.settings import DataPaths, PipelineSettings, SettingsError

DEPLOY = ROOT / "deploy"
HELM_SCHEMA = ROOT / "tests" / "fixtures" / "dagster_helm" / "values.schema.json"
# Environment variables deploy/dagster.yaml reads (made-up values: nothing connects).
PG_ENV = {
    "DAGSTER_PG_HOST": "postgres.example",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "not-a-real-password",
}
# Names of variables that hold credentials: never a literal value in the Helm values.
CREDENTIAL_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CLIENT_ID|CREDENTIAL", re.I)


def _yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), path
    return loaded


def _workspace_module() -> str:
    (entry,) = _yaml(ROOT / "workspace.yaml")["load_from"]
    return str(entry["python_module"]["module_name"])


# --- the executor setting -------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(parsed_data_dir: DataPaths) -> Path:
    """The data directory of the definitions built here (dbt's parse of the project, shared)."""
    return parsed_data_dir.root


@pytest.fixture(scope="module")
def k8s_defs(data_dir: Path) -> Iterator[dg.Definitions]:
    """The definitions as the code server loads them, with the pods' environment."""
    pods = _deployment(_yaml(DEPLOY / "helm-values.yaml"))["env"]
    with pytest.MonkeyPatch.context() as env:
        for name, value in pods.items():
            env.setenv(name, str(value))
        env.setenv("WORKLOADS_ETL_DATA_DIR", str(data_dir))
        yield build_definitions()


def test_the_k8s_setting_runs_each_step_as_a_kubernetes_job(k8s_defs: dg.Definitions) -> None:
    dg.Definitions.validate_loadable(k8s_defs)
    for name in (JOB_NAME, "extract_clusters"):  # the values extract by day and cluster
        assert k8s_defs.resolve_job_def(name).executor_def is k8s_job_executor
    # Every asset job of the definitions (the backfills' implicit one too) uses it.
    assert k8s_defs.resolve_implicit_global_asset_job_def().executor_def is k8s_job_executor


def test_the_default_keeps_dagsters_executor(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKLOADS_ETL_EXECUTOR", raising=False)
    defs = build_definitions(PipelineSettings.read(data_dir=data_dir))
    assert defs.resolve_job_def(JOB_NAME).executor_def is not k8s_job_executor


def test_the_executor_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKLOADS_ETL_EXECUTOR", "k8s")
    assert PipelineSettings.read().executor == "k8s"
    monkeypatch.setenv("WORKLOADS_ETL_EXECUTOR", "kubernetes")
    with pytest.raises(SettingsError, match="WORKLOADS_ETL_EXECUTOR"):
        PipelineSettings.read()


# --- deploy/dagster.yaml --------------------------------------------------------------------


def _instance_problems(text: str, home: Path) -> list[str]:
    """Why ``text`` is not a usable instance config for this deployment (empty: it is):
    Dagster's instance schema, then the run launcher's and the storage's own schemas, and
    every credential read from the environment."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(text)
    try:
        config, _ = dagster_instance_config(str(home))
    except DagsterInvalidConfigError as exc:
        return [str(exc)]
    problems = []
    launcher = config["run_launcher"]
    if (launcher["module"], launcher["class"]) != ("dagster_k8s", "K8sRunLauncher"):
        problems.append(f"run launcher {launcher['module']}.{launcher['class']}")
    checked = process_config(K8sRunLauncher.config_type(), launcher.get("config", {}))
    problems += [e.message for e in checked.errors or []]
    storage = config.get("storage", {})
    if "postgres" not in storage:
        problems.append(f"storage is not Postgres: {sorted(storage)}")
    else:
        checked = process_config(DagsterPostgresStorage.config_type(), storage["postgres"])
        problems += [e.message for e in checked.errors or []]
        db = yaml.safe_load(text)["storage"]["postgres"].get("postgres_db", {})
        problems += [
            f"postgres_db.{k} is written in the file, not read from the environment"
            for k in ("username", "password", "hostname")
            if not (isinstance(db.get(k), dict) and "env" in db[k])
        ]
    return problems


@pytest.fixture
def pg_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PG_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("pg_env")
def test_the_instance_config_is_valid(tmp_path: Path) -> None:
    assert _instance_problems((DEPLOY / "dagster.yaml").read_text(), tmp_path) == []


def _edited(text: str, edit: Any) -> str:
    data = yaml.safe_load(text)
    edit(data)
    return yaml.safe_dump(data)


BROKEN_INSTANCES = {
    "a misspelt run launcher field": lambda d: d["run_launcher"]["config"].update(
        env_secret=["workloads-etl-secrets"]
    ),
    "a run launcher field of the wrong type": lambda d: d["run_launcher"]["config"].update(
        load_incluster_config="yes"
    ),
    "a negative pool limit": lambda d: d["concurrency"]["pools"].update(default_limit=-1),
    "an unknown instance section": lambda d: d.update(run_launchers={}),
    "the password written in the file": lambda d: d["storage"]["postgres"]["postgres_db"].update(
        password="hunter2"
    ),
    "a launcher that runs in the daemon's process": lambda d: d.update(
        run_launcher={"module": "dagster.core.launcher", "class": "DefaultRunLauncher"}
    ),
}


@pytest.mark.usefixtures("pg_env")
@pytest.mark.parametrize("broken", BROKEN_INSTANCES, ids=list(BROKEN_INSTANCES))
def test_a_broken_instance_config_is_rejected(broken: str, tmp_path: Path) -> None:
    text = _edited((DEPLOY / "dagster.yaml").read_text(), BROKEN_INSTANCES[broken])
    assert _instance_problems(text, tmp_path) != []


def test_the_instance_config_reads_credentials_that_are_set(tmp_path: Path) -> None:
    # Without the variables, Dagster's own schema refuses the config (and names one).
    problems = _instance_problems((DEPLOY / "dagster.yaml").read_text(), tmp_path)
    assert any("DAGSTER_PG_" in p for p in problems), problems


# --- deploy/helm-values.yaml against the chart's schema -------------------------------------


def _without(schema: Any, drop: Any) -> Any:
    """A copy of ``schema`` without the entries ``drop(node, key)`` names."""
    if isinstance(schema, dict):
        return {k: _without(v, drop) for k, v in schema.items() if not drop(schema, k)}
    if isinstance(schema, list):
        return [_without(v, drop) for v in schema]
    return schema


def _remote_ref(node: Mapping[str, Any], key: str) -> bool:
    # The Kubernetes types are $refs to kubernetesjsonschema.dev: offline, a value of those
    # types is checked by its local constraints only (fixtures/dagster_helm/README.md).
    return key == "$ref" and not str(node[key]).startswith("#")


def _object_required(node: Mapping[str, Any], key: str) -> bool:
    # `required` of an object with properties: Helm validates the chart's defaults merged
    # with these values, and the defaults hold every required field this file leaves out.
    return _remote_ref(node, key) or (key == "required" and "properties" in node)


@pytest.fixture(scope="module")
def helm_schema() -> dict[str, Any]:
    schema = json.loads(HELM_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return dict(schema)


def _helm_problems(values: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Why ``values`` would not pass the chart (empty: they would)."""
    overlay = jsonschema.Draft202012Validator(_without(schema, _object_required))
    problems = [f"{e.json_path}: {e.message}" for e in overlay.iter_errors(values)]
    # Helm replaces lists instead of merging them: each deployment must be complete.
    defs = _without(schema["$defs"], _remote_ref)
    deployment = jsonschema.Draft202012Validator({"$defs": defs, "$ref": "#/$defs/UserDeployment"})
    for i, d in enumerate(values.get("dagster-user-deployments", {}).get("deployments", [])):
        problems += [f"deployments[{i}]: {e.message}" for e in deployment.iter_errors(d)]
    return problems + _inline_secrets(values)


def _env_maps(values: Any, path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(values, dict):
        for key, value in values.items():
            if key == "env" and isinstance(value, dict):
                yield f"{path}.env", value
            else:
                yield from _env_maps(value, f"{path}.{key}")
    elif isinstance(values, list):
        for i, value in enumerate(values):
            yield from _env_maps(value, f"{path}[{i}]")


def _inline_secrets(values: Mapping[str, Any]) -> list[str]:
    """Credentials written into the values instead of referenced from a Secret."""
    found = [
        f"{path}.{name}: a credential as a literal (use envSecrets)"
        for path, env in _env_maps(values)
        for name in env
        if CREDENTIAL_NAME.search(str(name))
    ]
    if values.get("postgresql", {}).get("postgresqlPassword") is not None:
        found.append("postgresql.postgresqlPassword: use global.postgresqlSecretName")
    if values.get("generatePostgresqlPasswordSecret", True):
        found.append("generatePostgresqlPasswordSecret: the chart would write the password")
    return found


@pytest.fixture(scope="module")
def helm_values() -> dict[str, Any]:
    return _yaml(DEPLOY / "helm-values.yaml")


def test_the_helm_values_pass_the_charts_schema(
    helm_values: dict[str, Any], helm_schema: dict[str, Any]
) -> None:
    assert _helm_problems(helm_values, helm_schema) == []


def _deployment(values: dict[str, Any]) -> dict[str, Any]:
    """The one user deployment of ``values`` (itself, not a copy)."""
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert isinstance(deployment, dict)
    return deployment


BROKEN_VALUES = {
    "an unknown run launcher": lambda v: v["runLauncher"].update(type="K8sLauncher"),
    "a misspelt run launcher field": lambda v: v["runLauncher"]["config"]["k8sRunLauncher"].update(
        envSecret=[{"name": "workloads-etl-secrets"}]
    ),
    "a deployment without its port": lambda v: _deployment(v).pop("port"),
    "a port as text": lambda v: _deployment(v).update(port="3030"),
    "grpc arguments as one string": lambda v: _deployment(v).update(
        dagsterApiGrpcArgs="--module-name workloads_etl.defs"
    ),
    "a run coordinator field the chart does not know": lambda v: v["dagsterDaemon"][
        "runCoordinator"
    ]["config"]["queuedRunCoordinator"].update(maxConcurrentRun=4),
    "the client secret written inline": lambda v: _deployment(v)["env"].update(
        RUNAI_CLIENT_SECRET="s3cr3t"
    ),
    "the database password written inline": lambda v: v["postgresql"].update(
        postgresqlPassword="hunter2"
    ),
}


@pytest.mark.parametrize("broken", BROKEN_VALUES, ids=list(BROKEN_VALUES))
def test_broken_helm_values_are_rejected(
    broken: str, helm_values: dict[str, Any], helm_schema: dict[str, Any]
) -> None:
    values = copy.deepcopy(helm_values)
    BROKEN_VALUES[broken](values)
    assert _helm_problems(values, helm_schema) != []


_CHART_KEYS = {
    "pools": "pools",
    "runs": "runs",
    "defaultLimit": "default_limit",
    "granularity": "granularity",
    "opGranularityRunBuffer": "op_granularity_run_buffer",
    "maxConcurrentRuns": "max_concurrent_runs",
    "tagConcurrencyLimits": "tag_concurrency_limits",
    "startTimeoutSeconds": "start_timeout_seconds",
    "pollIntervalSeconds": "poll_interval_seconds",
    "freeSlotsAfterRunEndSeconds": "free_slots_after_run_end_seconds",
    "enabled": "enabled",
}


def _as_instance(section: Mapping[str, Any]) -> dict[str, Any]:
    """A section of the chart's values as the chart writes it into dagster.yaml."""
    return {
        _CHART_KEYS[k]: _as_instance(v) if isinstance(v, dict) else v for k, v in section.items()
    }


@pytest.mark.usefixtures("pg_env")
def test_the_helm_values_and_the_instance_config_say_the_same(
    helm_values: dict[str, Any], tmp_path: Path
) -> None:
    instance = _yaml(DEPLOY / "dagster.yaml")
    # The chart's `concurrency` (newer than the schema fixture) renders into valid instance
    # config, equal to deploy/dagster.yaml's.
    concurrency = _as_instance(
        {k: v for k, v in helm_values["concurrency"].items() if k != "enabled"}
    )
    assert helm_values["concurrency"]["enabled"] is True
    assert concurrency == instance["concurrency"]
    monitoring = _as_instance(helm_values["dagsterDaemon"]["runMonitoring"])
    assert {k: monitoring.get(k) for k in instance["run_monitoring"]} == instance["run_monitoring"]
    rendered = {**instance, "concurrency": concurrency, "run_monitoring": monitoring}
    assert _instance_problems(yaml.safe_dump(rendered), tmp_path) == []
    # The same secrets, volumes and Postgres secret reach the runs either way.
    launcher = instance["run_launcher"]["config"]
    deployment = _deployment(helm_values)
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    assert [s["name"] for s in deployment["envSecrets"]] == launcher["env_secrets"]
    assert deployment["volumes"] == launcher["volumes"]
    assert deployment["volumeMounts"] == launcher["volume_mounts"]
    assert helm_values["global"]["postgresqlSecretName"] == launcher["postgres_password_secret"]
    assert helm_values["runLauncher"]["type"] == "K8sRunLauncher"
    # The steps are Kubernetes Jobs, and the data directory is the shared volume.
    assert deployment["env"]["WORKLOADS_ETL_EXECUTOR"] == "k8s"
    data_dir = deployment["env"]["WORKLOADS_ETL_DATA_DIR"]
    assert data_dir in {m["mountPath"] for m in deployment["volumeMounts"]}


def test_the_pools_are_those_of_the_local_instance(helm_values: dict[str, Any]) -> None:
    local = _yaml(ROOT / "workloads_etl" / "defs" / "dagster.yaml")["concurrency"]["pools"]
    assert _yaml(DEPLOY / "dagster.yaml")["concurrency"]["pools"] == local
    assert _as_instance(helm_values["concurrency"]["pools"]) == local


# --- deploy/Dockerfile ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def docker() -> tuple[dockerfile.Command, ...]:
    return dockerfile.parse_file(str(DEPLOY / "Dockerfile"))


def _args(commands: tuple[dockerfile.Command, ...]) -> dict[str, str]:
    return dict(
        str(v).split("=", 1) for c in commands if c.cmd == "ARG" for v in c.value if "=" in v
    )


def _option(argv: tuple[str, ...], *names: str) -> str:
    i = next(i for i, a in enumerate(argv) if a in names)
    return argv[i + 1]


def test_the_dockerfile_builds_from_files_that_exist(
    docker: tuple[dockerfile.Command, ...],
) -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copies = [c for c in docker if c.cmd == "COPY" and not any("--from" in f for f in c.flags)]
    assert copies
    for command in copies:
        *sources, _ = command.value
        for source in sources:
            assert (ROOT / source).exists(), f"{command.original}: {source} is missing"
            assert source.rstrip("/") in allowed, f"{source} is left out of the build context"


def test_the_image_pins_python_and_uv_as_the_project_does(
    docker: tuple[dockerfile.Command, ...],
) -> None:
    args = _args(docker)
    uv_pin = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert uv_pin is not None and args["UV_VERSION"] == uv_pin.group(1)
    requires = _pyproject()["project"]["requires-python"]
    assert args["PYTHON_VERSION"] == "3.11" and ">=3.11" in requires
    stages = [c.value for c in docker if c.cmd == "FROM"]
    assert stages[-1] == ("python:${PYTHON_VERSION}-slim",)
    assert ("python:${PYTHON_VERSION}-slim", "AS", "build") in stages


def test_the_image_runs_the_code_server_as_an_unprivileged_user(
    docker: tuple[dockerfile.Command, ...], helm_values: dict[str, Any]
) -> None:
    final = docker[max(i for i, c in enumerate(docker) if c.cmd == "FROM") :]
    (user,) = [c.value[0] for c in final if c.cmd == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    (cmd,) = [c for c in final if c.cmd == "CMD"]
    assert cmd.json and cmd.value[:3] == ("dagster", "api", "grpc")
    module = _option(cmd.value, "--module-name", "-m")
    port = _option(cmd.value, "--port", "-p")
    (exposed,) = [c.value[0] for c in final if c.cmd == "EXPOSE"]
    deployment = _deployment(helm_values)
    assert module == _workspace_module()
    assert module == _option(tuple(deployment["dagsterApiGrpcArgs"]), "--module-name", "-m")
    assert port == exposed == str(deployment["port"]) == "3030"


def _pyproject() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_locked_requirements_of_the_image_hold_the_k8s_extra(
    docker: tuple[dockerfile.Command, ...],
) -> None:
    (build,) = [c.value[0] for c in docker if c.cmd == "RUN" and "uv export" in c.value[0]]
    flags = ["--frozen", "--no-dev", "--extra", "k8s", "--no-emit-project"]
    assert " ".join(["uv export", *flags]) in build
    exported = run([uv(), "export", *flags, "--no-hashes"], cwd=ROOT).stdout
    pins = dict(
        line.split("==", 1) for line in exported.splitlines() if "==" in line and line[0] != " "
    )
    versions = {k: v.split(" ")[0] for k, v in pins.items()}
    assert versions["dagster"] == "1.13.27"
    assert versions["dagster-k8s"] == versions["dagster-postgres"] == "0.29.27"
    assert "pytest" not in versions and "workloads-etl" not in versions


def test_the_wheel_holds_what_the_code_server_loads(tmp_path: Path) -> None:
    run([uv(), "build", "--wheel", "--out-dir", tmp_path], cwd=ROOT)
    (wheel,) = tmp_path.glob("workloads_etl-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = archive.read(metadata).decode()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    module = _workspace_module().replace(".", "/")
    assert f"{module}/__init__.py" in names
    assert "workloads_etl/defs/executor.py" in names
    assert "workloads_etl/dbt_project/dbt_project.yml" in names
    assert "workloads-etl-dbt = workloads_etl.children:exec_dbt" in scripts
    assert "Provides-Extra: k8s" in meta
    assert "Requires-Dist: dagster-k8s==0.29.27; extra == 'k8s'" in meta.replace('"', "'")


def test_without_dagster_k8s_the_setting_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # As in an installation of the wheel without its k8s extra: the definitions fail at once,
    # before dbt parses anything, naming what to install.
    monkeypatch.setitem(sys.modules, "dagster_k8s", None)
    with pytest.raises(SettingsError, match=r"workloads-etl\[k8s\]"):
        build_definitions(PipelineSettings.read(data_dir=tmp_path, executor="k8s"))
    assert not (tmp_path / ".dbt").exists()
