# Fleet Workbench: one entry point for set-up, the main job, tests and benchmarks.
# `make demo` and `make test` build the environment first when needed.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
WORKSPACE ?= workspace
PORT ?= 8501

.DEFAULT_GOAL := help
.PHONY: help env demo test pytest lint chromium sample bench bench-large bench-ingest bench-forecast bench-calibration bench-plan bench-app bench-dask clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

env: $(STAMP)  ## build the virtual environment (.venv) with every dependency

chromium:  ## install Debian's chromium for the browser tests (needs root), if missing
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: run 'sudo apt-get install -y chromium'"; exit 1; fi; }

demo: env  ## the main job: ingest the sample fleet into ./workspace and open the app
	$(VENV)/bin/workbench demo --workspace $(WORKSPACE) --port $(PORT)

lint: env  ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

pytest: env chromium  ## the test suite only
	$(PY) -m pytest

test: lint pytest  ## everything CI runs: lint, types, the whole test suite (browser included)

sample: env  ## regenerate data_samples/ (byte-identical for the same seed)
	$(VENV)/bin/workbench sample-fleet --scale small --seed 7 --out data_samples

bench: env  ## benchmarks on the small and medium fleets (numbers for the README)
	$(PY) benchmarks/run.py

bench-large: env  ## benchmarks including the large fleet (10M jobs; several minutes)
	$(PY) benchmarks/run.py --large

bench-ingest: env  ## ingest of the large fleet (CSV and Parquet) against DuckDB and pandas references
	$(PY) benchmarks/ingest_large.py --scale large

AUTOETS_VENV := benchmarks/.venv-autoets

$(AUTOETS_VENV)/.installed-stamp:
	$(PYTHON) -m venv $(AUTOETS_VENV)
	$(AUTOETS_VENV)/bin/pip install --quiet statsforecast polars pyarrow
	touch $@

bench-forecast: env $(AUTOETS_VENV)/.installed-stamp  ## forecasting: ours vs AutoETS, Prophet, seasonal naive (1,000 + 10,000 series)
	$(PY) benchmarks/forecast_bench.py

bench-calibration: env  ## held-out interval coverage at every level (fleet, accelerator, pool, team)
	$(PY) benchmarks/level_coverage.py

bench-app: env chromium  ## time to a rendered page for every app page, first and cached, and an interaction
	$(PY) -m benchmarks.page_speed $(if $(wildcard $(WORKSPACE)/runs),--workspace $(WORKSPACE),)

bench-plan: env  ## procurement solve time against pools and scenarios (MILP and LP + repair)
	$(PY) benchmarks/plan_bench.py

bench-dask: env  ## forecast fan-out: local processes (1, 2) vs a local Dask cluster (1, 2 workers), 10,000 series
	$(PY) -m benchmarks.dask_scaling --series 10000

clean:  ## remove the environment, caches and the default workspace
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(WORKSPACE)
