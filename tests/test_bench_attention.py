"""The benchmark script runs end to end and writes what BENCHMARKS.md is made from."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_bench_attention_writes_json_markdown_and_plot(tmp_path):
  cmd = [sys.executable, os.path.join(ROOT, 'scripts', 'bench_attention.py'), '--lengths=64,128',
         '--candidates=flash,local,jax.nn', '--repeats=1', '--heads=2',
         '--head_dim=16', '--rss_lengths=128', f'--out_dir={tmp_path}']
  subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, timeout=600)
  report = json.loads((tmp_path / 'bench.json').read_text())
  rows = report['rows']
  assert len(rows) == 2 * 2 * 2 * 3  # passes x causal x lengths x candidates
  flash = [r for r in rows if r['candidate'] == 'flash']
  assert all(r['seconds'] > 0 and r['temp_bytes'] > 0 and r['gflops'] > 0 for r in flash)
  assert all(r['speedup_vs_jax.nn'] > 0 for r in flash)
  assert all(r['peak_rss_bytes'] > 0 for r in rows if r['length'] == 128)
  assert 'cpu' in report['machine'] and report['command'].startswith('python ')
  table = (tmp_path / 'bench.md').read_text()
  assert '| fwd_bwd | yes | 128 | flash |' in table
  assert (tmp_path / 'bench.png').stat().st_size > 10_000
