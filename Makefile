# `make demo`, `make test-all` and `make test` work from a fresh clone: they install everything first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Resolved now, before PATH gains .venv/bin below: uv is bootstrapped with the system Python.
BOOT_PY := $(shell command -v python3)
UV := $(shell command -v uv 2>/dev/null || echo "$(BOOT_PY) -m uv")

# Trust the platform's CA store (corporate proxies and mirrors re-sign TLS); harmless elsewhere.
export UV_SYSTEM_CERTS ?= 1

export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__API__HOST := 127.0.0.1
export GX_ANALYTICS_ENABLED := false
export PIPELINE_PARAMS ?= $(CURDIR)/params.yaml
# Bytecode is compiled at install and written for our own modules: with PYTHONDONTWRITEBYTECODE set
# (some sandboxes and images set it) every process compiled scikit-learn, pandas and Airflow from
# source again, which tripled a `score` process (6.0 s -> 2.3 s on the demo day) and every test's.
unexport PYTHONDONTWRITEBYTECODE
# `airflow standalone` starts its components through `airflow` on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install demo demo-drift test test-all lint format repro bench bench-smoke airflow-ui stack stack-down lock clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	@command -v uv >/dev/null 2>&1 || $(BOOT_PY) -m uv --version >/dev/null 2>&1 || $(BOOT_PY) -m pip install --quiet uv
	@test -x $(PY) || $(UV) venv --quiet --python 3.11 $(VENV)
	$(UV) pip sync --quiet --compile-bytecode --python $(PY) requirements.txt
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	@touch $@

## The main job on the embedded default: training_pipeline, then batch_scoring of a few days, via Airflow.
demo: install
	$(PY) scripts/demo.py

## A drift week end to end: injected drift -> drift_monitoring DAG -> triggered retraining (after `make demo` or on its own).
## SCENARIO=correlation_break (or covariate_shift, category_mix, concept_drift, data_break, segment_shift, labels_stop, none) overrides params.yaml's.
demo-drift: install
	$(PY) scripts/demo_drift.py $(if $(SCENARIO),--scenario $(SCENARIO))

## Every test, with statement coverage (fails under the floor in pyproject.toml): what CI runs
## (unit, DagBag, end-to-end through Airflow on local storage and S3, the scale-out stack; ~16 min on 2 cores).
test-all: install
	$(PY) -m pytest -n 3 --dist loadfile --no-loadscope-reorder --cov --cov-report=term --cov-report=xml

## The loop while you work (~5 min): every test but the eight marked `slow` (the stack, the real
## scheduler's alert, killed and concurrent S3 writers, DVC in clean clones, the benchmarks, the
## pipeline on S3), without coverage's tracer, which costs this suite 70% more CPU.
test: install
	$(PY) -m pytest -n 3 --dist loadfile --no-loadscope-reorder -m "not slow"

## Lint, format check, types, layer contracts and file hygiene (what pre-commit runs; no pre-commit needed).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	PYTHONPATH=plugins:. $(VENV)/bin/lint-imports --no-cache
	$(PY) scripts/check_files.py

## Benchmarks (ingest, scoring, drift statistics, the training DAG, imports), each against its outside
## baseline measured in the same run: figures in benchmarks/results.json (~20 min on 2 cores).
bench: install
	$(PY) benchmarks/run.py

## The same benchmarks at a size that only proves they run (what CI runs, through the tests).
bench-smoke: install
	BENCH_RESULTS=$${BENCH_RESULTS:-/tmp/bench-smoke.json} $(PY) benchmarks/run.py --smoke

## Apply the formatter and the safe lint fixes.
format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## The same pipeline without Airflow, through DVC stages; then record the snapshot in data.dvc.
repro: install
	$(VENV)/bin/dvc repro
	$(VENV)/bin/dvc add data && $(VENV)/bin/dvc push data.dvc

## The Airflow UI on http://127.0.0.1:8080 (user/password are printed at start).
airflow-ui: install
	@eval "$$($(PY) scripts/airflow_env.py)" && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/airflow standalone

## The scale-out stack as local processes (docker-compose.yaml's services without Docker): API server,
## scheduler, DAG processor, triggerer, 2 Celery workers on PostgreSQL + Redis, storage on an S3 endpoint.
stack: install
	$(PY) scripts/stack.py up

stack-down:
	$(PY) scripts/stack.py down

## Recompile the pinned lock after editing requirements.in.
lock:
	$(UV) pip compile --python-version 3.11 requirements.in -o requirements.txt

clean:
	rm -rf storage .airflow .stack .dvc-remote reports great_expectations/uncommitted/validations great_expectations/uncommitted/data_docs
