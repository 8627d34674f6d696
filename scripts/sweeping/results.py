"""What a sweep's points reached: a row per point (results.csv, results.md), the machine
they were timed on (machine.json), and with seeds swept, the mean and range over seeds per
setting (summary.csv, summary.md)."""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import statistics

from attention import UserError
from attention.bench import machine
from attention.training import metric_writer
from sweeping.points import Point, flag_text, is_done, point_name

METRICS = (('val_bleu', 'validation', 'bleu'), ('val_exact_match', 'validation', 'exact_match'),
           ('val_perplexity', 'validation', 'perplexity'), ('test_bleu', 'test', 'bleu'),
           ('test_exact_match', 'test', 'exact_match'))
METRIC_NAMES = tuple(column for column, _, _ in METRICS)
RESULT_COLUMNS = (*METRIC_NAMES, 'params', 'train_ms_per_step', 'peak_rss_mib', 'wall_s',
                  'status', 'error')
SEED_KEY = 'seed'   # config.seed; points that differ only in it are repeats of one setting


def _read_json(path: str) -> dict:
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


@functools.cache
def _run_dir():
  """attention.training.run_dir, imported (with jax) only when a finished run is counted."""
  import jax
  jax.config.update('jax_platforms', 'cpu')   # shapes only: leave any accelerator alone
  from attention.training import run_dir
  return run_dir


def _evaluator():
  from attention.evaluation import evaluator
  return evaluator


def _scores():
  from attention.evaluation import scores
  return scores


def param_count(workdir: str) -> int | None:
  """Parameters of the model in workdir/config.json (counted from shapes, not allocated)."""
  if not os.path.exists(os.path.join(workdir, 'config.json')):
    return None
  run_dir = _run_dir()
  return run_dir.param_counts(run_dir.load_config(workdir))['total']


def extra_splits(workdir: str) -> list[str]:
  """Splits besides test that the run scored at the end (config.eval.extra_splits)."""
  eval_dir = os.path.join(workdir, 'eval')
  if not os.path.isdir(eval_dir):
    return []
  return sorted(name[:-5] for name in os.listdir(eval_dir)
                if name.endswith('.json') and name != 'test.json')


def extra_columns(split: str) -> list[str]:
  return [f'{split}_bleu', f'{split}_exact_match']


def median_ms_per_step(workdir: str) -> float | None:
  """Median training time per step over the logged windows, the first (compilation) aside."""
  rates = [r['steps_per_s'] for r in metric_writer.read_metrics(workdir, 'train')][1:]
  rates = [r for r in rates if isinstance(r, (int, float)) and r > 0]
  return 1000.0 / statistics.median(rates) if rates else None


def parse_bins(texts: list[str]) -> list[tuple[int, int]]:
  bins = []
  for text in texts:
    lo, sep, hi = text.partition('-')
    if not (sep and lo.isdigit() and hi.isdigit() and 0 < int(lo) <= int(hi)):
      raise UserError(f'--length_bins: {text!r} is not a range LO-HI of source lengths in words '
                      '(e.g. 1-10,11-20)')
    bins.append((int(lo), int(hi)))
  return bins


def bin_column(lo: int, hi: int) -> str:
  return f'em_words_{lo}-{hi}'


def exact_match_by_length(workdir: str, bins: list[tuple[int, int]]) -> dict:
  """Exact match (%) per source-length bin over the scored sentences of every split but
  validation (DIR/eval/<split>.tsv); None for an empty bin."""
  rows = []
  for split in ['test', *extra_splits(workdir)]:
    if os.path.exists(os.path.join(workdir, 'eval', f'{split}.tsv')):
      rows += _evaluator().read_predictions(workdir, split)
  scores = _scores().exact_match_by_length(rows, bins)
  return {bin_column(lo, hi): score for (lo, hi), score in zip(bins, scores)}


def result_row(point: Point, bins: list[tuple[int, int]] = ()) -> dict:
  validation = metric_writer.read_metrics(point.workdir, 'validation')
  records = {'validation': validation[-1] if validation else {},
             'test': _read_json(os.path.join(point.workdir, 'eval', 'test.json'))}
  info = _read_json(os.path.join(point.workdir, 'sweep.json'))
  row = {k: flag_text(v) for k, v in point.overrides.items()}
  row.update({column: records[split].get(key) for column, split, key in METRICS})
  for split in extra_splits(point.workdir):
    record = _read_json(os.path.join(point.workdir, 'eval', f'{split}.json'))
    row.update(zip(extra_columns(split), (record.get('bleu'), record.get('exact_match'))))
  if bins:
    row.update(exact_match_by_length(point.workdir, bins))
  done = is_done(point)
  row.update(params=param_count(point.workdir), train_ms_per_step=median_ms_per_step(point.workdir),
             peak_rss_mib=info.get('peak_rss_mib'), wall_s=info.get('wall_s'),
             status='done' if done else 'failed',
             error='' if done else info.get('error', ''))
  return row


def _cell(column: str, value) -> str:
  if value is None:
    return ''
  if column == 'params':
    return f'{value:,}'
  if isinstance(value, float):
    return f'{value:.1f}' if column == 'wall_s' else f'{value:.2f}'
  return str(value).replace('|', '\\|')


def write_results(points: list[Point], rows: list[dict], workdir: str,
                  bins: list[tuple[int, int]] = ()) -> list[str]:
  """DIR/results.csv and DIR/results.md: the swept keys, the metrics (those of extra
  splits and length bins too), then the rest of RESULT_COLUMNS. Returns the columns."""
  extra = [*dict.fromkeys(c for p in points for s in extra_splits(p.workdir)
                          for c in extra_columns(s))]
  metrics = [*METRIC_NAMES, *extra, *(bin_column(lo, hi) for lo, hi in bins)]
  columns = [*dict.fromkeys(k for p in points for k in p.overrides), *metrics,
             *RESULT_COLUMNS[len(METRIC_NAMES):]]
  with open(os.path.join(workdir, 'results.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(rows)
  lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
  lines += ['| ' + ' | '.join(_cell(c, row.get(c)) for c in columns) + ' |' for row in rows]
  with open(os.path.join(workdir, 'results.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return columns


def write_machine(points: list[Point], workdir: str) -> None:
  """DIR/machine.json: the one kind of machine the finished points ran on (or 'mixed')."""
  kind = machine.common([machine.read(p.workdir) for p in points if is_done(p)])
  if kind is not None:
    with open(os.path.join(workdir, machine.FILE), 'w') as f:
      json.dump(kind, f, indent=1)


def settings(points: list[Point], rows: list[dict]) -> list[tuple[dict, list[tuple[Point, dict]]]]:
  """The points grouped by their overrides other than `seed`, in order of first appearance:
  [(setting, [(point, row), ...])]; without a swept seed, one point per setting."""
  groups = {}
  for point, row in zip(points, rows):
    setting = {k: v for k, v in point.overrides.items() if k != SEED_KEY}
    groups.setdefault(point_name(setting), (setting, []))[1].append((point, row))
  return list(groups.values())


def seeds_swept(points: list[Point]) -> bool:
  return len({repr(p.overrides.get(SEED_KEY)) for p in points}) > 1


def _finite(value) -> bool:
  # metrics.jsonl holds a non-finite value as a string ('nan'): never averaged or plotted.
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def values_of(group: list[tuple[Point, dict]], column: str) -> list[float]:
  return [row[column] for _, row in group if row['status'] == 'done' and _finite(row.get(column))]


def summarize(points: list[Point], rows: list[dict], columns: list[str]) -> tuple[list[str], list[dict]]:
  """summary.csv's columns and rows: a row per setting (the swept keys but `seed`), the
  number of seeds done, and for each metric column of `columns` its mean, _min and _max
  over them (parameters once: they do not depend on the seed)."""
  swept = {k for p in points for k in p.overrides} - {SEED_KEY}
  keys = [c for c in columns if c in swept]
  metrics = [c for c in columns[columns.index(METRIC_NAMES[0]):] if c not in ('wall_s', 'status', 'error')]
  out_columns = [*keys, 'seeds']
  for c in metrics:
    out_columns += [c] if c == 'params' else [c, f'{c}_min', f'{c}_max']
  out_rows = []
  for setting, group in settings(points, rows):
    row = {k: flag_text(setting[k]) for k in keys if k in setting}
    row['seeds'] = sum(r['status'] == 'done' for _, r in group)
    for c in metrics:
      values = values_of(group, c)
      if c == 'params':
        row[c] = values[0] if values else None
        continue
      row[c] = statistics.fmean(values) if values else None
      row[f'{c}_min'], row[f'{c}_max'] = (min(values), max(values)) if values else (None, None)
    out_rows.append(row)
  return out_columns, out_rows


def write_summary(points: list[Point], rows: list[dict], columns: list[str], workdir: str) -> None:
  """DIR/summary.csv (mean, min, max as columns) and DIR/summary.md ('mean (min-max)'),
  from the rows of results.csv and its `columns`."""
  out_columns, out_rows = summarize(points, rows, columns)
  with open(os.path.join(workdir, 'summary.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, out_columns)
    writer.writeheader()
    writer.writerows(out_rows)
  shown = [c for c in out_columns if not c.endswith(('_min', '_max'))]

  def cell(row, c):
    if c == 'seeds' or f'{c}_min' not in row or row[c] is None:
      return _cell(c, row.get(c))
    return f'{_cell(c, row[c])} ({_cell(c, row[c + "_min"])}–{_cell(c, row[c + "_max"])})'

  lines = ['| ' + ' | '.join(shown) + ' |', '|' + '---|' * len(shown)]
  lines += ['| ' + ' | '.join(cell(row, c) for c in shown) + ' |' for row in out_rows]
  with open(os.path.join(workdir, 'summary.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
