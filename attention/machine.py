"""What a timing was measured on: the CPU, its vector instruction set, cores, backend.

XLA compiles for the host it runs on, so one kernel on an AVX2 CPU and on an AVX-512 CPU
is two different programs: flash's forward+backward at 4096 took 1.0 s on the Zen 5
(AVX-512) VM its table was recorded on and 1.9 s on a Zen 3 (AVX2) VM of the same name,
while PyTorch's moved by 26% (BENCHMARKS.md). Timings, even ratios taken in one run, are
therefore only compared between machines with the same `isa` and devices.
"""

from __future__ import annotations

import os
import platform


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


def same_kind(a: dict | None, b: dict | None) -> str | None:
  """None when timings from machines a and b may be compared, else why not.

  Descriptions without an `isa` (written before it was recorded) are taken as comparable.
  """
  if not a or not b or 'isa' not in a or 'isa' not in b:
    return None
  if (a['isa'], a.get('devices')) == (b['isa'], b.get('devices')):
    return None
  show = lambda m: f"{m['isa']} ({m.get('cpu_id', '?')}, {', '.join(m.get('devices') or [])})"
  return f'recorded on {show(a)}, measured on {show(b)}'
