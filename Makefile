# Two commands do everything on a fresh machine:
#   make run    install, simulate telemetry into the landing folder, materialise the whole graph
#   make test   install with test extras, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/dagster_home
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
REQUESTS ?= 10000
SEED ?= 7

.PHONY: install install-test run test lint bench clean-data

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

run: install
	$(BIN)/routeiq simulate --out "$$($(BIN)/routeiq info --json | $(BIN)/python -c 'import json,sys; print(json.load(sys.stdin)["landing_dir"])')" --requests $(REQUESTS) --seed $(SEED)
	$(BIN)/routeiq materialize

test: install-test
	$(BIN)/python -m pytest -q

lint: install-test
	$(BIN)/ruff check routeiq_assets tests notebooks

bench: install-test
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/benchmarks -s

clean-data:
	rm -rf dagster_home/landing dagster_home/raw dagster_home/warehouse dagster_home/work \
	       dagster_home/mlflow dagster_home/artifacts dagster_home/storage dagster_home/history \
	       dagster_home/schedules dagster_home/logs dagster_home/.logs_queue dagster_home/.nux \
	       dagster_home/.telemetry
