"""Helpers for tests that run train.py / eval.py as a user would (a fresh process)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script, *args, timeout=600, cache=None):
  env = dict(os.environ, PYTHONPATH=ROOT, ATTENTION_COMPILATION_CACHE=cache or 'off')
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
