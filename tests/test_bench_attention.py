"""The benchmark script runs end to end and writes what BENCHMARKS.md is made from."""

import json
import math
import os
import subprocess
import sys

import pytest

from attention.bench import op_profile

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


@pytest.mark.slow
def test_heads_over_two_forced_devices(tmp_path):
  """'@heads' candidates run with the heads split over the process's devices (here two
  forced host devices), and the JSON says how many devices it ran with."""
  cmd = [sys.executable, os.path.join(ROOT, 'scripts', 'bench_attention.py'), '--lengths=40',
         '--candidates=flash,flash@heads,jax.nn@heads', '--repeats=1', '--heads=2',
         '--head_dim=16', '--rss_lengths=', '--causal=true', f'--out_dir={tmp_path}']
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2')
  subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, timeout=600, env=env)
  report = json.loads((tmp_path / 'bench.json').read_text())
  assert report['machine']['devices'] == ['cpu', 'cpu']
  rows = {(r['candidate'], r['pass']): r for r in report['rows']}
  assert sorted(rows) == sorted((c, p) for c in ('flash', 'flash@heads', 'jax.nn@heads')
                                for p in ('fwd', 'fwd_bwd'))
  assert all(r['seconds'] > 0 and r['gflops'] > 0 for r in rows.values())
  # Process CPU time advances in scheduler ticks, so for these sub-millisecond calls the
  # ratio reads 0 or several cores: its value means something only in the recorded long
  # runs (BENCHMARKS.md). Here: every row has one, a finite number, and the table shows it.
  table = (tmp_path / 'bench.md').read_text()
  for r in rows.values():
    assert isinstance(r['cores_busy'], float) and math.isfinite(r['cores_busy']), r
    assert f"{r['cores_busy']:.2f}" in table


@pytest.mark.slow
@pytest.mark.skipif(not op_profile.available(), reason='this jax cannot read its traces')
def test_profile_splits_time_over_xla_operations(tmp_path):
  """--profile writes each JAX candidate's time by operation category, torch left out."""
  cmd = [sys.executable, os.path.join(ROOT, 'scripts', 'bench_attention.py'), '--profile',
         '--lengths=40', '--candidates=flash:16x16,torch', '--passes=fwd_bwd', '--causal=true',
         '--repeats=1', '--heads=2', '--head_dim=16', f'--out_dir={tmp_path}']
  subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, timeout=600)
  rows = json.loads((tmp_path / 'profile.json').read_text())['rows']
  assert [r['candidate'] for r in rows] == ['flash:16x16']
  matmul = rows[0]['categories']['matmul']
  # 40 padded to 3 blocks of 16; causal visits 1 + 2 + 3 = 6 of the 9 tiles, with 2
  # products forward and 5 backward (recomputed S, dP, dV, dK, dQ) of 16 x 16 x 16 per
  # head: every executed product is counted, and the skipped tiles are not.
  assert matmul['gflop'] * 1e9 == pytest.approx(6 * 7 * 2 * (2 * 16 * 16 * 16))
  assert matmul['gflops'] > 0 and rows[0]['ops'] and rows[0]['wall_ms'] > 0
  assert '| fwd_bwd | yes | 40 | flash:16x16 |' in (tmp_path / 'profile.md').read_text()


@pytest.mark.slow
def test_ab_kernel_times_a_revision_against_the_working_tree(tmp_path):
  """scripts/ab_kernel.py loads flash as it was at HEAD beside the working tree's and times
  both; a revision git does not know is one line and a non-zero exit."""
  if subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True).returncode:
    pytest.skip('not a git checkout')
  script = os.path.join(ROOT, 'scripts', 'ab_kernel.py')
  cmd = [sys.executable, script, '--rev=HEAD', '--lengths=24', '--causal=true',
         '--passes=fwd', '--heads=2', '--head_dim=16', '--repeats=1',
         f'--json={tmp_path / "ab.json"}']
  subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, timeout=600)
  rows = json.loads((tmp_path / 'ab.json').read_text())['rows']
  assert [(r['pass'], r['causal'], r['length']) for r in rows] == [('fwd', True, 24)]
  assert all(r['old_ms'] > 0 and r['new_ms'] > 0 and r['rev'] == 'HEAD' for r in rows)
  bad = subprocess.run([sys.executable, script, '--rev=no-such-revision'], capture_output=True,
                       text=True, cwd=ROOT, timeout=600)
  assert bad.returncode != 0 and 'Traceback' not in bad.stderr
  assert "git show no-such-revision:attention/kernels/flash.py failed" in bad.stderr
