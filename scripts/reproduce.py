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
            devices, attention/bench/machine.py): x/bench.json is the first recording,
            x/bench.avx2.json the same job recorded on an AVX2 host (a study's
            machine is in the machine.json beside its results.csv). Without one, the
            claim is reported as not comparable, neither passed nor failed
  memory    compiled temporary bytes, deterministic for one jax version
  quality   BLEU / exact match / perplexity of seeded runs, compared absolutely. A
            study's single runs only on the recording's kind of machine: a 400-step run
            is deterministic there, but another ISA's rounding moves it by more than
            any useful tolerance (on one host, flash's change of rounding alone moved
            a point's exact match by up to 18 points: results/studies/recheck_*).
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

--record copies what the jobs produced over the recorded files in results/: how a new
number is recorded (then quote it in README/BENCHMARKS).
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from typing import Callable

from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)   # configs/ from a checkout
RESULTS = os.path.join(ROOT, 'results')
from attention import cli  # noqa: E402
from attention.bench import machine  # noqa: E402
from attention import UserError  # noqa: E402
PY = sys.executable

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


@dataclasses.dataclass(frozen=True)
class Job:
  """Commands (argv lists; '{out}' is the job's output directory) and the files they make.

  `files` maps a file the job writes (relative to {out}) to where --record copies it
  (relative to results/); a job that re-checks numbers recorded by a longer job records
  nothing. A command may print its JSON instead: `stdout` names the file its standard
  output is saved to."""
  name: str
  commands: tuple
  files: dict
  minutes: float                  # measured cost on the 2-core development VM
  quick: bool = False
  needs: tuple = ()               # optional Python packages
  env: tuple = ()                 # extra environment variables, (name, value) pairs
  stdout: str | None = None
  resumes: bool = False           # an interrupted run continues (train.py, sweeps)


@dataclasses.dataclass(frozen=True)
class Claim:
  name: str
  job: str
  recorded: str                   # the recorded file it reads (relative to results/)
  produced: str                   # the file the job writes now (relative to {out})
  value: Callable                 # parsed file -> float
  rel: float = 0.0                # pass if |now - recorded| <= rel * |recorded| + abs
  abs: float = 0.0
  where: str = ''                 # where the number is quoted
  # Compared only with a recording from a machine of one kind (attention.bench.machine): timings,
  # and the quality numbers of a single short training run, which another vector ISA's
  # rounding moves past any useful tolerance (the studies' seed means are compared anywhere).
  same_machine: bool = False
  also: tuple = ()                # other recorded files holding the same value (another machine)


def _bench(out_dir, *args):
  return (PY, 'scripts/bench_attention.py', *args, f'--out_dir={out_dir}')


def row(candidate, length, causal, pass_):
  """Selects one row of a bench_attention JSON."""
  def select(data):
    for r in data['rows']:
      if (r['candidate'], r['length'], r['causal'], r['pass']) == (candidate, length, causal,
                                                                      pass_):
        return r
    raise KeyError(f'no row {candidate} {length} causal={causal} {pass_}')
  return select


def field(select, key):
  return lambda data: float(select(data)[key])


def ratio(select_a, select_b, key='seconds'):
  """select_b[key] / select_a[key]: how many times faster a is than b."""
  return lambda data: float(select_b(data)[key]) / float(select_a(data)[key])


JOBS = [
    # Its ratios are also rows of the full table, which its claims fall back on where this
    # job has no recording from the machine's kind (its own is from the Zen 3, AVX2, host).
    Job('kernels_quick', (_bench('{out}', '--lengths=1024', '--causal=false,true',
                                 '--candidates=flash,jax.nn', '--repeats=7', '--rss_lengths='),),
        {'bench.json': 'bench_attention_quick/bench.json'}, minutes=1.5, quick=True),
    Job('kernels_memory', (_bench('{out}', '--lengths=16384', '--causal=false', '--passes=fwd_bwd',
                                  '--candidates=flash,reference,local,linear', '--rss_lengths=',
                                  '--memory_budget_gib=0'),),
        {'bench.json': 'bench_attention_memory/bench.json'}, minutes=1.5, quick=True),
    Job('kernels_targets', (_bench('{out}', '--lengths=4096', '--causal=false',
                                   '--candidates=flash,flash+causal,jax.nn,torch', '--repeats=7',
                                   '--rss_lengths='),),
        {'bench.json': 'bench_attention_causal/bench.json'}, minutes=4, needs=('torch',)),
    Job('kernels_rss', (_bench('{out}', '--lengths=16384', '--causal=false', '--passes=fwd_bwd',
                               '--candidates=flash,local,linear,torch', '--repeats=1',
                               '--max_seconds=120'),),
        {'bench.json': 'bench_attention_rss/bench.json'}, minutes=8, needs=('torch',)),
    Job('kernels_growth', (_bench('{out}', '--lengths=4096,16384', '--candidates=local,linear',
                                  '--repeats=7', '--rss_lengths='),),
        {'bench.json': 'bench_attention_growth/bench.json'}, minutes=3),
    # Heads split over two forced host devices (attention/kernels/head_parallel.py).
    Job('kernels_heads', (_bench('{out}', '--lengths=4096', '--causal=false,true',
                                 '--candidates=flash,flash@heads,flash:256x256@heads,jax.nn,'
                                 'jax.nn@heads,torch',
                                 '--repeats=5', '--rss_lengths='),),
        {'bench.json': 'bench_attention_heads/bench.json'}, minutes=6, needs=('torch',),
        env=(('XLA_FLAGS', '--xla_force_host_platform_device_count=2'),)),
    # Flash's and jax.nn's time split over XLA's operations (bench_attention.py --profile).
    Job('kernels_profile', (_bench('{out}', '--profile', '--lengths=4096', '--causal=false,true',
                                   '--candidates=flash,jax.nn', '--repeats=3'),),
        {'profile.json': 'bench_attention_profile/profile.json'}, minutes=3),
    # Flash before and after commit 81839eb (no score-tile copies), interleaved in one process.
    Job('kernels_ab_81839eb', ((PY, 'scripts/ab_kernel.py', '--rev=81839eb~1', '--against=81839eb',
                                '--kernel=flash',
                                '--lengths=4096', '--repeats=5', '--json={out}/ab.json'),),
        {'ab.json': 'ab_kernel/flash_81839eb.json'}, minutes=3),
    # linear before and after commit 938a485 (causal scan, head-major non-causal form).
    Job('kernels_ab_linear_938a485', ((PY, 'scripts/ab_kernel.py', '--rev=938a485~1',
                                       '--against=938a485', '--kernel=linear',
                                       '--lengths=4096,16384', '--repeats=5',
                                       '--json={out}/ab.json'),),
        {'ab.json': 'ab_kernel/linear_938a485.json'}, minutes=4),
    Job('kernels_full', (_bench('{out}', '--repeats=5'),),
        {f'bench.{ext}': f'bench_attention/bench.{ext}' for ext in ('json', 'md', 'png')},
        minutes=20, needs=('torch',)),
    Job('kernels_tune', (_bench('{out}', '--tune', '--lengths=4096', '--causal=false,true',
                                '--repeats=5', '--passes=fwd,fwd_bwd'),),
        {'tune.json': 'bench_attention/tune.json'}, minutes=8),
    Job('model_meshes', ((PY, 'scripts/bench_model.py', '--config=configs/default.py:model=small',
                          '--config.model.positional=sinusoidal', '--meshes=1x1,8x1,4x2',
                          '--skip=greedy,uncached,beam', '--batch=64', '--length=32',
                          '--repeats=10', '--json'),),
        {'bench_model.json': 'bench_model/meshes_8_forced_cpu_devices.json'}, minutes=6,
        env=(('XLA_FLAGS', '--xla_force_host_platform_device_count=8'),),
        stdout='bench_model.json'),
    # Needs PyPI once: the Flax WMT example comes from the installed flax's sdist.
    Job('model_vs_flax_wmt', ((PY, 'scripts/bench_flax_wmt.py',
                               '--config=configs/default.py:model=small',
                               '--config.model.positional=sinusoidal', '--flax_wmt={out}/flax_wmt',
                               '--fetch', '--json={out}/bench.json'),),
        {'bench.json': 'bench_model/flax_wmt.json'}, minutes=8),
    Job('sweep_use', ((PY, 'scripts/bench_sweep.py', '--workdir={out}/scratch',
                       '--json={out}/bench.json'),),
        {'bench.json': 'bench_sweep/bench.json'}, minutes=4),
]

FULL, TARGETS = 'bench_attention/bench.json', 'bench_attention_causal/bench.json'
WALL_TIMES = 'wall_times.json'
GROWTH, HEADS = 'bench_attention_growth/bench.json', 'bench_attention_heads/bench.json'
RSS, MESHES = 'bench_attention_rss/bench.json', 'bench_model/meshes_8_forced_cpu_devices.json'
FLAX_WMT = 'bench_model/flax_wmt.json'
PROFILE = 'bench_attention_profile/profile.json'
# Compiled temporaries only (nothing runs), deterministic for one jax version and kernel.
MEMORY = 'bench_attention_memory/bench.json'

CLAIMS = [
    # Flash against jax.nn at 1024 in one process: compared with this job's own recording
    # (the same command), else, on a kind of machine it was not recorded on, with the full
    # kernel table's 1024 rows (another command: eight candidates, every length).
    *[Claim(f"flash {pass_} 1024{' causal' if causal else ''}: x vs jax.nn", 'kernels_quick',
            'bench_attention_quick/bench.json', 'bench.json',
            field(row('flash', 1024, causal, pass_), 'speedup_vs_jax.nn'),
            rel=0.3, where='BENCHMARKS, Full table', same_machine=True, also=(FULL,))
      for causal in (False, True) for pass_ in ('fwd', 'fwd_bwd')],
    # Compiled temporaries at 16384: deterministic for one jax version.
    *[Claim(f'{name} fwd+bwd 16384: XLA temporaries (MiB)', 'kernels_memory', MEMORY, 'bench.json',
            lambda d, n=name: field(row(n, 16384, False, 'fwd_bwd'), 'temp_bytes')(d) / 2**20,
            rel=0.02, where='BENCHMARKS, Peak memory at 16384')
      for name in ('flash', 'reference', 'local', 'linear')],
    Claim('fwd+bwd 16384: reference / flash temporaries', 'kernels_memory', MEMORY, 'bench.json',
          ratio(row('flash', 16384, False, 'fwd_bwd'), row('reference', 16384, False, 'fwd_bwd'),
                'temp_bytes'), rel=0.02, where='BENCHMARKS, Targets'),
    # BENCHMARKS "Targets, side by side" (needs PyTorch).
    *[Claim(f'{name} {pass_} 4096: x vs {peer}', 'kernels_targets', TARGETS, 'bench.json',
            field(row(name, 4096, False, pass_), f'speedup_vs_{peer}'), rel=0.25,
            where='BENCHMARKS, Targets', same_machine=True)
      for name in ('flash', 'flash+causal') for pass_ in ('fwd', 'fwd_bwd')
      for peer in ('jax.nn', 'torch')],
    # BENCHMARKS "Heads over devices": flash@heads against flash, jax.nn and PyTorch.
    *[Claim(f"flash@heads {pass_} 4096{' causal' if causal else ''}: x vs {peer}",
            'kernels_heads', HEADS, 'bench.json',
            ratio(row('flash@heads', 4096, causal, pass_), row(peer, 4096, causal, pass_)),
            rel=0.25, where='BENCHMARKS, Heads over devices', same_machine=True)
      for causal in (False, True) for pass_ in ('fwd', 'fwd_bwd')
      for peer in ('flash', 'jax.nn', 'torch')],
    # BENCHMARKS "Local and linear growth": time at 16384 / time at 4096, one run.
    *[Claim(f"{name} {pass_}{' causal' if causal else ''}: time 16384 / 4096", 'kernels_growth',
            GROWTH, 'bench.json', ratio(row(name, 4096, causal, pass_),
                                        row(name, 16384, causal, pass_)),
            rel=0.3, where='BENCHMARKS, Targets', same_machine=True)
      for name in ('local', 'linear') for causal in (False, True) for pass_ in ('fwd', 'fwd_bwd')],
    # BENCHMARKS "Where flash's time goes": shares of one traced run, so ratios of one run.
    *[Claim(f"{name} {pass_} 4096{' causal' if causal else ''}: share of time in products",
            'kernels_profile', PROFILE, 'profile.json',
            lambda d, s=row(name, 4096, causal, pass_): s(d)['categories']['matmul']['share'],
            abs=0.08, where="BENCHMARKS, Where flash's time goes", same_machine=True)
      for name in ('flash', 'jax.nn') for causal in (False, True) for pass_ in ('fwd', 'fwd_bwd')],
    *[Claim(f"flash {pass_} 4096{' causal' if causal else ''}: 81839eb / its parent, speed-up",
            'kernels_ab_81839eb', 'ab_kernel/flash_81839eb.json', 'ab.json',
            lambda d, k=(pass_, causal): next(r['speedup'] for r in d['rows']
                                              if (r['pass'], r['causal']) == k),
            abs=0.1, where="BENCHMARKS, Where flash's time goes", same_machine=True)
      for pass_ in ('fwd', 'fwd_bwd') for causal in (False, True)],
    *[Claim(f"linear {pass_} {length}{' causal' if causal else ''}: 938a485 / its parent, "
            'speed-up', 'kernels_ab_linear_938a485', 'ab_kernel/linear_938a485.json', 'ab.json',
            lambda d, k=(pass_, causal, length): next(
                r['speedup'] for r in d['rows'] if (r['pass'], r['causal'], r['length']) == k),
            rel=0.3, where='BENCHMARKS, Local and linear growth', same_machine=True)
      for pass_ in ('fwd', 'fwd_bwd') for causal in (False, True) for length in (4096, 16384)],
    *[Claim(f'{name} fwd+bwd 16384: peak RSS (MiB)', 'kernels_rss', RSS, 'bench.json',
            lambda d, n=name: field(row(n, 16384, False, 'fwd_bwd'), 'peak_rss_bytes')(d) / 2**20,
            rel=0.15, where='BENCHMARKS, Peak memory at 16384')
      for name in ('flash', 'local', 'linear', 'torch')],
    *[Claim(f'model small {mesh} / 1x1 step time (8 forced devices)', 'model_meshes', MESHES,
            'bench_model.json', lambda d, m=mesh: d['meshes'][m] / d['meshes']['1x1'], rel=0.15,
            where='BENCHMARKS, Data parallelism', same_machine=True) for mesh in ('8x1', '4x2')],
    Claim('model small: parameters', 'model_meshes', MESHES, 'bench_model.json',
          lambda d: d['params'], where='BENCHMARKS, Model throughput'),
    *[Claim(f'model small, ours ({kernel}) / Flax WMT example: {what}', 'model_vs_flax_wmt',
            FLAX_WMT, 'bench.json', lambda d, k=kernel, key=key: d['x_vs_flax'][f'ours_{k}'][key],
            rel=0.3, where='BENCHMARKS, Model throughput', same_machine=True)
      for kernel in ('flash', 'xla')
      for what, key in (('train tokens/s', 'train_tokens_per_s'),
                        ('beam sentences/s', 'beam_sentences_per_s'))],
    *[Claim(f'model small, ours ({kernel}): cached / uncached greedy sentences/s',
            'model_vs_flax_wmt', FLAX_WMT, 'bench.json',
            lambda d, k=kernel: d['medians'][f'ours_{k}']['cached_over_uncached'], rel=0.25,
            where='BENCHMARKS, Model throughput', same_machine=True)
      for kernel in ('flash', 'xla')],
    *[Claim(f'model small: parameters, {who}', 'model_vs_flax_wmt', FLAX_WMT, 'bench.json',
            lambda d, w=who: d['params'][w], where='BENCHMARKS, Model throughput')
      for who in ('flax_wmt', 'ours_flash')],
    Claim('sweep of 4 points: cores kept busy', 'sweep_use', 'bench_sweep/bench.json',
          'bench.json', lambda d: d['cores_busy'], rel=0.15, where='BENCHMARKS, Sweeps',
          same_machine=True),
    Claim('sweep of 4 points: re-run / first run wall time', 'sweep_use',
          'bench_sweep/bench.json', 'bench.json', lambda d: d['rerun_fraction'], abs=0.04,
          where='BENCHMARKS, Sweeps', same_machine=True),
]

def load(path: str):
  if path.endswith('.jsonl'):
    with open(path) as f:
      return [json.loads(line) for line in f if line.strip()]
  if path.endswith('.csv'):
    with open(path, newline='') as f:
      return list(csv.DictReader(f))
  with open(path) as f:
    return json.load(f)


STUDIES = {'attention_vs_recurrence': 50, 'positional': 50, 'kernels': 21, 'table3': 25}
# Step times of these studies are not claimed: table3 is about quality, and short test runs
# shared the two cores for a minute of its recording.
UNTIMED_STUDIES = ('table3',)
STUDY_FILES = ('results.csv', 'results.md', 'summary.csv', 'summary.md', 'results.png',
               'results_by_length.png', 'curves.json', 'curves.png', 'machine.json')
# Tolerances of a study's columns; the rest (wall time) are not compared. Times are
# compared as each point's ratio to the first point of the same sweep.
STUDY_TOLERANCE = {'bleu': dict(abs=2.0), 'exact_match': dict(abs=3.0),
                   'perplexity': dict(rel=0.05), 'em_words': dict(abs=5.0),
                   'params': {}, 'train_ms_per_step': dict(rel=0.3)}


def study_job(name: str, minutes: float) -> Job:
  """The sweep of configs/sweeps/<name>.py, run with the COMMAND it records."""
  module = importlib.import_module(f'configs.sweeps.{name}')
  argv = shlex.split(module.COMMAND)
  command = [PY, *(('--workdir={out}' if a.startswith('--workdir=') else a) for a in argv[1:])]
  return Job(f'study_{name}', (tuple(command),),
             {f: f'studies/{name}/{f}' for f in STUDY_FILES}, minutes=minutes, resumes=True)


def _study_row(swept: list[str], values: tuple):
  def select(rows):
    for r in rows:
      if tuple(r[k] for k in swept) == values:
        return r
    raise KeyError(f'no point {dict(zip(swept, values))}')
  return select


def _study_value(select, column, first=None):
  def value(rows):
    v = float(select(rows)[column])
    return v / float(first(rows)[column]) if first else v
  return value


def _label(keys: list[str], values: tuple) -> str:
  return ','.join(f'{k}={v}' for k, v in zip(keys, values) if v) or 'base'


def _column_kind(column: str) -> str | None:
  """The STUDY_TOLERANCE entry a results column falls under (None: not compared)."""
  return next((k for k in STUDY_TOLERANCE if k in column), None)


def _study_claims(name: str) -> list[Claim]:
  return _study_run_claims(name) + _study_seed_mean_claims(name)


def _study_run_claims(name: str) -> list[Claim]:
  """A claim per point and column of the study's results.csv, compared on machines of the
  recording's kind only (but parameter counts)."""
  path = os.path.join(RESULTS, 'studies', name, 'results.csv')
  if not os.path.exists(path):
    return []
  rows = load(path)
  columns = list(rows[0])
  swept = columns[:columns.index('val_bleu')]
  first = _study_row(swept, tuple(rows[0][k] for k in swept))
  claims = []
  for r in rows:
    values = tuple(r[k] for k in swept)
    for column in columns:
      kind = _column_kind(column)
      if kind is None or r[column] in ('', None):
        continue
      relative = kind == 'train_ms_per_step'
      # The first point's time over itself is 1 by construction: nothing to check.
      if relative and (name in UNTIMED_STUDIES or r is rows[0]):
        continue
      claims.append(Claim(f'{name} {_label(swept, values)}: {column}'
                          f'{" / first point" if relative else ""}',
                          f'study_{name}', f'studies/{name}/results.csv', 'results.csv',
                          _study_value(_study_row(swept, values), column,
                                       first if relative else None),
                          where=f'README, Studies ({name})', same_machine=kind != 'params',
                          **STUDY_TOLERANCE[kind]))
  return claims


def _study_seed_mean_claims(name: str) -> list[Claim]:
  """When seeds were swept, a claim per setting on each column's mean over the seeds
  (summary.csv), compared on any machine, with the column's tolerance widened by half the
  range the recorded seeds spanned."""
  path = os.path.join(RESULTS, 'studies', name, 'summary.csv')
  if not os.path.exists(path):
    return []
  rows = load(path)
  columns = list(rows[0])
  keys = columns[:columns.index('seeds')]
  claims = []
  for r in rows:
    values = tuple(r[k] for k in keys)
    for column in columns:
      kind = _column_kind(column)
      if kind in (None, 'params', 'train_ms_per_step') or column.endswith(('_min', '_max')) \
          or r[column] in ('', None):
        continue
      tolerance = dict(STUDY_TOLERANCE[kind])
      tolerance['abs'] = tolerance.get('abs', 0.0) + (float(r[f'{column}_max'])
                                                      - float(r[f'{column}_min'])) / 2
      claims.append(Claim(f'{name} {_label(keys, values)}: {column}, mean of {r["seeds"]} seeds',
                          f'study_{name}', f'studies/{name}/summary.csv', 'summary.csv',
                          _study_value(_study_row(keys, values), column),
                          where=f'README, Studies ({name})', **tolerance))
  return claims


def train_job(name: str, config: str, minutes: float, quick: bool = False, *extra) -> Job:
  """train.py into {out}/run (data prepared once into data/, as `make train` does)."""
  files = {f'run/eval/{split}.json': f'train/{name}/{split}.json'
           for split in ('test', *(['test_long'] if extra else []))}
  files['run/metrics.jsonl'] = f'train/{name}/metrics.jsonl'
  return Job(f'train_{name}', ((PY, 'train.py', f'--config={config}', '--workdir={out}/run',
                                *extra),), files, minutes=minutes, quick=quick, resumes=True)


JOBS += [
    # `make train`: the same command.
    train_job('default', 'configs/default.py', 7, False, "--config.eval.extra_splits=('test_long',)"),
    train_job('copy_tiny', 'configs/default.py:task=copy,model=tiny', 2.5, True),
    train_job('reverse_tiny', 'configs/default.py:task=reverse,model=tiny', 3),
]


JOBS += [study_job(name, minutes) for name, minutes in STUDIES.items()]


def _last(split, key):
  """The last logged value of a metric in metrics.jsonl."""
  return lambda records: float([r for r in records if r['split'] == split][-1][key])


def _train_claims(name: str, splits: tuple) -> list[Claim]:
  claims = [Claim(f'train {name}: {split} {key}', f'train_{name}', f'train/{name}/{split}.json',
                  f'run/eval/{split}.json', lambda d, k=key: d[k], abs=tol,
                  where='README, Results')
            for split in splits for key, tol in (('bleu', 1.0), ('exact_match', 1.0),
                                                 ('token_accuracy', 0.5))]
  claims.append(Claim(f'train {name}: last validation exact match', f'train_{name}',
                      f'train/{name}/metrics.jsonl', 'run/metrics.jsonl',
                      _last('validation', 'exact_match'), abs=2.0, where='README, Results'))
  claims.append(Claim(f'train {name}: padding fraction', f'train_{name}',
                      f'train/{name}/metrics.jsonl', 'run/metrics.jsonl',
                      _last('train', 'padding_fraction'), abs=0.01, where='BENCHMARKS, make train'))
  return claims


CLAIMS += (_train_claims('default', ('test', 'test_long')) + _train_claims('copy_tiny', ('test',))
           + _train_claims('reverse_tiny', ('test',)))


# Not checked: statements of README/BENCHMARKS that no job makes. Measurements that no job
# makes are not quoted there at all: they are kept, dated, in docs/development_log.md.
UNCHECKED = [
    ('README, Install: the suite on Python 3.10/3.11/3.12', 'a statement that the test suite '
     'passed in fresh venvs, not a measurement: re-run with make install PYTHON=pythonX.Y '
     'VENV=DIR, then DIR/bin/python -m pytest -n 2 tests'),
    ('docs/development_log.md', 'exploratory runs, superseded recordings and an estimate on '
     'paper, kept with their dates and commands; not quoted in README or BENCHMARKS'),
]


def _full_table_claims():
  """One claim per timed row of the full kernel table: its speed against jax.nn."""
  path = os.path.join(RESULTS, FULL)
  if not os.path.exists(path):
    return []
  rows = load(path)['rows']
  return [Claim(f"{r['candidate']} {r['pass']} {r['length']}{' causal' if r['causal'] else ''}"
                ': x vs jax.nn', 'kernels_full', FULL, 'bench.json',
                field(row(r['candidate'], r['length'], r['causal'], r['pass']),
                      'speedup_vs_jax.nn'), rel=0.3, where='BENCHMARKS, Full table', same_machine=True)
          for r in rows if 'speedup_vs_jax.nn' in r and r['candidate'] != 'jax.nn']


def _tune_claims():
  """Each tile shape against 256x512 (the CPU default until 512x512), timed in one process.
  Rows that only the AVX2 recording has (its forward pass) are claimed from it."""
  default, claims, seen = 'flash:256x512', [], set()
  for recorded in ('bench_attention/tune.json', 'bench_attention/tune.avx2.json'):
    path = os.path.join(RESULTS, recorded)
    if not os.path.exists(path):
      continue
    for r in load(path)['rows']:
      key = (r['candidate'], r['causal'], r['pass'])
      if r['candidate'] == default or 'seconds' not in r or key in seen:
        continue
      seen.add(key)
      claims.append(Claim(
          f"tune {r['candidate']} {r['pass']}{' causal' if r['causal'] else ''}: "
          'time / 256x512', 'kernels_tune', recorded, 'tune.json',
          ratio(row(default, 4096, r['causal'], r['pass']),
                row(r['candidate'], 4096, r['causal'], r['pass'])),
          rel=0.25, where='BENCHMARKS, CPU tile sizes', same_machine=True))
  return claims


def all_claims() -> list[Claim]:
  return (CLAIMS + _full_table_claims() + _tune_claims()
          + [c for name in STUDIES for c in _study_claims(name)])


def missing_packages(job: Job) -> list[str]:
  return [name for name in job.needs if importlib.util.find_spec(name) is None]


def run_job(job: Job, workdir: str) -> str:
  """Runs a job unless done; 'done', 'ran', 'skipped: ...' or 'failed: ...'."""
  out = os.path.join(workdir, job.name)
  done = os.path.join(out, 'done.json')
  if os.path.exists(done) and not _RERUN.value:
    return 'done'
  if missing := missing_packages(job):
    return f'skipped: needs {", ".join(missing)} (pip install -e ".[bench]")'
  if _RERUN.value:   # from scratch; otherwise an interrupted sweep or run resumes where it was
    shutil.rmtree(out, ignore_errors=True)
  os.makedirs(out, exist_ok=True)
  env = dict(os.environ, **dict(job.env))
  start = time.time()
  code = _run_commands(job, out, env)
  # A resumed job's wall time is the sum of its runs, so that it stays the whole job's; one
  # that starts over counts its last run only.
  wall_s = _add_wall_seconds(out, time.time() - start, job.resumes)
  if code:
    return f'failed: exit {code}, see {os.path.join(out, "job.log")}'
  with open(done, 'w') as f:
    json.dump({'commands': [list(c) for c in job.commands], 'wall_s': wall_s}, f)
  return 'ran'


def _add_wall_seconds(out: str, seconds: float, resumes: bool) -> float:
  path = os.path.join(out, 'wall_s.json')
  try:
    with open(path) as f:
      seconds += json.load(f) if resumes else 0.0
  except (OSError, ValueError):
    pass
  with open(path, 'w') as f:
    json.dump(seconds, f)
  return seconds


def _run_commands(job: Job, out: str, env: dict) -> int:
  """Runs the job's commands in order; the first non-zero exit status, else 0."""
  for command in job.commands:
    argv = [part.replace('{out}', out) for part in command]
    print(f'[{job.name}] {" ".join(argv)}', flush=True)
    with open(os.path.join(out, 'job.log'), 'a') as log:
      if job.stdout:   # the command prints its JSON: stdout to that file, stderr to the log
        with open(os.path.join(out, job.stdout), 'w') as stdout:
          code = subprocess.run(argv, cwd=ROOT, env=env, stdout=stdout, stderr=log).returncode
      else:            # the log, and the console too: long jobs show their progress
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors='replace')
        for line in proc.stdout:
          log.write(line)
          sys.stdout.write(line)
        code = proc.wait()
    if code:
      return code
  return 0


def wall_time(job: Job, workdir: str) -> dict:
  """The job's wall time, this run's against the one recorded on this kind of machine:
  shown, never compared. They are absolute seconds on a VM whose speed drifts by up to 2x
  within a day, and the issue's rule is that only ratios from one run are compared."""
  isa = machine.cpu()['isa']
  result = {'claim': f'{job.name}: wall time (s)', 'job': job.name, 'where': '',
            'tolerance': 'not compared', 'status': 'info'}
  recorded = load_wall_times().get(job.name, {}).get(isa)
  if recorded:
    result['recorded'] = recorded['seconds']
  try:
    result['now'] = float(load(os.path.join(workdir, job.name, 'done.json'))['wall_s'])
  except (OSError, KeyError, ValueError, TypeError):
    pass
  return result


def load_wall_times() -> dict:
  """results/wall_times.json: {job: {isa: {'seconds', 'date', 'cpu_id'}}}."""
  try:
    return load(os.path.join(RESULTS, WALL_TIMES))
  except (OSError, ValueError):
    return {}


def record_wall_time(job: Job, workdir: str) -> None:
  done = load(os.path.join(workdir, job.name, 'done.json'))
  if 'wall_s' not in done:   # finished by a reproduce.py that did not time its jobs
    print(f'[{job.name}] no wall time to record')
    return
  cpu = machine.cpu()
  times = load_wall_times()
  times.setdefault(job.name, {})[cpu['isa']] = {
      'seconds': round(float(done['wall_s']), 1), 'cpu_id': cpu['cpu_id'],
      'date': time.strftime('%Y-%m-%d', time.gmtime(os.path.getmtime(
          os.path.join(workdir, job.name, 'done.json'))))}
  with open(os.path.join(RESULTS, WALL_TIMES), 'w') as f:
    json.dump(times, f, indent=1, sort_keys=True)
  print(f'recorded {os.path.join(RESULTS, WALL_TIMES)} ({job.name})')


def check(claim: Claim, job: Job, workdir: str) -> dict:
  # The claim's own recording, or where there is none (yet), the first of `also` that exists.
  recorded_path = next((p for p in (os.path.join(RESULTS, r) for r in (claim.recorded, *claim.also))
                        if os.path.exists(p)), os.path.join(RESULTS, claim.recorded))
  produced_path = os.path.join(workdir, job.name, claim.produced)
  result = {'claim': claim.name, 'job': job.name, 'where': claim.where,
            'tolerance': _tolerance_text(claim)}
  try:
    recorded = load(recorded_path)
    result['recorded'] = float(claim.value(recorded))
  except (OSError, KeyError, ValueError, TypeError) as e:
    return {**result, 'status': f'no recorded value ({type(e).__name__}: {e})'}
  try:
    produced = load(produced_path)
    result['now'] = float(claim.value(produced))
  except (OSError, KeyError, ValueError, TypeError) as e:
    return {**result, 'status': f'FAIL: no value produced ({type(e).__name__}: {e})'}
  if claim.same_machine:
    here = _machine(produced_path, produced)
    why = machine.same_kind(_machine(recorded_path, recorded), here)
    if why:   # another recording of the same value, from this kind of machine?
      same = next((d for path, d in _other_recordings(claim, here)
                   if machine.same_kind(_machine(path, d), here) is None), None)
      if same is None:
        return {**result, 'status': f'not comparable: {why}'}
      result['recorded'] = float(claim.value(same))
  slack = claim.rel * abs(result['recorded']) + claim.abs
  ok = abs(result['now'] - result['recorded']) <= slack
  return {**result, 'status': 'pass' if ok else 'FAIL'}


def _machine(path: str, data) -> dict | None:
  """The machine a file was measured on: its `machine` field (benchmark JSON), or for a
  table (a study's results.csv) the machine.json beside it."""
  if isinstance(data, dict):
    return data.get('machine')
  return machine.read(os.path.dirname(path))


def _other_recordings(claim: Claim, here: dict | None):
  """(path, parsed file) of the files that may hold the claim's value from a machine like
  `here`: the per-ISA sibling of its recorded file, then `also` and their siblings."""
  paths = [os.path.join(RESULTS, p) for p in (claim.recorded, *claim.also)]
  for path in paths:
    for candidate in dict.fromkeys([path, for_machine(path, here)]):
      if candidate != paths[0] and os.path.exists(candidate):
        yield candidate, load(candidate)


def for_machine(recorded_path: str, produced_machine: dict | None) -> str:
  """Where the recording from a machine of another kind lives: x/bench.json is the first
  recording, x/bench.avx2.json the same job recorded on an AVX2 machine (attention.bench.machine);
  a study is one directory described by its machine.json, so studies/s/results.csv from
  an AVX2 machine lives in studies/s/avx2/results.csv.
  """
  if not produced_machine or 'isa' not in produced_machine or not os.path.exists(recorded_path):
    return recorded_path
  try:
    first = _machine(recorded_path, load(recorded_path))
  except (OSError, ValueError):
    return recorded_path
  if machine.same_kind(first, produced_machine) is None:
    return recorded_path
  return _variant(recorded_path, produced_machine['isa'])


def _variant(recorded_path: str, isa: str) -> str:
  if os.path.relpath(recorded_path, RESULTS).split(os.sep)[0] == 'studies':
    directory, name = os.path.split(recorded_path)
    return os.path.join(directory, isa, name)
  stem, ext = os.path.splitext(recorded_path)
  return f'{stem}.{isa}{ext}'


def _tolerance_text(claim: Claim) -> str:
  parts = ([f'±{claim.rel:.0%}'] if claim.rel else []) + ([f'±{claim.abs:g}'] if claim.abs else [])
  return ' + '.join(parts) or 'exact'


def _number(value) -> str:
  if value is None:
    return '-'
  return f'{value:,.0f}' if abs(value) >= 1000 else f'{value:.3g}'


def table(results: list[dict]) -> str:
  lines = ['| claim | job | recorded | now | tolerance | result |', '|---|---|---|---|---|---|']
  for r in results:
    lines.append(f"| {r['claim']} | {r['job']} | {_number(r.get('recorded'))} | "
                 f"{_number(r.get('now'))} | {r['tolerance']} | {r['status']} |")
  return '\n'.join(lines) + '\n'


def record(job: Job, workdir: str) -> None:
  """Copies the job's files into results/, never over a recording from another kind of
  machine: the first of its files that names a machine (a benchmark JSON's `machine`, a
  study's machine.json beside its results.csv) decides where all of them go
  (for_machine), so a JSON, its table and its plot, or a study's files, stay together."""
  isa = None
  for produced, recorded in job.files.items():
    source = os.path.join(workdir, job.name, produced)
    if not source.endswith(('.json', '.csv')) or not os.path.exists(source):
      continue
    try:
      here = _machine(source, load(source))
    except ValueError:
      continue
    if here and 'isa' in here:
      target = os.path.join(RESULTS, recorded)
      if for_machine(target, here) != target:
        isa = here['isa']
      break
  for produced, recorded in job.files.items():
    source = os.path.join(workdir, job.name, produced)
    if not os.path.exists(source):   # a plot the sweep had no data for
      continue
    target = os.path.join(RESULTS, recorded)
    target = _variant(target, isa) if isa else target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(source, target)
    print(f'recorded {target}')


def select_jobs() -> list[Job]:
  known = {j.name for j in JOBS}
  allowed = f'allowed: {", ".join(sorted(known))}'
  if flags.FLAGS['only'].present and not _ONLY.value:   # '--only=' would run every job
    raise UserError(f'--only is empty; name one or more jobs, {allowed}')
  unknown = [name for name in _ONLY.value if name not in known]
  if unknown:
    raise UserError(f'--only: unknown job {unknown[0]!r}; {allowed}')
  return [j for j in JOBS if (not _QUICK.value or j.quick)
          and (not _ONLY.value or j.name in _ONLY.value)]


def main():
  global RESULTS
  if _RESULTS_DIR.value:
    RESULTS = os.path.abspath(_RESULTS_DIR.value)
    if not os.path.isdir(RESULTS):
      raise UserError(f'--results_dir: {_RESULTS_DIR.value} is not a directory (it holds the '
                      'recorded files, like results/ of a checkout)')
  claims = all_claims()
  jobs = select_jobs()
  if _LIST.value:
    for job in JOBS:
      mark = ' (quick)' if job.quick else ''
      print(f'{job.name}{mark}: ~{job.minutes:g} min, {len([c for c in claims if c.job == job.name])} claims')
      for command in job.commands:
        print('    ' + shlex.join(command).replace(PY, 'python'))
    for where, why in UNCHECKED:
      print(f'not checked: {where}: {why}')
    return
  workdir = os.path.abspath(_WORKDIR.value)
  cli.writable_dir(workdir, '--workdir')
  print(f'{len(jobs)} jobs, ~{sum(j.minutes for j in jobs):g} min on the 2-core development VM',
        flush=True)
  results = []
  for job in jobs:
    status = run_job(job, workdir)
    print(f'[{job.name}] {status}', flush=True)
    if status.startswith(('skipped', 'failed')):
      kind = 'skipped' if status.startswith('skipped') else 'FAIL'
      results += [{'claim': c.name, 'job': job.name, 'where': c.where,
                   'tolerance': _tolerance_text(c), 'status': f'{kind}: {status.split(": ", 1)[1]}'}
                  for c in claims if c.job == job.name]
      continue
    if _RECORD.value:
      record(job, workdir)
      record_wall_time(job, workdir)
      continue
    results += [check(c, job, workdir) for c in claims if c.job == job.name]
    results.append(wall_time(job, workdir))
  if _RECORD.value:
    return
  text = table(results)
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
