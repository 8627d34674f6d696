"""How well scripts/sweep.py uses the machine, with each launcher: cores kept busy, and
the cost of a re-run.

  python scripts/bench_sweep.py --workdir=/tmp/bench_sweep [--launchers=local,ray]
      [--json=runs/bench_sweep.json]

For each launcher, runs a 4-point sweep of short `copy` runs (model tiny) from scratch
with the default --parallel (local: one point per CPU, each pinned to it; ray: a Ray
cluster started on this machine for the sweep, one CPU per point), then the same command
again on the finished directory. Reports the first run's wall time; the CPU time its
points used (user + system of each train.py, from their sweep.json) over that wall time,
the cores kept busy by the runs themselves; the whole machine's busy time (/proc/stat)
over the same wall time, which also counts the launcher's own work; and the re-run's wall
time as a fraction of the first (it checks the configs and rewrites the tables, and
starts no cluster). The dataset is prepared before the clock starts.
"""

from __future__ import annotations

import glob
import json
import os
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


_LAUNCHERS = flags.DEFINE_list('launchers', ['local', 'ray'], 'The launchers to measure, in '
                               'this order: local, ray.')


def machine_busy_s() -> float:
  """Seconds of CPU time this machine has spent busy (all CPUs, all processes)."""
  with open('/proc/stat') as f:
    fields = [int(v) for v in f.readline().split()[1:]]
  idle = fields[3] + fields[4]   # idle, iowait
  return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')


def timed(argv: list[str], env: dict | None = None) -> tuple[float, float]:
  """(wall seconds, machine busy seconds) of one command, which must succeed."""
  busy, start = machine_busy_s(), time.perf_counter()
  out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env)
  wall = time.perf_counter() - start
  if out.returncode:
    raise SystemExit(f'error: {" ".join(argv)} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}')
  return wall, machine_busy_s() - busy


def points_cpu_s(sweep_dir: str) -> float:
  """The CPU seconds of the sweep's runs, as its launcher recorded them."""
  total = 0.0
  for path in glob.glob(os.path.join(sweep_dir, '*', 'sweep.json')):
    with open(path) as f:
      total += json.load(f)['cpu_s']
  return total


def measure(launcher: str, sweep: list[str], sweep_dir: str) -> dict:
  command = [*sweep, f'--workdir={sweep_dir}', f'--launcher={launcher}']
  # A compilation cache of its own, empty at first: no launcher inherits another's.
  env = dict(os.environ, ATTENTION_COMPILATION_CACHE=f'{sweep_dir}_jax_cache')
  first_wall, first_busy = timed(command, env)
  rerun_wall, _ = timed(command, env)
  cpu = points_cpu_s(sweep_dir)
  return {'first_run_s': first_wall, 'points_cpu_s': cpu, 'cores_busy': cpu / first_wall,
          'machine_cores_busy': first_busy / first_wall, 'rerun_s': rerun_wall,
          'rerun_fraction': rerun_wall / first_wall}


cli.positive(_STEPS)
cli.subset_of(_LAUNCHERS, ('local', 'ray'))


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
  sweep = [sys.executable, 'scripts/sweep.py', f'--config={CONFIG}',
           f'--config.data.data_dir={data_dir}',
           '--sweep=train.learning_rate=[1e-3,3e-3] model.num_layers=[1,2]',
           f'--config.train.num_steps={_STEPS.value}', '--config.eval.every_steps=1000',
           '--config.checkpoint.every_steps=1000', '--config.eval.beam_size=1',
           '--config.eval.test_examples=200']
  launchers = {name: measure(name, sweep, os.path.join(workdir, f'sweep_{name}'))
               for name in _LAUNCHERS.value}
  first = os.path.join(workdir, f'sweep_{_LAUNCHERS.value[0]}')
  result = {
      'cpus': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count(),
      'points': 4, 'steps_per_point': _STEPS.value, 'launchers': launchers,
      'command': 'python scripts/bench_sweep.py ' + ' '.join(sys.argv[1:]),
      # Read from a sweep, not described here: this process never starts a JAX backend.
      'machine': machine.read(first),
  }
  print(json.dumps(result, indent=1))
  if _JSON.value:
    os.makedirs(os.path.dirname(os.path.abspath(_JSON.value)), exist_ok=True)
    with open(_JSON.value, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  cli.main(main, config_flag=None)
