"""What every launcher records of a point: its output in DIR/<point>/sweep.log (written by
the run), and its outcome in DIR/<point>/sweep.json: status, wall time, the error (the
log's last line), where it ran. Points whose eval/test.json exists are done and skipped,
so that a re-run resumes a sweep whichever launcher ran it before."""

from __future__ import annotations

import json
import os
import re
import shlex
import time

from attention.training import workdir_lock
from sweeping.points import Point, is_done

LOG = 'sweep.log'


def log_path(point: Point) -> str:
  return os.path.join(point.workdir, LOG)


def usage(rusage) -> dict:
  """What sweep.json keeps of a finished run's resource usage (os.wait4's): its CPU
  seconds, user + system, and its peak resident memory (ru_maxrss, KiB on Linux)."""
  return {'cpu_s': round(rusage.ru_utime + rusage.ru_stime, 1),
          'peak_rss_mib': round(rusage.ru_maxrss / 1024)}


def to_run(points: list[Point], announce: bool = True) -> list[Point]:
  """The points not done yet, in order; says which are skipped."""
  todo = []
  for point in points:
    if not is_done(point):
      todo.append(point)
    elif announce:
      print(f'{point.name}: done already, skipped')
  return todo


def last_line(path: str) -> str:
  """The last non-empty line of a log (progress bars redraw with \\r: their last state)."""
  if not os.path.exists(path):
    return ''
  with open(path, errors='replace') as f:
    lines = [line.strip() for line in re.split(r'[\r\n]', f.read()) if line.strip()]
  return lines[-1] if lines else ''


def finish(point: Point, returncode: int, wall_s: float, error: str = '', **where) -> dict:
  """Writes DIR/<point>/sweep.json for this attempt and prints one line about it. `error`
  is the launcher's own (a lost node), else the log's last line when the run failed;
  `where` says where it ran (launcher, host, cpus, gpus) and what it used (usage())."""
  done = not error and returncode == 0 and is_done(point)
  if not done and not error:
    error = ((last_line(log_path(point)) or f'exit status {returncode}') if returncode else
             'exited before the end (no eval/test.json); run the sweep again to resume')
  info = dict(status='done' if done else 'failed', returncode=returncode,
              wall_s=round(wall_s, 1), error=error, overrides=point.overrides,
              command=shlex.join(point.command), **where)
  with open(os.path.join(point.workdir, 'sweep.json'), 'w') as f:
    json.dump(info, f, indent=1)
  detail = f': {error}' if error else ''
  print(f'{point.name}: {info["status"]} in {info["wall_s"]:.0f} s{detail}', flush=True)
  return info


def wait_for_runs(points: list[Point], poll_s: float = 0.5) -> None:
  """Returns once no run of `points` holds its run directory (train.py holds WORKDIR/lock
  until it has checkpointed and exited): what a launcher that stopped runs on other
  machines can see of them."""
  while any(workdir_lock.is_held(p.workdir) for p in points):
    time.sleep(poll_s)
