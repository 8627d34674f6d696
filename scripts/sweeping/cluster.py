"""Running the points on a Ray cluster: each point is one Ray task that runs the point's
train.py command, asking for --cpus_per_point CPUs and --gpus_per_point GPUs, so Ray
places the points over the cluster's nodes and starts each when its resources are free.

The cluster is the one --ray_address names ('auto': the one `ray start` made on this
machine; 'HOST:PORT' or 'ray://HOST:PORT' another), or, without it, one started for the
sweep on this machine and stopped after it. Every node runs the same command, so the
checkout, its Python environment, the data and the sweep directory must be at the same
paths on all of them (a shared file system); the runs write there and this process reads
their logs and results there.

Ctrl-C cancels the running points the way a preemption stops a run (SIGTERM: train.py
checkpoints and exits), waits for their processes to end, and leaves finished points as
they are; a re-run resumes the others. A point whose Ray worker or node is lost is
recorded as failed with Ray's error, and a re-run resumes it likewise."""

from __future__ import annotations

import os
import socket
import sys
import time

from attention import UserError
from sweeping import node, outcomes
from sweeping.local import available_cpus
from sweeping.node import Run
from sweeping.points import Point

# The local cluster's object store: points pass nothing through it but a few numbers.
OBJECT_STORE_BYTES = 100 * 2**20
POLL_S = 0.5
CLIENT_ATTEMPTS = 3


def run_command(command: list[str], cwd: str, log_path: str, cpus: int) -> dict:
  """The Ray task of one point (on whichever node Ray chose): runs `command` to its end
  and returns what it did (sweeping/node.py) and the GPUs Ray gave it. Ray cancels a task
  by raising KeyboardInterrupt in it: the run is then stopped as by a preemption, and the
  task ends once it has checkpointed and exited."""
  import ray
  out = Run(command, cwd, log_path, cpus).wait()
  return dict(out, gpus=[str(g) for g in ray.get_gpu_ids()])


def require_ray():
  try:
    import ray
  except ImportError:
    raise UserError("--launcher=ray needs Ray: pip install -e '.[cluster]'") from None
  return ray


def connect(address: str | None):
  """Joins the cluster at `address`, or starts one here for the sweep; returns ray."""
  ray = require_ray()
  # The task travels by value (a class or function of a module registered so is pickled
  # whole): a worker imports nothing of this checkout but what the command it runs imports.
  ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
  ray.cloudpickle.register_pickle_by_value(node)
  quiet = dict(log_to_driver=False, logging_level='warning')
  if address not in (None, 'auto'):
    reachable(address)
  # Ray Client's server starts a process of its own per client, forking a process that
  # runs gRPC threads; now and then that process dies at birth and the client gets
  # "Initialization failure from server". The next attempt gets a new one.
  attempts = CLIENT_ATTEMPTS if address and address.startswith('ray://') else 1
  for attempt in range(attempts):
    try:
      if address is None:
        ray.init(num_cpus=len(available_cpus()), include_dashboard=False,
                 object_store_memory=OBJECT_STORE_BYTES, **quiet)
      else:
        ray.init(address=address, **quiet)
      return ray
    except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError
      why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      if attempt + 1 < attempts and 'Initialization failure' in why:
        time.sleep(2)
        continue
      where = f'--ray_address={address}' if address else '--launcher=ray'
      raise UserError(f'{where}: cannot start or join a Ray cluster ({why})') from None


def reachable(address: str) -> None:
  """UserError unless something listens at HOST:PORT: Ray itself retries an address that
  refuses for a minute or more before it gives up."""
  host, _, port = address.removeprefix('ray://').rpartition(':')
  try:
    socket.create_connection((host, int(port)), timeout=10).close()
  except OSError as e:
    raise UserError(f'--ray_address={address}: nothing answers at {host}:{port} '
                    f'({e.strerror or e}); is the cluster started?') from None


def run_points(points: list[Point], address: str | None, parallel: int = 0,
               cpus_per_point: int = 0, gpus_per_point: int = 0) -> None:
  """Runs the points not done yet as Ray tasks, at most `parallel` (0: any number) at once
  beyond what the cluster's resources allow. Starts no cluster when every point is done."""
  todo = outcomes.to_run(points)
  if not todo:
    return
  ray = connect(address)
  cpus = cpus_per_point or 1
  # No retries: a task whose worker or node is lost is recorded as failed like a run that
  # fails, and a re-run of the sweep resumes it from its checkpoint.
  task = ray.remote(num_cpus=cpus, num_gpus=gpus_per_point, max_retries=0)(run_command)
  limit = parallel or len(todo)
  running = {}   # ObjectRef -> (point, submission time)
  count, total = 0, len(todo)
  try:
    while todo or running:
      while todo and len(running) < limit:
        point = todo.pop(0)
        count += 1
        os.makedirs(point.workdir, exist_ok=True)
        ref = task.remote(point.command, os.getcwd(), os.path.abspath(outcomes.log_path(point)),
                          cpus)
        running[ref] = (point, time.time())
        print(f'[{count}/{total}] {point.name}: submitted', flush=True)
      ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
      for ref in ready:
        point, submitted = running.pop(ref)
        try:
          out = ray.get(ref)
        except ray.exceptions.RayError as e:   # the task, not the run, failed: a lost node
          line = str(e).strip().splitlines()[0] if str(e).strip() else ''
          outcomes.finish(point, -1, time.time() - submitted, error=f'ray: {type(e).__name__} '
                          f'{line}'.strip(), launcher='ray')
          continue
        outcomes.finish(point, out['returncode'], out['wall_s'], launcher='ray',
                        host=out['host'], gpus=out['gpus'], **outcomes.usage(out['usage']))
  except KeyboardInterrupt:
    for ref in running:
      ray.cancel(ref)
    # A cancelled task resolves once its run has exited and been reaped (run_command waits
    # for it); the lock check then covers a run whose task was lost on the way.
    ray.wait(list(running), num_returns=len(running))
    outcomes.wait_for_runs([point for point, _ in running.values()])
    raise
  finally:
    ray.shutdown()
