"""Running the points on this machine: `parallel` train.py processes at a time, each pinned
to its own share of the CPUs and, with --gpus_per_point, given its own GPUs; what each
did is recorded by sweeping/outcomes.py."""

from __future__ import annotations

import os
import socket
import subprocess
import time

from attention import UserError
from sweeping import outcomes
from sweeping.points import Point


def available_cpus() -> list[int]:
  if hasattr(os, 'sched_getaffinity'):
    return sorted(os.sched_getaffinity(0))
  return list(range(os.cpu_count() or 1))


def cpu_sets(parallel: int, per_point: int = 0) -> list[list[int]]:
  """One CPU set per concurrent run: `per_point` CPUs each, or (0) an equal share, round
  robin when there are more runs than CPUs. XLA sizes its thread pools by the CPUs a
  process may use (its affinity, which no XLA flag overrides), so pinning keeps parallel
  runs off each other's cores."""
  cpus = available_cpus()
  share = per_point or max(1, len(cpus) // parallel)
  return [[cpus[(i * share + j) % len(cpus)] for j in range(share)] for i in range(parallel)]


def visible_gpus() -> list[str]:
  """The GPUs this sweep may hand out: CUDA_VISIBLE_DEVICES when it is set (the sweep's own
  share of a bigger machine), else every GPU nvidia-smi lists, else none."""
  if 'CUDA_VISIBLE_DEVICES' in os.environ:
    return [d.strip() for d in os.environ['CUDA_VISIBLE_DEVICES'].split(',') if d.strip()]
  try:
    out = subprocess.run(['nvidia-smi', '--query-gpu=index', '--format=csv,noheader'],
                         capture_output=True, text=True, timeout=30)
  except (OSError, subprocess.TimeoutExpired):
    return []
  return [line.strip() for line in out.stdout.splitlines() if line.strip()] if (
      out.returncode == 0) else []


def gpu_sets(gpus: list[str], per_point: int, parallel: int) -> list[list[str]]:
  """Disjoint sets of `per_point` GPUs, one per concurrent run; `parallel` 0 is as many
  as there are GPUs for. GPUs are never shared: a run that does not fit is an error."""
  if not per_point:
    return [[] for _ in range(parallel)]
  fits = len(gpus) // per_point
  if fits == 0:
    raise UserError(f'--gpus_per_point={per_point}: this machine has {len(gpus)} GPU(s) '
                    f'{",".join(gpus) or "(none found by CUDA_VISIBLE_DEVICES or nvidia-smi)"}')
  if parallel > fits:
    raise UserError(f'--parallel={parallel} with --gpus_per_point={per_point} needs '
                    f'{parallel * per_point} GPUs; there are {len(gpus)} ({",".join(gpus)})')
  return [gpus[i * per_point:(i + 1) * per_point] for i in range(parallel or fits)]


def point_env(cpus: list[int], gpus: list[str] | None, parallel: int) -> dict:
  # OMP_NUM_THREADS: OpenMP and BLAS pools (numpy, sentencepiece) to the run's CPU share.
  # PYTHONUNBUFFERED: the log's last line is then train.py's error, not late stdout.
  env = dict(os.environ, OMP_NUM_THREADS=str(len(cpus)), PYTHONUNBUFFERED='1')
  if gpus is not None:
    env['CUDA_VISIBLE_DEVICES'] = ','.join(gpus)
  elif parallel > 1:   # runs sharing one accelerator: each takes memory as it needs it
    env['XLA_PYTHON_CLIENT_PREALLOCATE'] = 'false'
  return env


def start(point: Point, cpus: list[int], gpus: list[str] | None,
          parallel: int) -> tuple[subprocess.Popen, object]:
  os.makedirs(point.workdir, exist_ok=True)
  log = open(outcomes.log_path(point), 'w')
  pin = getattr(os, 'sched_setaffinity', None)
  proc = subprocess.Popen(point.command, stdout=log, stderr=subprocess.STDOUT,
                          env=point_env(cpus, gpus, parallel),
                          preexec_fn=(lambda: pin(0, cpus)) if pin else None)
  return proc, log


def exit_and_usage(proc: subprocess.Popen) -> tuple[int, dict] | None:
  """(exit status, usage) of a run that has ended, else None; the usage is the run's own,
  whatever else this machine runs (outcomes.usage)."""
  pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
  if pid == 0:
    return None
  proc.returncode = os.waitstatus_to_exitcode(status)
  return proc.returncode, outcomes.usage(usage)


def concurrency(parallel: int, cpus_per_point: int, gpus_per_point: int, points: int) -> int:
  """How many points run at once: --parallel, else as many as the CPUs (or the GPUs, with
  --gpus_per_point) have room for, and never more than there are points to run."""
  if parallel:
    return parallel
  fits = len(available_cpus()) // cpus_per_point if cpus_per_point else len(available_cpus())
  if gpus_per_point:
    fits = min(fits, len(visible_gpus()) // gpus_per_point)
  return max(1, min(fits, points))


def run_points(points: list[Point], parallel: int, cpus_per_point: int = 0,
               gpus_per_point: int = 0) -> None:
  """Runs the points not done yet, `parallel` (0: as many as fit) at a time, each on its
  own CPU set and GPU set."""
  todo = outcomes.to_run(points)
  parallel = concurrency(parallel, cpus_per_point, gpus_per_point, len(todo))
  gpus = gpu_sets(visible_gpus(), gpus_per_point, parallel) if gpus_per_point else None
  free = list(zip(cpu_sets(parallel, cpus_per_point), gpus or [None] * parallel))
  running = {}   # Popen -> (point, (cpus, gpus), log file, start time)
  count, total = 0, len(todo)
  host = socket.gethostname()
  try:
    while todo or running:
      while todo and free:
        point, devices = todo.pop(0), free.pop(0)
        count += 1
        print(f'[{count}/{total}] {point.name}: started', flush=True)
        proc, log = start(point, *devices, parallel)
        running[proc] = (point, devices, log, time.time())
      time.sleep(0.2)
      for proc in list(running):
        ended = exit_and_usage(proc)
        if ended is None:
          continue
        point, devices, log, began = running.pop(proc)
        log.close()
        free.append(devices)
        cpus, point_gpus = devices
        outcomes.finish(point, ended[0], time.time() - began, launcher='local', host=host,
                        cpus=cpus, gpus=point_gpus, **ended[1])
  finally:
    # Ctrl-C reaches the runs too (one process group) and train.py checkpoints before it
    # exits: wait for that, so the sweep ends after its runs do.
    for proc in running:
      proc.wait()
