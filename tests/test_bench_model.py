"""scripts/bench_model.py against length: the child processes it runs, what a row says when
a length cannot run, the growth exponents, and the files it writes."""

import json

import pytest

from attention.bench import length_scan
from tests import e2e


def row(kernel, length, rows, step_s, temp=2**20, rss=2**28):
  return {'kernel': kernel, 'length': length, 'rows': rows, 'train_step_s': step_s,
          'temp_bytes': temp, 'peak_rss_bytes': rss}


def test_rows_hold_a_fixed_number_of_tokens():
  assert [length_scan.rows_for(n, 8192) for n in (256, 1024, 4096, 16384)] == [32, 8, 2, 1]


def test_exponents_are_the_log_log_slope_per_row():
  rows = [row('quad', 256, 32, 32 * 1.0), row('quad', 1024, 8, 8 * 16.0),
          row('lin', 256, 32, 32 * 1.0), row('lin', 1024, 8, 8 * 4.0),
          row('lin', 4096, 2, 2 * 16.0)]
  slopes = length_scan.exponents(rows)
  assert slopes['quad'] == pytest.approx(2.0) and slopes['lin'] == pytest.approx(1.0)


def test_a_length_that_cannot_run_is_a_row_that_says_why():
  rows = [row('reference', 1024, 8, 0.5),
          {'kernel': 'reference', 'length': 16384, 'rows': 1, 'temp_bytes': 40 * 2**30,
           length_scan.SKIPPED: 'needs 40.0 GiB of temporaries, above --memory_limit_gib=8'},
          {'kernel': 'flash', 'length': 16384, 'rows': 1, 'error': 'killed (out of memory)'}]
  lines = length_scan.markdown(rows).splitlines()
  assert len(lines) == 2 + 3
  assert '| reference | 16384 | 1 | cannot run: needs 40.0 GiB' in lines[3]
  assert '| 40,960 |' in lines[3]
  assert 'cannot run: killed (out of memory)' in lines[4]
  assert length_scan.exponents(rows) == {}   # one measured length is no slope


@pytest.mark.slow
def test_lengths_scan_writes_json_table_and_plot(tmp_path):
  out_dir = tmp_path / 'lengths'
  out = e2e.run('scripts/bench_model.py', '--config=configs/default.py:model=tiny',
                '--lengths=32,64', '--kernels=linear', '--batch_tokens=128',
                '--target_length=4', '--repeats=2', f'--out_dir={out_dir}', timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  summary = json.loads((out_dir / 'lengths.json').read_text())
  rows = summary['rows']
  assert [(r['kernel'], r['length'], r['rows']) for r in rows] == [('linear', 32, 4),
                                                                   ('linear', 64, 2)]
  for r in rows:
    assert r['train_step_s'] > 0 and r['temp_bytes'] > 0 and r['peak_rss_bytes'] > 2**26
    assert r['batch'] == r['rows']   # the child's batch: batch_tokens / length rows
  assert 'linear' in summary['exponents'] and summary['batch_tokens'] == 128
  assert len((out_dir / 'lengths.md').read_text().splitlines()) == 4
  assert (out_dir / 'lengths.png').stat().st_size > 0


@pytest.mark.slow
def test_a_step_over_the_memory_limit_is_reported_not_run():
  out = e2e.run('scripts/bench_model.py', '--config=configs/default.py:model=tiny',
                '--length=32', '--batch=2', '--skip=greedy,uncached,beam',
                '--memory_limit_gib=1e-6', '--json', timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result['temp_bytes'] > 0 and 'train_step_s' not in result
  assert result[length_scan.SKIPPED].startswith('needs ') and '--memory_limit_gib=1e-06' in \
      result[length_scan.SKIPPED]
