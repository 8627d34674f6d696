"""Re-measures the numbers recorded in README.md and BENCHMARKS.md and checks them.

  python scripts/reproduce.py --workdir=runs/reproduce            # everything (hours)
  python scripts/reproduce.py --workdir=runs/reproduce --quick    # a subset, ~10 min on 2 cores
  python scripts/reproduce.py --list                              # the jobs and their claims
  python scripts/reproduce.py --workdir=... --only=kernels_quick,train_copy_tiny

Every recorded number comes from a job: a command of this repository (a benchmark, a
training run, a sweep) whose machine-readable output was copied into results/ when the
number was recorded. A claim reads one value from that recorded file and the same value
from the file the job writes now, and checks them against its tolerance:

  timings   only ratios taken inside one run (flash against jax.nn in the same process),
            compared relatively: the development VM drifts by 10-30% in absolute speed;
            and only with a recording from the same kind of machine (vector ISA and
            devices, attention/bench/machine.py): results/<job>/<kind>/, e.g.
            results/kernels_full/avx2/bench.json. Without one, the claim is reported
            as not comparable, neither passed nor failed
  memory    compiled temporary bytes, deterministic for one jax version
  quality   BLEU / exact match / perplexity of seeded runs, compared absolutely. A
            study's single runs only on the recording's kind of machine: a 400-step run
            is deterministic there, but another ISA's rounding moves it by more than
            any useful tolerance (on one host, flash's change of rounding alone moved
            a point's exact match by many points; docs/development_log.md).
            Where a study swept seeds, the mean over them is compared on any machine,
            within the column's tolerance plus half the recorded range

Prints a table (claim, recorded, now, tolerance, pass/fail) and writes it to
DIR/reproduce.md and DIR/reproduce.json. Exit status 1 when a claim misses. A job whose
DIR/<job>/done.json exists is not run again (--rerun empties its directory and runs it
from scratch); an interrupted one resumes (sweeps skip their finished points, train.py
continues from its checkpoint). A job that needs an
optional package (PyTorch for the peer columns: pip install -e '.[bench]') is skipped
with a note when it is missing. Each job's wall time is shown beside its claims, this
run's and the recorded one (results/wall_times.json), never compared.

--record copies what the jobs produced into results/<job>/<kind of this machine>/, over
that kind's earlier recording and never another's: how a new number is recorded (then
quote it in README, docs/ or BENCHMARKS). results/README.md lists the jobs' files.

The jobs and claims are a table, scripts/reproducing/jobs.py and studies.py; this file
only selects from it, runs (reproducing/runner.py) and compares (reproducing/compare.py).
"""

from __future__ import annotations

import json
import os
import shlex
import sys

from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)   # configs/ from a checkout
RESULTS = os.path.join(ROOT, 'results')
from attention import UserError, cli  # noqa: E402
from reproducing import compare, jobs, runner  # noqa: E402
from reproducing.spec import PY, Job  # noqa: E402

_WORKDIR = flags.DEFINE_string('workdir', 'runs/reproduce', 'Where the jobs write their output.')
_QUICK = flags.DEFINE_bool('quick', False, 'Only the quick jobs (~10 minutes on 2 CPU cores).')
_ONLY = flags.DEFINE_list('only', [], 'Run only these jobs (names from --list).')
_LIST = flags.DEFINE_bool('list', False, 'Print the jobs and their claims; run nothing.')
_RERUN = flags.DEFINE_bool('rerun', False, 'Run jobs again from scratch (their directory emptied) '
                           'even when DIR/<job>/done.json exists.')
_RESULTS_DIR = flags.DEFINE_string('results_dir', None, 'Where the recorded files are '
                                   '(default: results/ of this checkout).')
_RECORD = flags.DEFINE_bool('record', False, 'Copy the produced files over the recorded ones '
                            'in results/ instead of comparing.')


def select_jobs() -> list[Job]:
  known = {j.name for j in jobs.JOBS}
  allowed = f'allowed: {", ".join(sorted(known))}'
  if flags.FLAGS['only'].present and not _ONLY.value:   # '--only=' would run every job
    raise UserError(f'--only is empty; name one or more jobs, {allowed}')
  unknown = [name for name in _ONLY.value if name not in known]
  if unknown:
    raise UserError(f'--only: unknown job {unknown[0]!r}; {allowed}')
  return [j for j in jobs.JOBS if (not _QUICK.value or j.quick)
          and (not _ONLY.value or j.name in _ONLY.value)]


def main():
  results_dir = os.path.abspath(_RESULTS_DIR.value) if _RESULTS_DIR.value else RESULTS
  if not os.path.isdir(results_dir):
    raise UserError(f'--results_dir: {_RESULTS_DIR.value} is not a directory (it holds the '
                    'recorded files, like results/ of a checkout)')
  claims = jobs.all_claims(results_dir)
  selected = select_jobs()
  if _LIST.value:
    for job in jobs.JOBS:
      mark = ' (quick)' if job.quick else ''
      print(f'{job.name}{mark}: ~{job.minutes:g} min, {len([c for c in claims if c.job == job.name])} claims')
      for command in job.commands:
        print('    ' + shlex.join(command).replace(PY, 'python'))
    for where, why in jobs.UNCHECKED:
      print(f'not checked: {where}: {why}')
    return
  workdir = os.path.abspath(_WORKDIR.value)
  cli.writable_dir(workdir, '--workdir')
  print(f'{len(selected)} jobs, ~{sum(j.minutes for j in selected):g} min on the 2-core '
        'development VM', flush=True)
  results = []
  for job in selected:
    status = runner.run_job(job, workdir, rerun=_RERUN.value)
    print(f'[{job.name}] {status}', flush=True)
    if status.startswith(('skipped', 'failed')):
      kind = 'skipped' if status.startswith('skipped') else 'FAIL'
      results += [{'claim': c.name, 'job': job.name, 'where': c.where,
                   'tolerance': c.tolerance_text(), 'status': f'{kind}: {status.split(": ", 1)[1]}'}
                  for c in claims if c.job == job.name]
      continue
    if _RECORD.value:
      compare.record(job, workdir, results_dir)
      runner.record_wall_time(job, workdir, results_dir)
      continue
    results += [compare.check(c, job, workdir, results_dir) for c in claims if c.job == job.name]
    results.append(runner.wall_time(job, workdir, results_dir))
  if _RECORD.value:
    return
  text = compare.table(results)
  print(text)
  with open(os.path.join(workdir, 'reproduce.md'), 'w') as f:
    f.write(text)
  with open(os.path.join(workdir, 'reproduce.json'), 'w') as f:
    json.dump(results, f, indent=1)
  failed = [r for r in results if r['status'].startswith('FAIL')]
  passed = sum(r['status'] == 'pass' for r in results)
  other_machine = sum(r['status'].startswith('not comparable') for r in results)
  shown = sum(r['status'] == 'info' for r in results)
  print(f'{passed} passed, {len(failed)} failed, {other_machine} not comparable (recorded on '
        f'another kind of machine), '
        f'{len(results) - passed - len(failed) - other_machine - shown} skipped or unrecorded, '
        f'of {len(results) - shown} claims; {shown} wall times shown, not compared')
  if failed:
    sys.exit(1)


if __name__ == '__main__':
  cli.main(main, config_flag=None)
