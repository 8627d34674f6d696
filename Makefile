# All set-up lives here: `make test` and `make train` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/default
# The suite tests the Ray and SLURM launchers of scripts/sweep.py (a real Ray cluster;
# submitit's local executor): `cluster`.
EXTRAS ?= test,cluster
# Tests run on both cores; each worker is one process with its own XLA compile cache.
PYTEST_WORKERS ?= 2

# What .ci/run runs on every other supported Python: the kernels and their sharding, the
# checkpoints, and the end-to-end runs (training, resume, evaluation, several devices and
# processes), and the interpretation tools (head gates, pruning: NNX state handling), where
# a jax, flax or orbax release differs first. About half the suite.
COMPAT_TESTS ?= tests/test_kernels.py tests/test_approximate_kernels.py tests/test_beam_cache.py \
	tests/test_sharding.py tests/test_checkpointing.py tests/test_train_eval.py tests/test_distributed.py \
	tests/test_interpret.py
# Convergence on `copy` (the slowest single test) is a property of the model, not of a jax
# release: the default interpreter's full suite keeps it, and CI stays within an hour.
COMPAT_DESELECT ?= --deselect tests/test_train_eval.py::test_copy_converges

.PHONY: install test test-compat train bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) --durations=25 tests

test-compat: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) --durations=10 $(COMPAT_DESELECT) $(COMPAT_TESTS)

# The default experiment end to end: prepares the `lang` data into data/, trains the
# mini Transformer into $(WORKDIR), then scores the longer-than-training test_long split
# and the test split (printed, and written to $(WORKDIR)/eval/<split>.json).
# Re-running resumes (or, when finished, only re-scores).
train: install
	$(PY) train.py --config=configs/default.py --workdir=$(WORKDIR) \
	    "--config.eval.extra_splits=('test_long',)"

# The kernel table and the model benchmark into runs/bench/ (results/ holds recordings,
# written only by scripts/reproduce.py --record).
bench: install
	$(PY) scripts/bench_attention.py --out_dir=runs/bench/attention
	$(PY) scripts/bench_model.py --config=configs/default.py:model=small \
	    --config.model.positional=sinusoidal --json > runs/bench/bench_model.json

clean:
	rm -rf $(VENV) .venv-* .pytest_cache
