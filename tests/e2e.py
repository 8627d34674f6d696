"""Helpers for tests that run train.py / eval.py as a user would (a fresh process)."""

import os
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


def run(script, *args, timeout=600, cache=None, devices=None):
  env = environment(cache, devices)
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
