"""Running the points on this machine: `parallel` train.py processes at a time, each pinned
to its own share of the CPUs, its output in DIR/<point>/sweep.log and its outcome in
DIR/<point>/sweep.json; finished points are skipped, so a re-run resumes a sweep."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time

from sweeping.points import Point, is_done


def available_cpus() -> list[int]:
  if hasattr(os, 'sched_getaffinity'):
    return sorted(os.sched_getaffinity(0))
  return list(range(os.cpu_count() or 1))


def cpu_sets(parallel: int) -> list[list[int]]:
  """One CPU set per concurrent run (round robin when there are more runs than CPUs).
  XLA sizes its thread pools by the CPUs a process may use (its affinity, which no XLA flag
  overrides), so pinning keeps parallel runs off each other's cores."""
  cpus = available_cpus()
  share = max(1, len(cpus) // parallel)
  return [[cpus[(i * share + j) % len(cpus)] for j in range(share)] for i in range(parallel)]


def point_env(cpus: list[int], parallel: int) -> dict:
  # OMP_NUM_THREADS: OpenMP and BLAS pools (numpy, sentencepiece) to the run's CPU share.
  # PYTHONUNBUFFERED: the log's last line is then train.py's error, not late stdout.
  env = dict(os.environ, OMP_NUM_THREADS=str(len(cpus)), PYTHONUNBUFFERED='1')
  if parallel > 1:   # runs sharing one accelerator: each takes memory as it needs it
    env['XLA_PYTHON_CLIENT_PREALLOCATE'] = 'false'
  return env


def last_line(path: str) -> str:
  """The last non-empty line of a log (progress bars redraw with \\r: their last state)."""
  with open(path, errors='replace') as f:
    lines = [line.strip() for line in re.split(r'[\r\n]', f.read()) if line.strip()]
  return lines[-1] if lines else ''


def start(point: Point, cpus: list[int], parallel: int) -> tuple[subprocess.Popen, object]:
  os.makedirs(point.workdir, exist_ok=True)
  log = open(os.path.join(point.workdir, 'sweep.log'), 'w')
  pin = getattr(os, 'sched_setaffinity', None)
  proc = subprocess.Popen(point.command, stdout=log, stderr=subprocess.STDOUT,
                          env=point_env(cpus, parallel),
                          preexec_fn=(lambda: pin(0, cpus)) if pin else None)
  return proc, log


def finish(point: Point, returncode: int, wall_s: float) -> dict:
  """Writes DIR/<point>/sweep.json: the status, wall time and error of this attempt."""
  done = returncode == 0 and is_done(point)
  error = ''
  if not done:
    error = ((last_line(os.path.join(point.workdir, 'sweep.log')) or f'exit status {returncode}')
             if returncode else
             'exited before the end (no eval/test.json); run the sweep again to resume')
  info = dict(status='done' if done else 'failed', returncode=returncode,
              wall_s=round(wall_s, 1), error=error, overrides=point.overrides,
              command=shlex.join(point.command))
  with open(os.path.join(point.workdir, 'sweep.json'), 'w') as f:
    json.dump(info, f, indent=1)
  return info


def run_points(points: list[Point], parallel: int) -> None:
  """Runs the points not done yet, `parallel` at a time, each on its own CPU set."""
  todo = []
  for point in points:
    if is_done(point):
      print(f'{point.name}: done already, skipped')
    else:
      todo.append(point)
  free = cpu_sets(parallel)
  running = {}   # Popen -> (point, cpus, log file, start time)
  count, total = 0, len(todo)
  try:
    while todo or running:
      while todo and free:
        point, cpus = todo.pop(0), free.pop(0)
        count += 1
        print(f'[{count}/{total}] {point.name}: started', flush=True)
        proc, log = start(point, cpus, parallel)
        running[proc] = (point, cpus, log, time.time())
      time.sleep(0.2)
      for proc in [p for p in running if p.poll() is not None]:
        point, cpus, log, began = running.pop(proc)
        log.close()
        free.append(cpus)
        info = finish(point, proc.returncode, time.time() - began)
        detail = f': {info["error"]}' if info['error'] else ''
        print(f'{point.name}: {info["status"]} in {info["wall_s"]:.0f} s{detail}', flush=True)
  finally:
    # Ctrl-C reaches the runs too (one process group) and train.py checkpoints before it
    # exits: wait for that, so the sweep ends after its runs do.
    for proc in running:
      proc.wait()
