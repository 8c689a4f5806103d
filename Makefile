# The two set-up commands: `make demo` and `make test`. Both build .venv from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed-stamp

.PHONY: demo test test-airflow lint soak bench bench-memory bench-rate bench-offset clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,postgres,filesystem]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/crmsync demo

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest -W error -q -n auto --maxprocesses=4 --durations=15

# Airflow and dlt's dashboard in their own venv (the main one needs neither); Airflow and
# crmsync's dependencies pinned by .ci/airflow-constraints.txt
$(AIRFLOW_STAMP): pyproject.toml .ci/airflow-constraints.txt
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet -c .ci/airflow-constraints.txt -e ".[airflow,postgres,dashboard,dev]"
	touch $(AIRFLOW_STAMP)

# three tenants' CRMs through `airflow dags test` into a real PostgreSQL, twice; then
# `dlt pipeline crmsync show` serving its dashboard after a run
test-airflow: $(AIRFLOW_STAMP)
	$(AIRFLOW_VENV)/bin/python .ci/airflow_dag_test.py
	$(AIRFLOW_VENV)/bin/pytest -W error -q -p no:cacheprovider tests/test_dashboard.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

soak: $(STAMP)
	CRMSYNC_SOAK_SYNCS=$${CRMSYNC_SOAK_SYNCS:-25} $(BIN)/pytest -W error -q -s tests/test_soak.py

bench: $(STAMP)
	$(BIN)/python bench/compare.py

bench-memory: $(STAMP)
	$(BIN)/python bench/compare.py --memory

bench-rate: $(STAMP)
	$(BIN)/python bench/compare.py --rate-limit 5,10,20 --rate-headers none,x

bench-offset: $(STAMP)
	$(BIN)/python bench/offset_lookahead.py

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) crmsync.duckdb .pytest_cache .mypy_cache .ruff_cache
