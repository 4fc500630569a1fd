# Two commands do all the set-up on a fresh machine (Python 3.11+ and pip):
#   make demo   -- create .venv, install zconvert, convert generated sample data, read it back
#   make test   -- create .venv, install zconvert with test extras and system tools, lint, test
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup demo test lint format bench bench-dask clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) scripts/demo.py

lint: setup
	$(PY) -m ruff check zconvert tests scripts
	$(PY) -m ruff format --check zconvert tests scripts

format: setup
	$(PY) -m ruff check --fix zconvert tests scripts
	$(PY) -m ruff format zconvert tests scripts

test: setup lint
	bash scripts/install_system_deps.sh
	$(PY) -m pytest

bench: setup
	$(PY) scripts/bench.py

bench-dask: setup
	$(PY) scripts/bench_dask.py

clean:
	rm -rf $(VENV) data out bench-out .pytest_cache .ruff_cache
