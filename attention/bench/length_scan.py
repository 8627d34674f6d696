"""The train step against sequence length, one kernel and one length per process:
scripts/bench_model.py --lengths runs itself once per (kernel, length) with --json, so
that each measurement's peak RSS is its own and a length that does not fit in memory
costs one child, not the benchmark. This module holds the parent's side: the child's
command, what it reported (or why it could not run), the table and the plot.

Batches hold a fixed number of source tokens (rows = batch_tokens / length, at least
one), as the long-range configs size them, so that every length does the same amount of
feed-forward work per step and what grows is attention's share."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

# The child reports 'skipped' instead of running a step whose compiled temporaries exceed
# the memory budget: an allocation that large would swap or be killed, not be timed.
SKIPPED = 'skipped'


def rows_for(length: int, batch_tokens: int) -> int:
  return max(1, batch_tokens // length)


def child_command(script: str, config_args: list[str], kernel: str, length: int,
                  batch_tokens: int, target_length: int, repeats: int,
                  memory_limit_gib: float) -> list[str]:
  return [sys.executable, script, *config_args, f'--config.model.kernel={kernel}',
          f'--length={length}', f'--batch={rows_for(length, batch_tokens)}',
          f'--target_length={target_length}', f'--repeats={repeats}',
          f'--memory_limit_gib={memory_limit_gib}', '--skip=greedy,uncached,beam', '--json']


def measure(command: list[str], timeout_s: float) -> dict:
  """One child's JSON line, or {'error': why} when it could not run (out of memory, a
  crash, the time limit): the row then says so instead of disappearing."""
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get('JAX_PLATFORMS', 'cpu'))
  try:
    out = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env)
  except subprocess.TimeoutExpired:
    return {'error': f'ran past {timeout_s:.0f} s'}
  lines = [line for line in out.stdout.splitlines() if line.startswith('{')]
  if out.returncode == 0 and lines:
    return json.loads(lines[-1])
  if out.returncode in (-9, 137):
    return {'error': 'killed (out of memory)'}
  tail = (out.stderr.strip().splitlines() or [f'exit status {out.returncode}'])[-1]
  return {'error': tail[-200:]}


def cell(row: dict) -> str:
  if 'error' in row:
    return f'cannot run: {row["error"]}'
  if row.get(SKIPPED):
    return f'cannot run: {row[SKIPPED]}'
  return ''


def markdown(rows: list[dict]) -> str:
  """One line per kernel and length: step time, tokens/s, compiled temporaries, peak RSS,
  and the step time's growth from the previous length of the same kernel."""
  lines = ['| kernel | length | rows | train step (ms) | growth | source tokens/s | '
           'temporaries (MiB) | peak RSS (MiB) |', '|---|---:|---:|---:|---:|---:|---:|---:|']
  previous = {}
  for row in rows:
    kernel, length = row['kernel'], row['length']
    why = cell(row)
    if why:
      temp = row.get('temp_bytes')
      temp = f'{temp / 2**20:,.0f}' if temp else ''
      lines.append(f'| {kernel} | {length} | {row["rows"]} | {why} | | | {temp} | |')
      previous.pop(kernel, None)
      continue
    step_ms = row['train_step_s'] * 1e3
    growth = ''
    if kernel in previous:
      before_length, before_ms = previous[kernel]
      growth = f'{step_ms / before_ms:.2f}x per {length // before_length}x'
    previous[kernel] = (length, step_ms)
    lines.append(f'| {kernel} | {length} | {row["rows"]} | {step_ms:,.1f} | {growth} | '
                 f'{row["rows"] * length / row["train_step_s"]:,.0f} | '
                 f'{row["temp_bytes"] / 2**20:,.0f} | {row["peak_rss_bytes"] / 2**20:,.0f} |')
  return '\n'.join(lines) + '\n'


def exponents(rows: list[dict]) -> dict[str, float]:
  """Per kernel, the slope of log(step time) against log(length) between its shortest and
  longest measured lengths: 1 is linear, 2 quadratic (per row; rows shrink as 1/length,
  so per-token cost grows by one power less)."""
  out = {}
  for kernel in dict.fromkeys(r['kernel'] for r in rows):
    done = [r for r in rows if r['kernel'] == kernel and not cell(r)]
    if len(done) >= 2:
      a, b = done[0], done[-1]
      per_row = [r['train_step_s'] / r['rows'] for r in (a, b)]
      out[kernel] = math.log(per_row[1] / per_row[0]) / math.log(b['length'] / a['length'])
  return out


def plot(rows: list[dict], path: str) -> str | None:
  """Log-log: step time per row and compiled temporaries against length, one line per
  kernel; lengths a kernel could not run are left off its line (the table names them).
  None when nothing ran."""
  if all(cell(r) for r in rows):
    return None
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(10, 4))
  for kernel in dict.fromkeys(r['kernel'] for r in rows):
    done = [r for r in rows if r['kernel'] == kernel and not cell(r)]
    lengths = [r['length'] for r in done]
    time_ax.plot(lengths, [r['train_step_s'] / r['rows'] * 1e3 for r in done], 'o-', label=kernel)
    memory_ax.plot(lengths, [r['temp_bytes'] / 2**20 for r in done], 'o-', label=kernel)
  for ax, label in ((time_ax, 'train step per row (ms)'),
                    (memory_ax, 'compiled temporaries (MiB)')):
    ax.set_xscale('log', base=2)
    ax.set_yscale('log')
    ax.set_xlabel('source length (tokens)')
    ax.set_ylabel(label)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
