r"""The long-range study against length: its sweep's results.csv as tables and plots.

  python scripts/long_range_report.py --study_dir=runs/studies/long_range

writes, next to the sweep's own tables (configs/sweeps/long_range.py):
  report.md     per task, test exact match (mean over seeds; test_long after the slash)
                of each model at each length; then the median train step time and the
                peak resident memory of each model at each length, over the tasks
  accuracy.png  test exact match against length, one panel per task, a line per model
  cost.png      train step time and peak memory against length (log-log), a line per model
For listops the target is one digit, so exact match is its accuracy.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from attention import UserError, cli  # noqa: E402
from attention.data.long_range import TASKS  # noqa: E402
from sweeping.points import point_name  # noqa: E402

_STUDY_DIR = flags.DEFINE_string('study_dir', 'runs/studies/long_range',
                                 'The directory of the long-range sweep (its results.csv).')


def model_label(model: dict) -> str:
  """What a run's config.model is, in the report's words."""
  if model['name'] == 'lstm':
    return 'LSTM + attention' if model['rnn_attention'] != 'none' else 'LSTM'
  return f'Transformer {model["kernel"]}'


def point_config(study_dir: str, row: dict, swept: list[str]) -> dict:
  """The config.json of a row's run, found by its point's name (the swept values)."""
  name = point_name({k: row[k] for k in swept if row[k] != ''})
  with open(os.path.join(study_dir, name, 'config.json')) as f:
    return json.load(f)


def task_and_length(config: dict) -> tuple[str, int]:
  """('recall', 1024) from config.task 'recall_1024'."""
  task, _, length = config['task'].rpartition('_')
  if task not in TASKS or not length.isdigit():
    raise UserError(f'config.task={config["task"]!r} is not a long-range task '
                    f'({"|".join(TASKS)} at a length)')
  return task, int(length)


def _number(text: str) -> float | None:
  return float(text) if text not in ('', None) else None


def _mean(values: list) -> float | None:
  values = [v for v in values if v is not None]
  return statistics.fmean(values) if values else None


def gather(study_dir: str, rows: list[dict]) -> dict:
  """{(task, length, model): {column: mean over seeds, 'seeds': n}} of the finished points."""
  swept = list(rows[0])[:list(rows[0]).index('val_bleu')] if rows else []
  groups = {}
  for row in rows:
    if row['status'] != 'done':
      continue
    config = point_config(study_dir, row, swept)
    groups.setdefault((*task_and_length(config), model_label(config['model'])),
                      []).append(row)
  out = {}
  for key, group in groups.items():
    out[key] = {column: _mean([_number(r.get(column)) for r in group]) for column in
                ('test_exact_match', 'test_long_exact_match', 'train_ms_per_step',
                 'peak_rss_mib', 'params')}
    out[key]['seeds'] = len(group)
  return out


def _fmt(value, spec: str) -> str:
  return '' if value is None else format(value, spec)


def report(cells: dict) -> str:
  tasks = list(dict.fromkeys(k[0] for k in cells))
  lengths = sorted({k[1] for k in cells})
  models = list(dict.fromkeys(k[2] for k in cells))
  lines = []
  for task in tasks:
    lines += [f'### {task}: test exact match % (test_long, twice the length, after the slash)',
              '', '| model | ' + ' | '.join(str(n) for n in lengths) + ' |',
              '|---|' + '---:|' * len(lengths)]
    for model in models:
      parts = []
      for length in lengths:
        cell = cells.get((task, length, model))
        parts.append('' if cell is None else
                     f'{_fmt(cell["test_exact_match"], ".1f")} / '
                     f'{_fmt(cell["test_long_exact_match"], ".1f")}'
                     + (f' ({cell["seeds"]} seeds)' if cell['seeds'] > 1 else ''))
      lines.append(f'| {model} | ' + ' | '.join(parts) + ' |')
    lines.append('')
  lines += ['### Cost: median train step (ms) / peak resident memory (MiB), mean over tasks', '',
            '| model | params | ' + ' | '.join(str(n) for n in lengths) + ' |',
            '|---|---:|' + '---:|' * len(lengths)]
  for model in models:
    parts = []
    for length in lengths:
      group = [c for k, c in cells.items() if k[1] == length and k[2] == model]
      ms = _mean([c['train_ms_per_step'] for c in group])
      mib = _mean([c['peak_rss_mib'] for c in group])
      parts.append(f'{_fmt(ms, ",.0f")} / {_fmt(mib, ",.0f")}' if group else '')
    params = _mean([c['params'] for k, c in cells.items() if k[2] == model])
    lines.append(f'| {model} | {_fmt(params, ",.0f")} | ' + ' | '.join(parts) + ' |')
  return '\n'.join(lines) + '\n'


def plot(cells: dict, study_dir: str) -> list[str]:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  tasks = list(dict.fromkeys(k[0] for k in cells))
  models = list(dict.fromkeys(k[2] for k in cells))
  fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.8), squeeze=False)
  for ax, task in zip(axes[0], tasks):
    for model in models:
      points = sorted((k[1], c['test_exact_match']) for k, c in cells.items()
                      if k[0] == task and k[2] == model and c['test_exact_match'] is not None)
      if points:
        ax.plot(*zip(*points), 'o-', label=model)
    ax.set(title=task, xscale='log', xlabel='source length (tokens)',
           ylabel='test exact match (%)', ylim=(-2, 102))
    ax.grid(True, alpha=0.3)
  axes[0][0].legend(fontsize=8)
  fig.tight_layout()
  paths = [os.path.join(study_dir, 'accuracy.png')]
  fig.savefig(paths[0], dpi=110)
  plt.close(fig)

  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  for model in models:
    for ax, column in zip(axes, ('train_ms_per_step', 'peak_rss_mib')):
      by_length = {}
      for k, c in cells.items():
        if k[2] == model and c[column] is not None:
          by_length.setdefault(k[1], []).append(c[column])
      if by_length:
        lengths = sorted(by_length)
        ax.plot(lengths, [statistics.fmean(by_length[n]) for n in lengths], 'o-', label=model)
  for ax, label in zip(axes, ('train step (ms)', 'peak resident memory (MiB)')):
    ax.set(xscale='log', yscale='log', xlabel='source length (tokens)', ylabel=label)
    ax.grid(True, which='both', alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  paths.append(os.path.join(study_dir, 'cost.png'))
  fig.savefig(paths[1], dpi=110)
  plt.close(fig)
  return paths


def main():
  path = os.path.join(_STUDY_DIR.value, 'results.csv')
  if not os.path.exists(path):
    raise UserError(f'--study_dir={_STUDY_DIR.value}: no results.csv (run the sweep of '
                    'configs/sweeps/long_range.py there first)')
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  cells = gather(_STUDY_DIR.value, rows)
  if not cells:
    raise UserError(f'{path}: no finished point yet')
  with open(os.path.join(_STUDY_DIR.value, 'report.md'), 'w') as f:
    f.write(report(cells))
  print(f'report: {os.path.join(_STUDY_DIR.value, "report.md")}')
  for png in plot(cells, _STUDY_DIR.value):
    print(f'plot: {png}')


if __name__ == '__main__':
  cli.main(main, config_flag=None)
