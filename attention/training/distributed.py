"""Several processes (hosts) on JAX's own distributed runtime.

`initialize` must run before anything touches a device. With explicit flags it joins
the coordinator at `coordinator_address`; without them it lets
`jax.distributed.initialize()` read a cluster's environment (SLURM, Open MPI, TPU pod
slices) when one is there, and otherwise leaves a single process alone. On CPU the
processes exchange collectives over gloo (TCP), which is what tests use on localhost.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from attention import UserError

# A cluster that jax.distributed.initialize() can configure from its environment alone.
_CLUSTER_SIZE_VARIABLES = ('SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE')


def _cluster_detected() -> bool:
  if os.environ.get('TPU_WORKER_HOSTNAMES', '').count(','):   # a multi-host TPU slice
    return True
  return any(int(os.environ.get(v, '1') or 1) > 1 for v in _CLUSTER_SIZE_VARIABLES)


def check_flags(coordinator_address: str | None, num_processes: int | None,
                process_id: int | None) -> None:
  given = [v is not None for v in (coordinator_address, num_processes, process_id)]
  if any(given) and not all(given):
    raise UserError('--coordinator_address, --num_processes and --process_id go together; '
                    'give all three, or none (single process, or the cluster environment)')
  if not any(given):
    return
  host, sep, port = coordinator_address.rpartition(':')
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise UserError(f'--coordinator_address={coordinator_address!r}: allowed: HOST:PORT, '
                    'e.g. 10.0.0.1:1234 or localhost:1234')
  if num_processes < 1:
    raise UserError(f'--num_processes={num_processes}: allowed: an integer >= 1')
  if not 0 <= process_id < num_processes:
    raise UserError(f'--process_id={process_id}: allowed: 0 ... {num_processes - 1} '
                    f'(--num_processes={num_processes})')


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  check_flags(coordinator_address, num_processes, process_id)
  explicit = coordinator_address is not None
  if not explicit and not _cluster_detected():
    return
  try:   # CPU devices need a collectives backend to talk across processes
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  except (AttributeError, ValueError):
    pass
  if explicit:
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  else:
    jax.distributed.initialize()


def any_process(flag: bool) -> bool:
  """True on every process when `flag` is True on at least one (a collective: every
  process must call it at the same point)."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils
  return bool(np.max(multihost_utils.process_allgather(np.int32(flag))))


def fetch(tree):
  """Host numpy copies of global arrays (every process gets the whole value)."""
  if jax.process_count() == 1:
    return tree
  from jax.experimental import multihost_utils
  return multihost_utils.process_allgather(tree, tiled=True)


def barrier(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)
