"""Helpers for tests that run train.py / eval.py as a user would (a fresh process)."""

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One persistent compilation cache for every command the tests run, as a user's runs
# share ~/.cache/attention/jax: the same tiny model compiles once per suite, not per run.
SHARED_CACHE = os.path.join(tempfile.gettempdir(), f'attention-tests-jax-cache-{os.getuid()}')


def environment(cache=None, devices=None):
  """The environment of a user's command: compilation cache `cache` (default: the
  suite's shared one; 'off' disables it), and `devices` forced CPU devices when given."""
  env = dict(os.environ, PYTHONPATH=ROOT, ATTENTION_COMPILATION_CACHE=cache or SHARED_CACHE)
  if devices:
    env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  return env


def run(script, *args, timeout=600, cache=None, devices=None, env=None):
  """`script` run with `args` as a user would, `env` added to its environment."""
  env = {**environment(cache, devices), **(env or {})}
  return subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)], cwd=ROOT,
                        capture_output=True, text=True, env=env, timeout=timeout)


def snapshot(directory):
  """{relative path: (size, mtime)} of every file under directory."""
  out = {}
  for base, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(base, name)
      st = os.stat(path)
      out[os.path.relpath(path, directory)] = (st.st_size, st.st_mtime_ns)
  return out


def once(directory, build):
  """(directory, build(directory)) where build ran once for all test processes: its
  JSON-able result is kept in a marker written when it completes, a directory without
  one is built anew, and a lock makes other processes wait for the one building."""
  directory.parent.mkdir(parents=True, exist_ok=True)
  marker = directory / '.built.json'
  with open(f'{directory}.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not marker.exists():
      shutil.rmtree(directory, ignore_errors=True)
      directory.mkdir(parents=True)
      result = build(directory)
      marker.write_text(json.dumps(result))
  return directory, json.loads(marker.read_text())
