# workloads-etl: every target sets up what it needs on a fresh machine.
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := .uv/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.synced
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Bytecode compiled once at install: every process then imports from it, also where
# PYTHONDONTWRITEBYTECODE keeps Python from caching it (about 4 s per process start).
export UV_COMPILE_BYTECODE := 1
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: help setup test test-spark lint fmt typecheck demo dev simulate docs bench clean

help:
	@echo "make demo      run the whole pipeline on the simulated control plane"
	@echo "make test      lint, type-check and run the test suite"
	@echo "make test-spark  build the dbt project on Spark and compare its marts with DuckDB's"
	@echo "make dev       Dagster UI with the simulated control plane behind it"
	@echo "make simulate  serve the simulated Run:ai control plane on 127.0.0.1:8080"
	@echo "make docs      dbt docs for the warehouse models"
	@echo "make bench     benchmark scripts (simulator, client, lake)"

$(UV):
	python3 -m venv .uv
	.uv/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

$(STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen
	@mkdir -p $(DAGSTER_HOME)
	@touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

fmt: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The type-check runs beside the tests: it is one process on one core, and the tests leave
# part of the machine idle while they wait on servers, subprocesses and the network. Its
# report follows the tests'; either failing fails the target.
test: setup lint
	@types_log=$$(mktemp); $(VENV)/bin/mypy >"$$types_log" 2>&1 & types=$$!; \
	echo "$(VENV)/bin/mypy (beside the tests)"; \
	echo "$(VENV)/bin/pytest -n 2 --dist loadgroup"; \
	$(VENV)/bin/pytest -n 2 --dist loadgroup; tests_rc=$$?; \
	wait $$types; types_rc=$$?; cat "$$types_log"; rm -f "$$types_log"; \
	exit $$(( tests_rc != 0 ? tests_rc : types_rc ))

# The dbt project on a local Spark session (pyspark and dbt-spark: the `spark` dependency
# group, added to the environment here; a later `make setup` after a lock change drops it).
test-spark: setup
	$(UV) sync --frozen --group spark
	$(VENV)/bin/pytest tests/spark -m spark -rP --show-capture=stdout

demo: setup
	$(VENV)/bin/workloads-etl demo

dev: setup
	$(VENV)/bin/workloads-etl dev

simulate: setup
	$(VENV)/bin/workloads-etl simulate --host 127.0.0.1 --port 8080

docs: setup
	$(VENV)/bin/workloads-etl docs

bench: setup
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .uv .dagster_home dbt/target dbt/logs
