"""Comparing what a job produced with what was recorded, and recording it.

A claim that depends on the machine (timings, single training runs) is compared only with
a recording from a machine of the same kind (attention.bench.machine.same_kind): x/bench.json
is a job's first recording, x/bench.<isa>.json the same job recorded on another kind, and a
study's directory holds its machine.json beside its results.csv, with another kind's
recording in studies/<name>/<isa>/.
"""

from __future__ import annotations

import os
import shutil

from attention.bench import machine
from reproducing.spec import Claim, Job, load


def check(claim: Claim, job: Job, workdir: str, results: str) -> dict:
  """The claim's value recorded and now, and whether they agree: 'pass', 'FAIL', or why
  they cannot be compared."""
  # The claim's own recording, or where there is none (yet), the first of `also` that exists.
  recorded_path = next((p for p in (os.path.join(results, r) for r in (claim.recorded, *claim.also))
                        if os.path.exists(p)), os.path.join(results, claim.recorded))
  produced_path = os.path.join(workdir, job.name, claim.produced)
  result = {'claim': claim.name, 'job': job.name, 'where': claim.where,
            'tolerance': claim.tolerance_text()}
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
      same = next((d for path, d in _other_recordings(claim, here, results)
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


def _other_recordings(claim: Claim, here: dict | None, results: str):
  """(path, parsed file) of the files that may hold the claim's value from a machine like
  `here`: the per-ISA sibling of its recorded file, then `also` and their siblings."""
  paths = [os.path.join(results, p) for p in (claim.recorded, *claim.also)]
  for path in paths:
    for candidate in dict.fromkeys([path, for_machine(path, here, results)]):
      if candidate != paths[0] and os.path.exists(candidate):
        yield candidate, load(candidate)


def for_machine(recorded_path: str, produced_machine: dict | None, results: str) -> str:
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
  return _variant(recorded_path, produced_machine['isa'], results)


def _variant(recorded_path: str, isa: str, results: str) -> str:
  if os.path.relpath(recorded_path, results).split(os.sep)[0] == 'studies':
    directory, name = os.path.split(recorded_path)
    return os.path.join(directory, isa, name)
  stem, ext = os.path.splitext(recorded_path)
  return f'{stem}.{isa}{ext}'


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


def record(job: Job, workdir: str, results: str) -> None:
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
      target = os.path.join(results, recorded)
      if for_machine(target, here, results) != target:
        isa = here['isa']
      break
  for produced, recorded in job.files.items():
    source = os.path.join(workdir, job.name, produced)
    if not os.path.exists(source):   # a plot the sweep had no data for
      continue
    target = os.path.join(results, recorded)
    target = _variant(target, isa, results) if isa else target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(source, target)
    print(f'recorded {target}')
