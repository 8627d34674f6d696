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
# end: every kernel and peer at two short lengths, then the model benchmark (train step,
# greedy, uncached greedy and beam decoding of the small model); ~3 minutes.
train: install
	$(PY) scripts/bench_attention.py --lengths=256,1024 --repeats=3 --rss_lengths= --out_dir=$(WORKDIR)
	$(PY) scripts/bench_model.py --config=configs/default.py:model=small --repeats=3 --decode_repeats=1

bench: install
	$(PY) scripts/bench_attention.py --out_dir=results/bench_attention
	$(PY) scripts/bench_model.py --config=configs/default.py:model=small --json > results/bench_model/bench_model.json

clean:
	rm -rf $(VENV) .pytest_cache
