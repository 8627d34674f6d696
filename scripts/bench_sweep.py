"""How well scripts/sweep.py uses the machine: cores kept busy, and the cost of a re-run.

  python scripts/bench_sweep.py --workdir=/tmp/bench_sweep [--json=runs/bench_sweep.json]

Runs a 4-point sweep of short `copy` runs (model tiny) from scratch with the default
--parallel (one point per CPU), then the same command again on the finished directory.
Reports the first run's wall time, the CPU time its points used (user + system of the
child processes) divided by that wall time (the cores kept busy, at most the CPU count),
and the re-run's wall time as a fraction of the first (it only checks the configs and
rewrites the tables). The dataset is prepared before the clock starts.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time

from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from attention import cli  # noqa: E402
from attention.bench import machine  # noqa: E402
from attention import UserError  # noqa: E402

_WORKDIR = flags.DEFINE_string('workdir', '/tmp/bench_sweep', 'Scratch directory, emptied: '
                                'new, or one this script made before.')
MARK = '.bench_sweep_scratch'   # in a workdir this script made, and may therefore empty
_JSON = flags.DEFINE_string('json', None, 'Also write the result to this JSON file.')
_STEPS = flags.DEFINE_integer('steps', 150, 'Training steps per point.')

CONFIG = 'configs/default.py:task=copy,model=tiny'


def children_cpu_s() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def timed(argv: list[str]) -> tuple[float, float]:
  """(wall seconds, child CPU seconds) of one command, which must succeed."""
  cpu, start = children_cpu_s(), time.perf_counter()
  out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
  wall = time.perf_counter() - start
  if out.returncode:
    raise SystemExit(f'error: {" ".join(argv)} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}')
  return wall, children_cpu_s() - cpu


cli.positive(_STEPS)


def check_flags() -> str:
  """The scratch directory, emptied, after checking every flag; never a directory that
  this script did not make (it would delete it)."""
  workdir = os.path.abspath(_WORKDIR.value)
  if os.path.isdir(workdir) and os.listdir(workdir) and not os.path.exists(
      os.path.join(workdir, MARK)):
    raise UserError(f'--workdir: {_WORKDIR.value} holds files this script did not make; it '
                    'empties its workdir, so give a new directory')
  shutil.rmtree(workdir, ignore_errors=True)
  cli.writable_dir(workdir, '--workdir')
  open(os.path.join(workdir, MARK), 'w').close()
  if _JSON.value:
    cli.writable_dir(os.path.dirname(os.path.abspath(_JSON.value)), '--json')
  return workdir


def main():
  workdir = check_flags()
  data_dir = os.path.join(workdir, 'data')
  # Prepare the dataset outside the timed part (a dry run prepares it and trains nothing).
  timed([sys.executable, 'train.py', f'--config={CONFIG}', f'--config.data.data_dir={data_dir}',
         '--dry_run'])
  sweep_dir = os.path.join(workdir, 'sweep')
  sweep = [sys.executable, 'scripts/sweep.py', f'--config={CONFIG}',
           f'--config.data.data_dir={data_dir}', f'--workdir={sweep_dir}',
           '--sweep=train.learning_rate=[1e-3,3e-3] model.num_layers=[1,2]',
           f'--config.train.num_steps={_STEPS.value}', '--config.eval.every_steps=1000',
           '--config.checkpoint.every_steps=1000', '--config.eval.beam_size=1',
           '--config.eval.test_examples=200']
  first_wall, first_cpu = timed(sweep)
  rerun_wall, _ = timed(sweep)
  result = {
      'cpus': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count(),
      'points': 4, 'steps_per_point': _STEPS.value,
      'first_run_s': first_wall, 'first_run_cpu_s': first_cpu,
      'cores_busy': first_cpu / first_wall,
      'rerun_s': rerun_wall, 'rerun_fraction': rerun_wall / first_wall,
      'command': 'python scripts/bench_sweep.py ' + ' '.join(sys.argv[1:]),
      # Read from the sweep, not described here: this process never starts a JAX backend.
      'machine': machine.read(sweep_dir),
  }
  print(json.dumps(result, indent=1))
  if _JSON.value:
    os.makedirs(os.path.dirname(os.path.abspath(_JSON.value)), exist_ok=True)
    with open(_JSON.value, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  cli.main(main, config_flag=None)
