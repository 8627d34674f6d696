"""Running a job: its commands in order in DIR/<job>, their output in job.log, a done.json
when all succeeded, and the job's wall time, shown beside its claims but never compared."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

from attention.bench import machine
from reproducing.spec import Job, load

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WALL_TIMES = 'wall_times.json'


def missing_packages(job: Job) -> list[str]:
  return [name for name in job.needs if importlib.util.find_spec(name) is None]


def run_job(job: Job, workdir: str, rerun: bool = False) -> str:
  """Runs a job unless done; 'done', 'ran', 'skipped: ...' or 'failed: ...'."""
  out = os.path.join(workdir, job.name)
  done = os.path.join(out, 'done.json')
  if os.path.exists(done) and not rerun:
    return 'done'
  if missing := missing_packages(job):
    return f'skipped: needs {", ".join(missing)} (pip install -e ".[bench]")'
  if rerun:   # from scratch; otherwise an interrupted sweep or run resumes where it was
    shutil.rmtree(out, ignore_errors=True)
  os.makedirs(out, exist_ok=True)
  env = dict(os.environ, **dict(job.env))
  start = time.time()
  code = _run_commands(job, out, env)
  # A resumed job's wall time is the sum of its runs, so that it stays the whole job's; one
  # that starts over counts its last run only.
  wall_s = _add_wall_seconds(out, time.time() - start, job.resumes)
  if code:
    return f'failed: exit {code}, see {os.path.join(out, "job.log")}'
  with open(done, 'w') as f:
    json.dump({'commands': [list(c) for c in job.commands], 'wall_s': wall_s}, f)
  return 'ran'


def _add_wall_seconds(out: str, seconds: float, resumes: bool) -> float:
  path = os.path.join(out, 'wall_s.json')
  try:
    with open(path) as f:
      seconds += json.load(f) if resumes else 0.0
  except (OSError, ValueError):
    pass
  with open(path, 'w') as f:
    json.dump(seconds, f)
  return seconds


def _run_commands(job: Job, out: str, env: dict) -> int:
  """Runs the job's commands in order; the first non-zero exit status, else 0."""
  for command in job.commands:
    argv = [part.replace('{out}', out) for part in command]
    print(f'[{job.name}] {" ".join(argv)}', flush=True)
    with open(os.path.join(out, 'job.log'), 'a') as log:
      if job.stdout:   # the command prints its JSON: stdout to that file, stderr to the log
        with open(os.path.join(out, job.stdout), 'w') as stdout:
          code = subprocess.run(argv, cwd=ROOT, env=env, stdout=stdout, stderr=log).returncode
      else:            # the log, and the console too: long jobs show their progress
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors='replace')
        for line in proc.stdout:
          log.write(line)
          sys.stdout.write(line)
        code = proc.wait()
    if code:
      return code
  return 0


def wall_time(job: Job, workdir: str, results: str) -> dict:
  """The job's wall time, this run's against the one recorded on this kind of machine:
  shown, never compared. They are absolute seconds on a VM whose speed drifts within a
  day, and only ratios taken inside one run are compared."""
  isa = machine.cpu()['isa']
  result = {'claim': f'{job.name}: wall time (s)', 'job': job.name, 'where': '',
            'tolerance': 'not compared', 'status': 'info'}
  recorded = load_wall_times(results).get(job.name, {}).get(isa)
  if recorded:
    result['recorded'] = recorded['seconds']
  try:
    result['now'] = float(load(os.path.join(workdir, job.name, 'done.json'))['wall_s'])
  except (OSError, KeyError, ValueError, TypeError):
    pass
  return result


def load_wall_times(results: str) -> dict:
  """results/wall_times.json: {job: {isa: {'seconds', 'date', 'cpu_id'}}}."""
  try:
    return load(os.path.join(results, WALL_TIMES))
  except (OSError, ValueError):
    return {}


def record_wall_time(job: Job, workdir: str, results: str) -> None:
  done = load(os.path.join(workdir, job.name, 'done.json'))
  if 'wall_s' not in done:   # finished by a reproduce.py that did not time its jobs
    print(f'[{job.name}] no wall time to record')
    return
  cpu = machine.cpu()
  times = load_wall_times(results)
  times.setdefault(job.name, {})[cpu['isa']] = {
      'seconds': round(float(done['wall_s']), 1), 'cpu_id': cpu['cpu_id'],
      'date': time.strftime('%Y-%m-%d', time.gmtime(os.path.getmtime(
          os.path.join(workdir, job.name, 'done.json'))))}
  with open(os.path.join(results, WALL_TIMES), 'w') as f:
    json.dump(times, f, indent=1, sort_keys=True)
  print(f'recorded {os.path.join(results, WALL_TIMES)} ({job.name})')
