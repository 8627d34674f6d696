"""A sweep's plots: the metric against the one swept key (results.png), exact match
against source length (results_by_length.png) and the training curves (curves.json,
curves.png); with seeds swept, means with their range."""

from __future__ import annotations

import json
import os
import statistics

from attention.training import metric_writer
from sweeping.points import Point, flag_text, point_name
from sweeping.results import SEED_KEY, bin_column, seeds_swept, settings, values_of

def _mean_and_range(values: list[float]) -> tuple[float, float, float]:
  mean = statistics.fmean(values)
  return mean, mean - min(values), max(values) - mean


def plot(points: list[Point], rows: list[dict], metric: str, path: str) -> str | None:
  """results.png: `metric` against the one key other than `seed` whose value varies (the
  mean over seeds, their range as error bars); None when not 1-D."""
  keys = list(dict.fromkeys(k for p in points for k in p.overrides if k != SEED_KEY))
  varying = [k for k in keys if len({repr(p.overrides.get(k)) for p in points}) > 1]
  if len(varying) != 1:
    return None
  key = varying[0]
  pairs = [(setting[key], values_of(group, metric)) for setting, group in settings(points, rows)]
  pairs = [(x, ys) for x, ys in pairs if ys]
  if not pairs:
    return None
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  xs = [x for x, _ in pairs]
  numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
  if numeric:
    pairs.sort(key=lambda pair: pair[0])
  positions = [x for x, _ in pairs] if numeric else list(range(len(pairs)))
  means, below, above = zip(*(_mean_and_range(ys) for _, ys in pairs))
  fig, ax = plt.subplots(figsize=(5, 3.5))
  ax.errorbar(positions, means, yerr=[below, above], fmt='o-', capsize=3)
  if numeric and min(xs) > 0 and max(xs) >= 10 * min(xs):   # learning rates and the like
    ax.set_xscale('log')
  ax.minorticks_off()
  # Ticks at the swept values, labelled as on the command line.
  ax.set_xticks(positions, [flag_text(x) for x, _ in pairs])
  ax.set_xlabel(key)
  seeds = max(len(ys) for _, ys in pairs)
  ax.set_ylabel(metric + (f' (mean, range of {seeds} seeds)' if seeds > 1 else ''))
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def plot_by_length(points: list[Point], rows: list[dict], bins, path: str) -> str | None:
  """results_by_length.png: exact match against source length, a line per setting (the
  mean over seeds, their range as error bars)."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  groups = settings(points, rows)
  fig, ax = plt.subplots(figsize=(7, 4.5 + 0.22 * len(groups)))
  centers = [(lo + hi) / 2 for lo, hi in bins]
  drawn = 0
  for setting, group in groups:
    line = [(x, values_of(group, bin_column(lo, hi))) for x, (lo, hi) in zip(centers, bins)]
    line = [(x, _mean_and_range(ys)) for x, ys in line if ys]
    if not line:
      continue
    means, below, above = zip(*(m for _, m in line))
    ax.errorbar([x for x, _ in line], means, yerr=[below, above], fmt='o-', capsize=3,
                label=point_name(setting))
    drawn += 1
  if not drawn:
    plt.close(fig)
    return None
  ax.set_xticks(centers, [f'{lo}-{hi}' for lo, hi in bins])
  ax.set_xlabel('source length (words)')
  ax.set_ylabel('exact match (%)' + (' (mean, range over seeds)' if seeds_swept(points) else ''))
  ax.grid(alpha=0.3)
  # Below the axes: point names are long, and inside they hide the lines.
  ax.legend(fontsize=7, loc='upper center', bbox_to_anchor=(0.5, -0.15), frameon=False)
  fig.savefig(path, dpi=120, bbox_inches='tight')
  plt.close(fig)
  return path


def write_curves(points: list[Point], workdir: str) -> str | None:
  """DIR/curves.json ({point: [[step, train loss], ...]}) and DIR/curves.png, the
  logged training loss of every point against the step (the seeds of one setting in one
  colour)."""
  curves = {p.name: [[r['step'], r['loss']] for r in metric_writer.read_metrics(p.workdir, 'train')
                     if isinstance(r.get('loss'), (int, float))] for p in points}
  curves = {name: points for name, points in curves.items() if points}
  if not curves:
    return None
  with open(os.path.join(workdir, 'curves.json'), 'w') as f:
    json.dump(curves, f)
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  groups = settings(points, [{}] * len(points))
  fig, ax = plt.subplots(figsize=(7, 4.5 + 0.22 * len(groups)))
  repeated = seeds_swept(points)
  for i, (setting, group) in enumerate(groups):
    drawn = [curves[p.name] for p, _ in group if p.name in curves]
    label = point_name(setting)
    if repeated and len(drawn) > 1:
      label += f' ({len(drawn)} seeds)'
    for j, pairs in enumerate(drawn):   # one legend entry per setting
      ax.plot([s for s, _ in pairs], [l for _, l in pairs], color=f'C{i % 10}', lw=1,
              label=label if j == 0 else None)
  ax.set_xlabel('step')
  ax.set_ylabel('training loss (label-smoothed)')
  ax.set_yscale('log')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc='upper center', bbox_to_anchor=(0.5, -0.15), frameon=False)
  path = os.path.join(workdir, 'curves.png')
  fig.savefig(path, dpi=120, bbox_inches='tight')
  plt.close(fig)
  return path
