# All set-up lives here: `make test` and `make train` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/default
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

# Until train.py exists (the experiments issue), `make train` runs what does exist end to
# end: every kernel and peer, forward and backward, at two short lengths (~1 minute).
train: install
	$(PY) scripts/bench_attention.py --lengths=256,1024 --repeats=3 --rss_lengths= --out_dir=$(WORKDIR)

bench: install
	$(PY) scripts/bench_attention.py --out_dir=results/bench_attention

clean:
	rm -rf $(VENV) .pytest_cache
