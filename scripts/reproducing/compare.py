"""Comparing what a job produced with what was recorded, and recording it.

results/<job>/<kind>/ holds a job's recording from one kind of machine: its vector ISA,
and its accelerator when it has one (attention.bench.machine.kind: `avx2`, `avx512`,
`avx512-h100`, ...), or `unrecorded` for a recording that names no machine, compared with
any. A claim that depends on the machine (timings, single training runs) is compared
only with a recording of the kind the job ran on now; others with the first recording
that holds the value, this machine's kind first.
"""

from __future__ import annotations

import os
import shutil

from attention.bench import machine
from reproducing.spec import Claim, Job, load, recordings

def kind_of(description: dict | None) -> str:
  return machine.kind(description) if description else 'unrecorded'


def machine_of(path: str, data) -> dict | None:
  """The machine a file was measured on: its `machine` field (benchmark JSON), or the
  machine.json beside it (a study's tables, a training run's scores)."""
  if isinstance(data, dict) and 'machine' in data:
    return data['machine']
  return machine.read(os.path.dirname(path))


def check(claim: Claim, job: Job, workdir: str, results: str) -> dict:
  """The claim's value recorded and now, and whether they agree: 'pass', 'FAIL', or why
  they cannot be compared."""
  result = {'claim': claim.name, 'job': job.name, 'where': claim.where,
            'tolerance': claim.tolerance_text()}
  produced_path = os.path.join(workdir, job.name, claim.produced)
  try:
    produced = load(produced_path)
    now = float(claim.value(produced))
  except (OSError, KeyError, ValueError, TypeError) as e:
    produced, now, failure = None, None, f'FAIL: no value produced ({type(e).__name__}: {e})'
  here = machine_of(produced_path, produced) if produced is not None else None
  candidates, why_not, error = [], None, 'none recorded'
  for recorded in (claim.recorded, *claim.also):
    for path in recordings(results, recorded, kind_of(here)):
      try:
        data = load(path)
        value = float(claim.value(data))
      except (OSError, KeyError, ValueError, TypeError) as e:
        error = f'{type(e).__name__}: {e}'
        continue
      why = machine.same_kind(machine_of(path, data), here) if claim.same_machine else None
      if why is None:
        candidates.append(value)
        break
      why_not = why_not or why
    if candidates:
      break
  if not candidates and why_not is None:
    return {**result, **({'now': now} if now is not None else {}),
            'status': f'no recorded value ({error})'}
  if now is None:
    return {**result, **({'recorded': candidates[0]} if candidates else {}), 'status': failure}
  result['now'] = now
  if not candidates:
    return {**result, 'status': f'not comparable: {why_not}'}
  result['recorded'] = candidates[0]
  slack = claim.rel * abs(result['recorded']) + claim.abs
  ok = abs(result['now'] - result['recorded']) <= slack
  return {**result, 'status': 'pass' if ok else 'FAIL'}


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


def output_machine(job: Job, workdir: str) -> dict | None:
  """The machine a job's output was measured on: a machine.json it wrote, else the
  `machine` field of the first of its JSON files that has one."""
  out = os.path.join(workdir, job.name)
  for produced in job.files:
    if os.path.basename(produced) == machine.FILE:
      found = machine.read(os.path.dirname(os.path.join(out, produced)))
      if found:
        return found
  for produced in job.files:
    path = os.path.join(out, produced)
    if produced.endswith('.json') and os.path.isfile(path):
      try:
        data = load(path)
      except ValueError:
        continue
      if isinstance(data, dict) and data.get('machine'):
        return data['machine']
  return None


def record(job: Job, workdir: str, results: str) -> str:
  """Copies the job's files into results/<job>/<kind>/, the kind of machine they were
  measured on, all together, over that kind's earlier recording only. Returns the kind."""
  kind = kind_of(output_machine(job, workdir))
  target_dir = os.path.join(results, job.name, kind)
  for produced, name in job.files.items():
    source = os.path.join(workdir, job.name, produced)
    if not os.path.exists(source):   # a plot the sweep had no data for
      continue
    target = os.path.join(target_dir, name)   # a name may hold folders: one per run
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(source, target)
    print(f'recorded {target}')
  return kind
