"""The tables and plot scripts/bench_attention.py writes from its rows: Markdown for timings
and for per-operation profiles, and a log-log plot of time and memory against length."""

from __future__ import annotations

PROFILE_CATEGORIES = ('matmul', 'exp', 'reduce', 'elementwise', 'data movement', 'control',
                      'other')


def profile_markdown(rows, header):
  cols = (['pass', 'causal', 'length', 'candidate', 'ms', 'overlap']
          + [f'{c} %' for c in PROFILE_CATEGORIES] + ['matmul GFLOP/s'])
  lines = [header, '', '| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
  for r in rows:
    cats = r['categories']
    cells = [r['pass'], 'yes' if r['causal'] else 'no', str(r['length']), r['candidate'],
             f"{r['wall_ms']:.1f}", f"{r['overlap']:.2f}"]
    cells += [f"{100 * cats[c]['share']:.1f}" if c in cats else '-' for c in PROFILE_CATEGORIES]
    rate = cats.get('matmul', {}).get('gflops')
    cells.append(f'{rate:.1f}' if rate else '-')
    lines.append('| ' + ' | '.join(cells) + ' |')
  lines += ['', '| candidate | pass | causal | op | category | calls | ms | GFLOP/s |',
            '|---|---|---|---|---|---|---|---|']
  for r in rows:
    for o in r['ops']:
      rate = f"{o['gflops']:.1f}" if o.get('gflops') else '-'
      lines.append(f"| {r['candidate']} | {r['pass']} | {'yes' if r['causal'] else 'no'} | "
                   f"{o['op']} | {o['category']} | {o['calls']} | {o['ms']:.1f} | {rate} |")
  return '\n'.join(lines) + '\n'


def fmt_bytes(n):
  if n is None:
    return '-'
  for unit in ('B', 'KiB', 'MiB', 'GiB'):
    if n < 1024 or unit == 'GiB':
      return f'{n:.0f} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
    n /= 1024


def markdown(rows, header):
  peers = [p for p in ('jax.nn', 'flax.linen', 'torch') if any(r['candidate'] == p for r in rows)]
  cols = (['pass', 'causal', 'length', 'candidate', 'ms', 'GFLOP/s', 'cores']
          + [f'x vs {p}' for p in peers] + ['XLA temp', 'peak RSS'])
  lines = [header, '', '| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
  for r in rows:
    ms = f"{r['seconds'] * 1e3:.1f}" if 'seconds' in r else f"({r.get('skipped', '-')})"
    cells = [r['pass'], 'yes' if r['causal'] else 'no', str(r['length']), r['candidate'], ms,
             f"{r['gflops']:.1f}" if 'gflops' in r else '-',
             f"{r['cores_busy']:.2f}" if 'cores_busy' in r else '-']
    cells += [f"{r[f'speedup_vs_{p}']:.2f}" if f'speedup_vs_{p}' in r else '-' for p in peers]
    cells += [fmt_bytes(r.get('temp_bytes')), fmt_bytes(r.get('peak_rss_bytes'))]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def plot(rows, path):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  names = sorted({r['candidate'] for r in rows})
  for name in names:
    for causal, style in ((False, '-'), (True, '--')):
      pts = [r for r in rows if r['candidate'] == name and r['causal'] == causal
             and r['pass'] == 'fwd_bwd']
      timed = [(r['length'], r['seconds']) for r in pts if 'seconds' in r]
      if timed:
        axes[0].plot(*zip(*timed), style, marker='o', label=f"{name}{' causal' if causal else ''}")
      mem = [(r['length'], r['temp_bytes']) for r in pts if r.get('temp_bytes')]
      if mem and not causal:
        axes[1].plot(*zip(*mem), marker='o', label=name)
  for ax, title, ylabel in ((axes[0], 'forward+backward time', 'seconds'),
                            (axes[1], 'compiled temporary memory, forward+backward', 'bytes')):
    ax.set_xscale('log', base=2)
    ax.set_yscale('log')
    ax.set_xlabel('sequence length')
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which='both', alpha=0.3)
  axes[0].legend(fontsize=7, ncol=2)
  axes[1].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
