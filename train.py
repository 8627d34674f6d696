r"""Trains and evaluates a model from a config; re-running the same command resumes.

  python train.py --config=configs/default.py:task=lang,model=small --workdir=runs/default \
      [--config.train.learning_rate=1e-3 ...] [--dry_run]

See README.md for the config fields and what the run directory holds.
"""

import os

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

from absl import flags  # noqa: E402

from attention import UserError, cli  # noqa: E402

_CONFIG = cli.define_config_flag()
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, logs, results.')
_DRY_RUN = flags.DEFINE_bool('dry_run', False,
                             'Print the resolved config and parameter counts, then exit.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'Several processes: HOST:PORT of process 0 (with '
    '--num_processes and --process_id). Without them, a SLURM/MPI/TPU-pod environment is '
    'read, or the run is a single process.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Several processes: how many.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'Several processes: this one, 0-based.')
_RECORD_MACHINE = flags.DEFINE_bool(
    'record_machine', False, 'Write WORKDIR/machine.json (CPU, vector ISA, devices) at every '
    'start, for tools that compare step times across runs (scripts/sweep.py sets it).')
_CACHE = flags.DEFINE_string('compilation_cache', None,
                             f'JAX compilation cache directory (default {cli.DEFAULT_CACHE}; '
                             "'off' disables it).")
cli.require_one_of((_WORKDIR, _DRY_RUN),
                   '--workdir is required (the run directory, e.g. --workdir=runs/default)')


def main():
  from attention.training import distributed, run_dir, trainer
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if _DRY_RUN.value:
    setup = trainer.prepare(_CONFIG.value, _WORKDIR.value)
    print(setup.config.to_json(indent=1))
    counts = run_dir.param_counts(setup.config)
    total = counts.pop('total')
    for name, n in counts.items():
      print(f'  {name}: {n:,}')
    print(f'params: {total}')
    return
  # Both are made later, the data directory after minutes of set-up: check them now.
  cli.check_creatable(_WORKDIR.value, '--workdir')
  cli.check_creatable(_CONFIG.value.data.data_dir, 'config.data.data_dir')
  # One writer per run directory; with several processes, process 0 holds it for all.
  import jax
  from attention.training import workdir_lock
  lock = workdir_lock.hold(_WORKDIR.value) if jax.process_index() == 0 else None
  cli.enable_compilation_cache(_CACHE.value)

  def on_start(workdir):   # the run resumed or started: from here it changes the directory
    if lock is not None:
      workdir_lock.announce(lock)
    if _RECORD_MACHINE.value:
      from attention.bench import machine
      machine.write(workdir)
  try:
    trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value, on_start=on_start)
  except UserError:
    if lock is not None:
      workdir_lock.abandon(lock)
    raise


if __name__ == '__main__':
  cli.main(main, config_flag='config' if 'config' in flags.FLAGS else None)
