"""Runs train.py at every point of a grid of config values and tabulates the results.

  python scripts/sweep.py --config=configs/default.py:task=copy,model=tiny \
      --workdir=runs/lr_layers --sweep='train.learning_rate=[1e-3,3e-3] model.num_layers=[1,2]' \
      [--parallel=2] [--config.train.num_steps=400 ...]
  python scripts/sweep.py ... --zip='train.learning_rate=[1e-3,3e-3] train.warmup_steps=[50,100]'
  python scripts/sweep.py ... --sweep_file=configs/sweeps/copy_lr_layers.py
  python scripts/sweep.py ... --print_commands     # one train.py command per point; runs nothing

The points: the cartesian product of the --sweep lists, times the points of --zip (its
lists taken in step: the i-th values of all of them make the i-th point, so they must be
of one length), times the points of --sweep_file (a module whose get_sweep() returns a
list of override dicts; configs/sweeps has the sweep/product/zip_ helpers and an example).
Values are Python literals (3e-3, 2, True, (16, 32), 'cosine'); a bare word is a string.
--config.X=Y flags are fixed overrides that every point gets, before its swept ones. The
config of every point is parsed as train.py will parse it before anything runs, so a
mistyped key costs one `error:` line (exit 2) and no runs.

DIR/<point>/ is one train.py run, named after its overrides (train.learning_rate=0.001,
model.num_layers=1), with its output in sweep.log and its status and wall time in
sweep.json; a point whose eval/test.json exists is done and not run again. --parallel
points run at a time (default: one per CPU, each run pinned to its share of the CPUs).
DIR/results.csv and DIR/results.md hold a row per point: swept values, the last validation
metrics, the test metrics (and those of config.eval.extra_splits, e.g. test_long_bleu),
exact match per --length_bins range of source words (em_words_LO-HI, over every scored
split but validation), parameters, median train step time, wall time, status.
DIR/results.png plots --metric against the swept value when a single key varies;
DIR/results_by_length.png exact match against source length, a line per point;
DIR/curves.json and DIR/curves.png the logged training loss of every point.
When `seed` (config.seed: initialization and dropout) is swept, DIR/summary.csv and
DIR/summary.md hold a row per setting of the other keys: the number of seeds done, and
each metric's mean, min and max over them; the plots then draw the means, with the
min-max range as error bars (results.png, results_by_length.png) and one colour per
setting (curves.png).
DIR/machine.json the kind of machine the points were timed on (attention/bench/machine.py;
isa 'mixed' when points ran on different kinds, so that their step times are not compared).
Exit status: 0 when every point is done, 1 when any failed (the others still run).
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import functools
import hashlib
import importlib.util
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)   # `attention` and `configs` from a checkout

from ml_collections import config_flags  # noqa: E402

from attention import cli  # noqa: E402
from attention.bench import machine  # noqa: E402
from attention import UserError  # noqa: E402
from attention.training import metric_writer  # noqa: E402
from configs import sweeps  # noqa: E402

TRAIN = os.path.join(ROOT, 'train.py')
# Result columns besides the swept keys: (column, split, metric in that split's record).
METRICS = (('val_bleu', 'validation', 'bleu'), ('val_exact_match', 'validation', 'exact_match'),
           ('val_perplexity', 'validation', 'perplexity'), ('test_bleu', 'test', 'bleu'),
           ('test_exact_match', 'test', 'exact_match'))
METRIC_NAMES = tuple(column for column, _, _ in METRICS)
RESULT_COLUMNS = (*METRIC_NAMES, 'params', 'train_ms_per_step', 'wall_s', 'status', 'error')
SEED_KEY = 'seed'   # config.seed; points that differ only in it are repeats of one setting

_CONFIG = cli.define_config_flag('Base config of every point, as for train.py.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Sweep directory: a run directory per point, '
                               'results.csv, results.md, results.png.')
_SWEEP = flags.DEFINE_string('sweep', None, "Cartesian product: 'KEY=[V1,V2,...] KEY=[...]'.")
_ZIP = flags.DEFINE_string('zip', None, "Lists taken in step: 'KEY=[V1,V2] KEY=[W1,W2]' is "
                           'the points (V1, W1), (V2, W2).')
_SWEEP_FILE = flags.DEFINE_string('sweep_file', None,
                                  'A Python file whose get_sweep() returns a list of override '
                                  "dicts, e.g. configs/sweeps/copy_lr_layers.py.")
_PARALLEL = flags.DEFINE_integer('parallel', 0, 'Points run at a time (0 = one per CPU).')
_METRIC = flags.DEFINE_string('metric', 'test_exact_match',
                              f'The column results.png plots: {", ".join(METRIC_NAMES)}, '
                              'train_ms_per_step, <split>_bleu or <split>_exact_match of a '
                              'split in config.eval.extra_splits, or em_words_LO-HI.')
PLOTTABLE = re.compile(r'(\w+_(bleu|exact_match)|val_perplexity|train_ms_per_step|'
                       r'em_words_\d+-\d+)')
_LENGTH_BINS = flags.DEFINE_list('length_bins', [], 'Source lengths in words, as LO-HI ranges '
                                  '(1-10,11-20,...): an exact-match column per range over every '
                                  'scored split but validation, and results_by_length.png.')
_PRINT_COMMANDS = flags.DEFINE_bool('print_commands', False,
                                    'Print the train.py command of every point (shell-quoted, '
                                    'one a line) instead of running them.')


@dataclasses.dataclass
class Point:
  overrides: dict     # swept key -> value
  name: str           # its directory under --workdir
  workdir: str
  command: list[str]


# ---------------------------------------------------------------------------- the points


def parse_value(text: str):
  """A Python literal, else the text itself (a bare word), as ml_collections reads --config.x."""
  if text in ('true', 'false'):
    return text == 'true'
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def _scan_list(text: str, start: int, flag: str) -> tuple[list[str], int]:
  """The items of the list whose '[' is text[start], split at its top-level commas (not
  those inside tuples or quotes), and the index just past its ']'."""
  items, depth, quote, item_start = [], 0, None, start + 1
  for i in range(start, len(text)):
    c = text[i]
    if quote:
      quote = None if c == quote else quote
    elif c in '\'"':
      quote = c
    elif c in '([{':
      depth += 1
    elif c in ')]}':
      depth -= 1
      if depth == 0:
        items.append(text[item_start:i])
        return [item.strip() for item in items if item.strip()], i + 1
    elif c == ',' and depth == 1:
      items.append(text[item_start:i])
      item_start = i + 1
  raise UserError(f'--{flag}: unclosed list in {text[start:]!r}')


def parse_lists(text: str, flag: str) -> dict[str, list]:
  """'train.learning_rate=[1e-3,3e-3] model.num_layers=[1,2]' -> {key: [values]}."""
  lists, pos = {}, 0
  key_re = re.compile(r'\s*([A-Za-z_][\w.]*)=\[')
  while text[pos:].strip():
    match = key_re.match(text, pos)
    if not match:
      raise UserError(f'--{flag}: expected KEY=[V1,V2,...] at {text[pos:].strip()!r}')
    key = match.group(1)
    items, pos = _scan_list(text, match.end() - 1, flag)
    if key in lists:
      raise UserError(f'--{flag}: {key} is listed twice')
    if not items:
      raise UserError(f'--{flag}: {key} has an empty list')
    lists[key] = [parse_value(item) for item in items]
  return lists


def load_sweep_file(path: str) -> list[dict]:
  """The points of a sweep file: its get_sweep()."""
  if not os.path.isfile(path):
    raise UserError(f'--sweep_file={path}: no such file')
  spec = importlib.util.spec_from_file_location('_sweep_file', path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # noqa: BLE001 - whatever the sweep file raises is the user's error
    raise UserError(f'--sweep_file={path}: {type(e).__name__}: {e}') from None
  if not callable(getattr(module, 'get_sweep', None)):
    raise UserError(f'--sweep_file={path} defines no get_sweep()')
  try:
    points = module.get_sweep()
  except Exception as e:  # noqa: BLE001
    raise UserError(f'--sweep_file={path}: get_sweep(): {type(e).__name__}: {e}') from None
  if not isinstance(points, list) or not all(
      isinstance(p, dict) and all(isinstance(k, str) for k in p) for p in points):
    raise UserError(f'--sweep_file={path}: get_sweep() must return a list of dicts '
                    "{'train.learning_rate': 1e-3, ...}")
  return points


def swept_points() -> list[dict]:
  """--sweep (product) x --zip (in step) x --sweep_file, as a list of override dicts."""
  parts = []
  try:
    if _SWEEP.value:
      parts += [sweeps.sweep(k, v) for k, v in parse_lists(_SWEEP.value, 'sweep').items()]
    if _ZIP.value:
      lists = parse_lists(_ZIP.value, 'zip')
      parts.append(sweeps.zip_(*[sweeps.sweep(k, v) for k, v in lists.items()]))
    if _SWEEP_FILE.value:
      parts.append(load_sweep_file(_SWEEP_FILE.value))
    if not parts:
      raise UserError('nothing to sweep: give --sweep, --zip or --sweep_file')
    points = sweeps.product(*parts)
  except ValueError as e:   # the helpers' mismatched lengths and keys swept twice
    raise UserError(str(e)) from None
  if not points:   # a point with no overrides is fine: the base config, named 'base'
    raise UserError('the sweep has no points (an empty list)')
  return points


def flag_text(value) -> str:
  """How train.py's --config.X flag reads back `value` (ml_collections parses by field type)."""
  return value if isinstance(value, str) else repr(value)


def point_name(overrides: dict) -> str:
  """The point's directory: 'train.learning_rate=0.001,model.num_layers=1', with anything
  but letters, digits and . = , + - replaced by _ so that it is one safe path component;
  'base' for the point that overrides nothing (the base config itself)."""
  if not overrides:
    return 'base'
  text = ','.join(f'{k}={flag_text(v).replace(" ", "")}' for k, v in overrides.items())
  name = re.sub(r'[^\w.=,+-]', '_', text)
  if len(name) > 200:   # file names stop at 255 bytes; the hash keeps long ones distinct
    name = f'{name[:180]}-{hashlib.sha1(text.encode()).hexdigest()[:12]}'
  return name


def check_point(config_args: list[str]) -> None:
  """Parses a point's --config flags as train.py will, so that an unknown key or a value of
  the wrong type stops the sweep before anything runs."""
  argv = ['train.py', *config_args]
  values = flags.FlagValues()
  try:
    config_flags.DEFINE_config_file('config', cli.DEFAULT_CONFIG, flag_values=values,
                                    sys_argv=argv)
    values(argv)
    values['config'].value.keys()   # config_flags defers a loading failure to first use
  except Exception as e:  # noqa: BLE001 - config files and overrides raise anything
    raise UserError(cli.explain_config_error(argv, e)) from None


def make_points(workdir: str) -> list[Point]:
  """Every point, checked, with its train.py command: the base config, the fixed
  --config.X flags of this command, then the swept values."""
  spec = config_flags.get_config_filename(flags.FLAGS[_CONFIG.name])
  fixed = config_flags.get_override_values(flags.FLAGS[_CONFIG.name])
  fixed_args = [f'--config.{k}={flag_text(v)}' for k, v in fixed.items()]
  points, names = [], {}
  for overrides in swept_points():
    both = sorted(fixed.keys() & overrides.keys())
    if both:
      raise UserError(f'--config.{both[0]} is both fixed and swept; give it in one place')
    config_args = [f'--config={spec}', *fixed_args,
                   *(f'--config.{k}={flag_text(v)}' for k, v in overrides.items())]
    check_point(config_args)
    name = point_name(overrides)
    if name in names:
      raise UserError(f'the point {name} is listed twice' if names[name] == overrides else
                      f'points {names[name]} and {overrides} have one directory name {name!r}')
    names[name] = overrides
    point_dir = os.path.join(workdir, name)
    command = [sys.executable, os.path.relpath(TRAIN), *config_args, '--record_machine',
               f'--workdir={point_dir}']
    points.append(Point(overrides, name, point_dir, command))
  return points


# ---------------------------------------------------------------------------- running


def is_done(point: Point) -> bool:
  return os.path.exists(os.path.join(point.workdir, 'eval', 'test.json'))


def available_cpus() -> list[int]:
  if hasattr(os, 'sched_getaffinity'):
    return sorted(os.sched_getaffinity(0))
  return list(range(os.cpu_count() or 1))


def cpu_sets(parallel: int) -> list[list[int]]:
  """One CPU set per concurrent run (round robin when there are more runs than CPUs).
  XLA sizes its thread pools by the CPUs a process may use, so pinning keeps parallel runs
  off each other's cores. Measured with jax 0.10 on 2 CPUs: a matmul loop kept 5 threads
  busy, with XLA_FLAGS=--xla_cpu_multi_thread_eigen=false too, and 2 when pinned to one CPU."""
  cpus = available_cpus()
  share = max(1, len(cpus) // parallel)
  return [[cpus[(i * share + j) % len(cpus)] for j in range(share)] for i in range(parallel)]


def point_env(cpus: list[int], parallel: int) -> dict:
  # OMP_NUM_THREADS: OpenMP and BLAS pools (numpy, sentencepiece) to the run's CPU share.
  # PYTHONUNBUFFERED: the log's last line is then train.py's error, not late stdout.
  env = dict(os.environ, OMP_NUM_THREADS=str(len(cpus)), PYTHONUNBUFFERED='1')
  if parallel > 1:   # runs sharing one accelerator: each takes memory as it needs it
    env['XLA_PYTHON_CLIENT_PREALLOCATE'] = 'false'
  return env


def last_line(path: str) -> str:
  """The last non-empty line of a log (progress bars redraw with \\r: their last state)."""
  with open(path, errors='replace') as f:
    lines = [line.strip() for line in re.split(r'[\r\n]', f.read()) if line.strip()]
  return lines[-1] if lines else ''


def start(point: Point, cpus: list[int], parallel: int) -> tuple[subprocess.Popen, object]:
  os.makedirs(point.workdir, exist_ok=True)
  log = open(os.path.join(point.workdir, 'sweep.log'), 'w')
  pin = getattr(os, 'sched_setaffinity', None)
  proc = subprocess.Popen(point.command, stdout=log, stderr=subprocess.STDOUT,
                          env=point_env(cpus, parallel),
                          preexec_fn=(lambda: pin(0, cpus)) if pin else None)
  return proc, log


def finish(point: Point, returncode: int, wall_s: float) -> dict:
  """Writes DIR/<point>/sweep.json: the status, wall time and error of this attempt."""
  done = returncode == 0 and is_done(point)
  error = ''
  if not done:
    error = ((last_line(os.path.join(point.workdir, 'sweep.log')) or f'exit status {returncode}')
             if returncode else
             'exited before the end (no eval/test.json); run the sweep again to resume')
  info = dict(status='done' if done else 'failed', returncode=returncode,
              wall_s=round(wall_s, 1), error=error, overrides=point.overrides,
              command=shlex.join(point.command))
  with open(os.path.join(point.workdir, 'sweep.json'), 'w') as f:
    json.dump(info, f, indent=1)
  return info


def run_points(points: list[Point], parallel: int) -> None:
  """Runs the points not done yet, `parallel` at a time, each on its own CPU set."""
  todo = []
  for point in points:
    if is_done(point):
      print(f'{point.name}: done already, skipped')
    else:
      todo.append(point)
  free = cpu_sets(parallel)
  running = {}   # Popen -> (point, cpus, log file, start time)
  count, total = 0, len(todo)
  try:
    while todo or running:
      while todo and free:
        point, cpus = todo.pop(0), free.pop(0)
        count += 1
        print(f'[{count}/{total}] {point.name}: started', flush=True)
        proc, log = start(point, cpus, parallel)
        running[proc] = (point, cpus, log, time.time())
      time.sleep(0.2)
      for proc in [p for p in running if p.poll() is not None]:
        point, cpus, log, began = running.pop(proc)
        log.close()
        free.append(cpus)
        info = finish(point, proc.returncode, time.time() - began)
        detail = f': {info["error"]}' if info['error'] else ''
        print(f'{point.name}: {info["status"]} in {info["wall_s"]:.0f} s{detail}', flush=True)
  finally:
    # Ctrl-C reaches the runs too (one process group) and train.py checkpoints before it
    # exits: wait for that, so the sweep ends after its runs do.
    for proc in running:
      proc.wait()


# ---------------------------------------------------------------------------- results


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
             wall_s=info.get('wall_s'), status='done' if done else 'failed',
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


def _values(group: list[tuple[Point, dict]], column: str) -> list[float]:
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
      values = _values(group, c)
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
  pairs = [(setting[key], _values(group, metric)) for setting, group in settings(points, rows)]
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
    line = [(x, _values(group, bin_column(lo, hi))) for x, (lo, hi) in zip(centers, bins)]
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


def main():
  if not _WORKDIR.value:
    raise UserError('--workdir is required (the sweep directory, e.g. --workdir=runs/sweep)')
  if _PARALLEL.value < 0:
    raise UserError(f'--parallel={_PARALLEL.value}: allowed: an integer >= 1, or 0 (one per CPU)')
  if not PLOTTABLE.fullmatch(_METRIC.value):
    raise UserError(f'--metric={_METRIC.value}: allowed: {", ".join(METRIC_NAMES)}, '
                    'train_ms_per_step, <split>_bleu, <split>_exact_match, em_words_LO-HI')
  bins = parse_bins(_LENGTH_BINS.value)
  points = make_points(_WORKDIR.value)
  if _PRINT_COMMANDS.value:
    for point in points:
      print(shlex.join(point.command))
    return
  cli.writable_dir(_WORKDIR.value, '--workdir')
  to_run = sum(not is_done(p) for p in points)
  parallel = _PARALLEL.value or max(1, min(len(available_cpus()), to_run))
  run_points(points, parallel)
  rows = [result_row(p, bins) for p in points]
  columns = write_results(points, rows, _WORKDIR.value, bins)
  write_machine(points, _WORKDIR.value)
  print(f'results: {os.path.join(_WORKDIR.value, "results.md")}')
  if seeds_swept(points):
    write_summary(points, rows, columns, _WORKDIR.value)
    print(f'mean over seeds: {os.path.join(_WORKDIR.value, "summary.md")}')
  pngs = [plot(points, rows, _METRIC.value, os.path.join(_WORKDIR.value, 'results.png'))]
  if bins:
    pngs.append(plot_by_length(points, rows, bins,
                               os.path.join(_WORKDIR.value, 'results_by_length.png')))
  pngs.append(write_curves(points, _WORKDIR.value))
  for png in filter(None, pngs):
    print(f'plot: {png}')
  failed = [row for row in rows if row['status'] != 'done']
  if failed:
    print(f'{len(failed)} of {len(rows)} points failed; their output is in '
          f'{os.path.join(_WORKDIR.value, "<point>", "sweep.log")}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  cli.main(main)
