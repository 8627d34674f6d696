"""The studies reproduce.py re-runs (configs/sweeps/<name>.py, each with the COMMAND it
records) and their claims, read off the recorded results.csv and summary.csv: a claim per
point and column on the recording's kind of machine, and where seeds were swept, a claim
per setting on the mean over seeds on any machine."""

from __future__ import annotations

import importlib
import shlex

from reproducing.spec import PY, Claim, Job, load, recordings

STUDIES = {'attention_vs_recurrence': 50, 'positional': 50, 'kernels': 21, 'table3': 25,
           'long_range_quick': 2}
# A study named <file>_quick is the QUICK_COMMAND of configs/sweeps/<file>.py: a subset
# that joins reproduce.py --quick.
QUICK = '_quick'

# Step times of these studies are not claimed: table3 is about quality, and short test runs
# shared the two cores for a minute of its recording.
UNTIMED_STUDIES = ('table3',)
STUDY_FILES = ('results.csv', 'results.md', 'summary.csv', 'summary.md', 'results.png',
               'results_by_length.png', 'curves.json', 'curves.png', 'machine.json')
# A sweep file's REPORT (a command reading the sweep directory, '{out}') and what it writes.
REPORT_FILES = ('report.md', 'accuracy.png', 'cost.png')
# Tolerances of a study's columns; the rest (wall time) are not compared. Times are
# compared as each point's ratio to the first point of the same sweep.
STUDY_TOLERANCE = {'bleu': dict(abs=2.0), 'exact_match': dict(abs=3.0),
                   'perplexity': dict(rel=0.05), 'em_words': dict(abs=5.0),
                   'params': {}, 'train_ms_per_step': dict(rel=0.3),
                   'peak_rss_mib': dict(rel=0.25)}


def _command(text: str) -> tuple:
  argv = shlex.split(text)
  return (PY, *(('--workdir={out}' if a.startswith('--workdir=') else
                 '--study_dir={out}' if a.startswith('--study_dir=') else a) for a in argv[1:]))


def job(name: str, minutes: float) -> Job:
  """The sweep of configs/sweeps/<name>.py, run with the COMMAND it records (QUICK_COMMAND
  for <name>_quick), then its REPORT if it has one."""
  quick = name.endswith(QUICK)
  module = importlib.import_module(f'configs.sweeps.{name.removesuffix(QUICK)}')
  commands = [_command(module.QUICK_COMMAND if quick else module.COMMAND)]
  files = list(STUDY_FILES)
  if hasattr(module, 'REPORT'):
    commands.append(_command(module.REPORT))
    files += REPORT_FILES
  return Job(f'study_{name}', tuple(commands), {f: f for f in files}, minutes=minutes,
             quick=quick, resumes=True)


def _study_row(swept: list[str], values: tuple):
  def select(rows):
    for r in rows:
      if tuple(r[k] for k in swept) == values:
        return r
    raise KeyError(f'no point {dict(zip(swept, values))}')
  return select


def _study_value(select, column, first=None):
  def value(rows):
    v = float(select(rows)[column])
    return v / float(first(rows)[column]) if first else v
  return value


def _label(keys: list[str], values: tuple) -> str:
  return ','.join(f'{k}={v}' for k, v in zip(keys, values) if v) or 'base'


def _column_kind(column: str) -> str | None:
  """The STUDY_TOLERANCE entry a results column falls under (None: not compared)."""
  return next((k for k in STUDY_TOLERANCE if k in column), None)


def _table(results: str, name: str, file: str) -> tuple[list[dict], list[str]]:
  """The rows and columns of a study's recorded CSV; none before it is recorded."""
  paths = recordings(results, f'study_{name}/{file}')   # the same points on every machine
  rows = load(paths[0]) if paths else []
  return rows, list(rows[0]) if rows else []


def claims(name: str, results: str) -> list[Claim]:
  """The claims of study `name`, from its recording in `results` (none before one exists)."""
  return _run_claims(name, results) + _seed_mean_claims(name, results)


def _run_claims(name: str, results: str) -> list[Claim]:
  """A claim per point and column of the study's results.csv, compared on machines of the
  recording's kind only (but parameter counts)."""
  rows, columns = _table(results, name, 'results.csv')
  if not rows:
    return []
  swept = columns[:columns.index('val_bleu')]
  first = _study_row(swept, tuple(rows[0][k] for k in swept))
  found = []
  for r in rows:
    values = tuple(r[k] for k in swept)
    for column in columns:
      kind = _column_kind(column)
      if kind is None or r[column] in ('', None):
        continue
      relative = kind == 'train_ms_per_step'
      # The first point's time over itself is 1 by construction: nothing to check.
      if relative and (name in UNTIMED_STUDIES or r is rows[0]):
        continue
      found.append(Claim(f'{name} {_label(swept, values)}: {column}'
                          f'{" / first point" if relative else ""}',
                          f'study_{name}', f'study_{name}/results.csv', 'results.csv',
                          _study_value(_study_row(swept, values), column,
                                       first if relative else None),
                          where=f'docs/experiments, Studies ({name})', same_machine=kind != 'params',
                          **STUDY_TOLERANCE[kind]))
  return found


def _seed_mean_claims(name: str, results: str) -> list[Claim]:
  """When seeds were swept, a claim per setting on each column's mean over the seeds
  (summary.csv), compared on any machine, with the column's tolerance widened by half the
  range the recorded seeds spanned."""
  rows, columns = _table(results, name, 'summary.csv')
  if not rows:
    return []
  keys = columns[:columns.index('seeds')]
  found = []
  for r in rows:
    values = tuple(r[k] for k in keys)
    for column in columns:
      kind = _column_kind(column)
      if kind in (None, 'params', 'train_ms_per_step') or column.endswith(('_min', '_max')) \
          or r[column] in ('', None):
        continue
      tolerance = dict(STUDY_TOLERANCE[kind])
      tolerance['abs'] = tolerance.get('abs', 0.0) + (float(r[f'{column}_max'])
                                                      - float(r[f'{column}_min'])) / 2
      found.append(Claim(f'{name} {_label(keys, values)}: {column}, mean of {r["seeds"]} seeds',
                          f'study_{name}', f'study_{name}/summary.csv', 'summary.csv',
                          _study_value(_study_row(keys, values), column),
                          where=f'docs/experiments, Studies ({name})', **tolerance))
  return found


JOBS = [job(name, minutes) for name, minutes in STUDIES.items()]
