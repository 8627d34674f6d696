"""What a timing was measured on: the CPU, its vector instruction set, cores, backend.

XLA compiles for the host it runs on, so one kernel on an AVX2 CPU and on an AVX-512 CPU
is two different programs, and their times (and their ratios to a peer) differ by more
than any tolerance (BENCHMARKS.md, "Machines", has the two recordings side by side).
Timings, even ratios taken in one run, are therefore only compared between machines with
the same `isa` and devices.
"""

from __future__ import annotations

import json
import os
import platform
import re

FILE = 'machine.json'   # a run directory's description of the machine that trained it


def cpu() -> dict:
  """{'cpu': model name, 'cpu_id': 'family F model M', 'isa': widest x86 vector set or arch}."""
  fields = {}
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if not line.strip():   # the first processor's block is enough
          break
        key, _, value = line.partition(':')
        fields[key.strip()] = value.strip()
  except OSError:
    pass
  flags = set(fields.get('flags', '').split())
  isa = ('avx512' if 'avx512f' in flags else 'avx2' if 'avx2' in flags
         else platform.machine() or 'unknown')
  return {'cpu': fields.get('model name') or platform.processor() or platform.machine(),
          'cpu_id': f"family {fields.get('cpu family', '?')} model {fields.get('model', '?')}",
          'isa': isa}


def describe() -> dict:
  """cpu() plus cores, JAX backend and devices, JAX and Python versions."""
  import jax   # here, so that cpu() works without initializing a backend
  return {**cpu(), 'cores': os.cpu_count(), 'backend': jax.default_backend(),
          'devices': [d.device_kind for d in jax.devices()], 'jax': jax.__version__,
          'python': platform.python_version()}


def kind(description: dict) -> str:
  """The name of a machine's kind, as results/<job>/<kind>/ spells it: its vector ISA,
  then its accelerators if it has any ('avx2', 'avx512', 'avx512-nvidia_h100');
  'unrecorded' for a description from before the ISA was recorded, 'mixed' for runs on
  several kinds."""
  if 'isa' not in description:
    return 'unrecorded'
  accelerators = sorted({d for d in description.get('devices') or () if d.lower() != 'cpu'})
  return re.sub(r'[^a-z0-9_.-]+', '_', '-'.join([description['isa'], *accelerators]).lower())


def write(directory: str) -> None:
  """DIR/machine.json: describe() of this process's machine (a resumed run's is replaced)."""
  with open(os.path.join(directory, FILE), 'w') as f:
    json.dump(describe(), f, indent=1)


def read(directory: str) -> dict | None:
  try:
    with open(os.path.join(directory, FILE)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def common(descriptions: list[dict | None]) -> dict | None:
  """The one kind of machine several runs (a sweep's points) were timed on: the first
  description when all have one kind; {'isa': 'mixed', 'machines': [...]} when they differ,
  which same_kind() compares with nothing; None when none was recorded."""
  known = [d for d in descriptions if d]
  kinds = {(d.get('isa'), tuple(d.get('devices') or ())): d for d in known}
  if len(kinds) <= 1:
    return known[0] if known else None
  return {'isa': 'mixed', 'machines': list(kinds.values())}


def same_kind(a: dict | None, b: dict | None) -> str | None:
  """None when timings from machines a and b may be compared, else why not.

  Descriptions without an `isa` (written before it was recorded) are taken as comparable.
  """
  if not a or not b or 'isa' not in a or 'isa' not in b:
    return None
  if 'mixed' in (a['isa'], b['isa']):
    return 'timed on more than one kind of machine'
  if (a['isa'], a.get('devices')) == (b['isa'], b.get('devices')):
    return None
  show = lambda m: f"{m['isa']} ({m.get('cpu_id', '?')}, {', '.join(m.get('devices') or [])})"
  return f'recorded on {show(a)}, measured on {show(b)}'
