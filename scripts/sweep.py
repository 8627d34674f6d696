r"""Runs train.py at every point of a grid of config values and tabulates the results.

  python scripts/sweep.py --config=configs/default.py:task=copy,model=tiny \
      --workdir=runs/lr_layers --sweep='train.learning_rate=[1e-3,3e-3] model.num_layers=[1,2]' \
      [--parallel=2] [--config.train.num_steps=400 ...]
  python scripts/sweep.py ... --zip='train.learning_rate=[1e-3,3e-3] train.warmup_steps=[50,100]'
  python scripts/sweep.py ... --sweep_file=configs/sweeps/copy_lr_layers.py
  python scripts/sweep.py ... --print_commands     # one train.py command per point; runs nothing
  python scripts/sweep.py ... --gpus_per_point=2   # each running point two GPUs of its own
  python scripts/sweep.py ... --launcher=ray [--ray_address=auto|HOST:PORT|ray://HOST:PORT]
      [--cpus_per_point=4 --gpus_per_point=1]      # points as Ray tasks over a cluster
  python scripts/sweep.py ... --launcher=slurm [--slurm_partition=gpu --slurm_time_min=240
      --slurm_options=account=proj,mem=32G --cpus_per_point=4 --gpus_per_point=1]
                                                   # points as a SLURM job array (submitit)

The points: the cartesian product of the --sweep lists, times the points of --zip (its
lists taken in step: the i-th values of all of them make the i-th point, so they must be
of one length), times the points of --sweep_file (a module whose get_sweep() returns a
list of override dicts; configs/sweeps has the sweep/product/zip_ helpers and an example).
Values are Python literals (3e-3, 2, True, (16, 32), 'cosine'); a bare word is a string.
The key `config` is the config string itself (--sweep="config=['task=recall,length=256',
'task=recall,length=1024']", or {'config': 'task=recall,length=256'} in a sweep file): it
replaces --config's string after the ':' for its point, for what only the string sets
(a long-range task's length).
--config.X=Y flags are fixed overrides that every point gets, before its swept ones. The
config of every point is parsed as train.py will parse it before anything runs, so a
mistyped key costs one `error:` line (exit 2) and no runs.

DIR/<point>/ is one train.py run, named after its overrides (train.learning_rate=0.001,
model.num_layers=1), with its output in sweep.log and its status, wall time, CPU time and
where it ran in sweep.json; a point whose eval/test.json exists is done and not run
again. With --launcher=local (the default) --parallel points run at a time (default: as
many as fit, each run pinned to its share of the CPUs, and with --gpus_per_point given
GPUs of its own from CUDA_VISIBLE_DEVICES or nvidia-smi); with --launcher=ray each point
is a Ray task asking for --cpus_per_point CPUs and --gpus_per_point GPUs, on the cluster
of --ray_address or, without it, one started here for the sweep; with --launcher=slurm
the points are one SLURM job array (submitit; its job files in DIR/slurm_jobs/), each
job asking for those CPUs and GPUs, and a job warned of its time limit checkpoints its
run and requeues itself (docs/experiments.md: preemption, and the paths a cluster's
nodes must share). Ctrl-C stops the running points as a preemption does (they
checkpoint; a re-run resumes them) and exits 130. DIR/lock: one sweep per directory at a
time.
DIR/results.csv and DIR/results.md hold a row per point: swept values, the last validation
metrics, the test metrics (and those of config.eval.extra_splits, e.g. test_long_bleu),
exact match per --length_bins range of source words (em_words_LO-HI, over every scored
split but validation), parameters, median train step time, peak resident memory (MiB),
wall time, status.
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

The parts: scripts/sweeping/points.py parses the sweep into points, local.py, cluster.py
(Ray) or slurm.py runs them (node.py: a run on a cluster's node), recording what
outcomes.py says, results.py and plots.py write the tables and plots.
"""

from __future__ import annotations

import os
import re
import shlex
import sys

from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)   # configs/ from a checkout

from attention import UserError, cli  # noqa: E402
from attention.training import workdir_lock  # noqa: E402
from sweeping import cluster, local, plots, results, slurm  # noqa: E402
from sweeping import points as points_lib  # noqa: E402

_CONFIG = cli.define_config_flag('Base config of every point, as for train.py.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Sweep directory: a run directory per point, '
                               'results.csv, results.md, results.png.')
_SWEEP = flags.DEFINE_string('sweep', None, "Cartesian product: 'KEY=[V1,V2,...] KEY=[...]'.")
_ZIP = flags.DEFINE_string('zip', None, "Lists taken in step: 'KEY=[V1,V2] KEY=[W1,W2]' is "
                           'the points (V1, W1), (V2, W2).')
_SWEEP_FILE = flags.DEFINE_string('sweep_file', None,
                                  'A Python file whose get_sweep() returns a list of override '
                                  "dicts, e.g. configs/sweeps/copy_lr_layers.py.")
_LAUNCHER = flags.DEFINE_enum('launcher', 'local', ['local', 'ray', 'slurm'],
                              'Where the points run: local (processes on this machine), ray '
                              '(Ray tasks on the cluster of --ray_address) or slurm (a SLURM '
                              "job array); ray and slurm: pip install '.[cluster]'.")
_RAY_ADDRESS = flags.DEFINE_string('ray_address', None,
                                   "With --launcher=ray: 'auto' (the cluster `ray start` made "
                                   "here), 'HOST:PORT' or 'ray://HOST:PORT'; unset, a cluster "
                                   'on this machine is started for the sweep.')
_SLURM_PARTITION = flags.DEFINE_string('slurm_partition', None, 'With --launcher=slurm: the '
                                       "partition of the jobs (unset: the cluster's default).")
_SLURM_TIME_MIN = flags.DEFINE_integer('slurm_time_min', 240, 'With --launcher=slurm: each '
                                       "job's time limit in minutes; a job that reaches it "
                                       'checkpoints its run and requeues itself.')
_SLURM_OPTIONS = flags.DEFINE_list('slurm_options', [], 'With --launcher=slurm: other sbatch '
                                    'options as KEY=VALUE by their long names, e.g. '
                                    'account=proj,qos=high,mem=32G.')
_SLURM_CLUSTER = flags.DEFINE_enum('slurm_cluster', 'slurm', ['slurm', 'local'],
                                   "With --launcher=slurm: slurm (sbatch) or local (submitit's "
                                   'local executor: the same jobs as processes on this machine).')
_PARALLEL = flags.DEFINE_integer('parallel', 0, 'Points run at a time (0 = as many as the CPUs, '
                                 'or GPUs, have room for; with ray or slurm, as many as the cluster '
                                 'has).')
_CPUS_PER_POINT = flags.DEFINE_integer('cpus_per_point', 0,
                                       'CPUs of each point (0 = local: an equal share of this '
                                       "machine's; ray, slurm: 1).")
_GPUS_PER_POINT = flags.DEFINE_integer('gpus_per_point', 0,
                                       'GPUs of each point, its own (local: by '
                                       'CUDA_VISIBLE_DEVICES; ray: by its GPU resources; slurm: '
                                       'by its job).')
_METRIC = flags.DEFINE_string('metric', 'test_exact_match',
                              f'The column results.png plots: {", ".join(results.METRIC_NAMES)}, '
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


flags.mark_flag_as_required('workdir')
cli.validate(_PARALLEL, lambda v: None if v >= 0 else
             f'must be >= 1, or 0 for as many as fit; got {v}')
cli.validate(_CPUS_PER_POINT, lambda v: None if v >= 0 else f'must be >= 1, or 0; got {v}')
cli.validate(_GPUS_PER_POINT, lambda v: None if v >= 0 else f'must be >= 0; got {v}')
RAY_ADDRESS = re.compile(r'auto|(ray://)?[\w.-]+:\d+')
cli.validate(_RAY_ADDRESS, lambda v: None if v is None or RAY_ADDRESS.fullmatch(v) else
             f"{v!r} is not auto, HOST:PORT or ray://HOST:PORT")
cli.validate_together([_LAUNCHER, _RAY_ADDRESS], lambda v: None if (
    v['ray_address'] is None or v['launcher'] == 'ray') else
    f"--ray_address={v['ray_address']} needs --launcher=ray")
cli.validate(_SLURM_TIME_MIN, lambda v: None if v >= 1 else f'must be >= 1; got {v}')
SLURM_FLAGS = (_SLURM_PARTITION, _SLURM_TIME_MIN, _SLURM_OPTIONS, _SLURM_CLUSTER)
cli.validate_together([_LAUNCHER, *SLURM_FLAGS], lambda v: next((
    f'--{f.name}={flags.FLAGS[f.name].serialize().partition("=")[2]} needs --launcher=slurm'
    for f in SLURM_FLAGS
    if v['launcher'] != 'slurm' and flags.FLAGS[f.name].present), None))
cli.validate(_METRIC, lambda v: None if PLOTTABLE.fullmatch(v) else
             f'{v!r} is not a column; allowed: {", ".join(results.METRIC_NAMES)}, train_ms_per_step, '
             '<split>_bleu, <split>_exact_match, em_words_LO-HI')


def main():
  bins = results.parse_bins(_LENGTH_BINS.value)
  points = points_lib.make_points(
      _WORKDIR.value, flags.FLAGS[_CONFIG.name],
      points_lib.swept_points(_SWEEP.value, _ZIP.value, _SWEEP_FILE.value))
  if _PRINT_COMMANDS.value:
    for point in points:
      print(shlex.join(point.command))
    return
  if _LAUNCHER.value == 'ray':
    cluster.require_ray()
  elif _LAUNCHER.value == 'slurm':
    slurm.require_submitit(_SLURM_CLUSTER.value)
    slurm_options = slurm.parse_options(_SLURM_OPTIONS.value)
  elif _GPUS_PER_POINT.value:   # no GPUs to give: say so before the sweep directory is made
    local.gpu_sets(local.visible_gpus(), _GPUS_PER_POINT.value, _PARALLEL.value)
  cli.check_creatable(_WORKDIR.value, '--workdir')   # made by the lock, gone again on a refusal
  lock = workdir_lock.hold(_WORKDIR.value)   # one sweep per directory; each point locks its own
  workdir_lock.announce(lock)
  try:
    if _LAUNCHER.value == 'ray':
      cluster.run_points(points, _RAY_ADDRESS.value, _PARALLEL.value, _CPUS_PER_POINT.value,
                         _GPUS_PER_POINT.value)
    elif _LAUNCHER.value == 'slurm':
      slurm.run_points(points, _WORKDIR.value, _SLURM_CLUSTER.value, _PARALLEL.value,
                       _CPUS_PER_POINT.value, _GPUS_PER_POINT.value, _SLURM_TIME_MIN.value,
                       _SLURM_PARTITION.value, slurm_options)
    else:
      local.run_points(points, _PARALLEL.value, _CPUS_PER_POINT.value, _GPUS_PER_POINT.value)
  except UserError:   # e.g. no cluster at --ray_address: a new sweep directory goes again
    workdir_lock.abandon(lock)
    raise
  rows = [results.result_row(p, bins) for p in points]
  columns = results.write_results(points, rows, _WORKDIR.value, bins)
  results.write_machine(points, _WORKDIR.value)
  print(f'results: {os.path.join(_WORKDIR.value, "results.md")}')
  if results.seeds_swept(points):
    results.write_summary(points, rows, columns, _WORKDIR.value)
    print(f'mean over seeds: {os.path.join(_WORKDIR.value, "summary.md")}')
  pngs = [plots.plot(points, rows, _METRIC.value, os.path.join(_WORKDIR.value, 'results.png'))]
  if bins:
    pngs.append(plots.plot_by_length(points, rows, bins,
                                     os.path.join(_WORKDIR.value, 'results_by_length.png')))
  pngs.append(plots.write_curves(points, _WORKDIR.value))
  for png in filter(None, pngs):
    print(f'plot: {png}')
  failed = [row for row in rows if row['status'] != 'done']
  if failed:
    print(f'{len(failed)} of {len(rows)} points failed; their output is in '
          f'{os.path.join(_WORKDIR.value, "<point>", "sweep.log")}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  cli.main(main)
