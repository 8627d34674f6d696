# All set-up lives here: `make test` and `make train` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/default
CONFIG ?= configs/default.py
# Tests run on both cores; each worker is one process with its own XLA compile cache.
PYTEST_WORKERS ?= 2

.PHONY: install test train bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) tests

train: install
	$(PY) train.py --config=$(CONFIG) --workdir=$(WORKDIR)

bench: install
	$(PY) scripts/bench_attention.py

clean:
	rm -rf $(VENV) .pytest_cache
