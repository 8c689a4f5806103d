# The two set-up commands: `make demo` and `make test`. Both build .venv from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint soak bench bench-memory bench-rate bench-offset clean

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
	$(BIN)/pytest -W error -q --durations=15

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

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
	rm -rf $(VENV) crmsync.duckdb .pytest_cache .mypy_cache .ruff_cache
