# Two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench bench-soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lotsenbot demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# All benchmarks but the soak (about 10 min on 2 cores, at most 25): bench/results/latest.json
# and BENCHMARKS.md. Each benchmark starts its own Synapse on loopback and stops it again.
bench: $(STAMP)
	$(BIN)/python bench/run_all.py --budget 1500

# Mixed traffic at a steady rate: `make bench-soak MINUTES=3` for a short run.
MINUTES ?= 30
bench-soak: $(STAMP)
	$(BIN)/python bench/soak.py --minutes $(MINUTES)
	$(BIN)/python bench/run_all.py --report-only

clean:
	rm -rf $(VENV) .demo .pytest_cache
