"""Jobs and claims: the declarative vocabulary of reproduce.py's table."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys
from typing import Callable

PY = sys.executable


@dataclasses.dataclass(frozen=True)
class Job:
  """Commands (argv lists; '{out}' is the job's output directory) and the files they make.

  `files` maps a file the job writes (relative to {out}) to its name in the job's
  recording, results/<job>/<kind of machine>/. A command may print its JSON instead:
  `stdout` names the file its standard output is saved to."""
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
  recorded: str                   # the recorded file it reads, 'JOB/FILE' (any kind of machine)
  produced: str                   # the file the job writes now (relative to {out})
  value: Callable                 # parsed file -> float
  rel: float = 0.0                # pass if |now - recorded| <= rel * |recorded| + abs
  abs: float = 0.0
  where: str = ''                 # where the number is quoted
  # Compared only with a recording from a machine of one kind (attention.bench.machine): timings,
  # and the quality numbers of a single short training run, which another vector ISA's
  # rounding moves past any useful tolerance (the studies' seed means are compared anywhere).
  same_machine: bool = False
  also: tuple = ()                # other recorded files ('JOB/FILE') holding the same value

  def tolerance_text(self) -> str:
    parts = ([f'±{self.rel:.0%}'] if self.rel else []) + ([f'±{self.abs:g}'] if self.abs else [])
    return ' + '.join(parts) or 'exact'


def load(path: str):
  """A recorded or produced file, parsed: JSON, JSON lines or CSV (a list of row dicts)."""
  if path.endswith('.jsonl'):
    with open(path) as f:
      return [json.loads(line) for line in f if line.strip()]
  if path.endswith('.csv'):
    with open(path, newline='') as f:
      return list(csv.DictReader(f))
  with open(path) as f:
    return json.load(f)


def recordings(results: str, recorded: str, first_kind: str = '') -> list[str]:
  """The paths of every recording of `recorded` ('JOB/FILE'): results/JOB/<kind>/FILE for
  each kind of machine it was recorded on, kind `first_kind` first."""
  job, name = recorded.split('/', 1)
  directory = os.path.join(results, job)
  kinds = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
  paths = [os.path.join(directory, k, name) for k in sorted(kinds, key=lambda k: k != first_kind)]
  return [p for p in paths if os.path.isfile(p)]


def row(candidate, length, causal, pass_):
  """Selects one row of a bench_attention JSON."""
  def select(data):
    for r in data['rows']:
      if (r['candidate'], r['length'], r['causal'], r['pass']) == (candidate, length, causal,
                                                                      pass_):
        return r
    raise KeyError(f'no row {candidate} {length} causal={causal} {pass_}')
  return select


def length_row(kernel, length):
  """Selects one row of a bench_model --lengths JSON."""
  def select(data):
    for r in data['rows']:
      if (r['kernel'], r['length']) == (kernel, length):
        return r
    raise KeyError(f'no row {kernel} {length}')
  return select


def field(select, key):
  return lambda data: float(select(data)[key])


def ratio(select_a, select_b, key='seconds'):
  """select_b[key] / select_a[key]: how many times faster a is than b."""
  return lambda data: float(select_b(data)[key]) / float(select_a(data)[key])
