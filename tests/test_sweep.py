"""scripts/sweep.py: grids of train.py runs, their results table and plot, re-runs that skip
finished points, failed points, printed commands, bad input; the sweep-file helpers."""

import csv
import importlib
import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from attention.evaluation import evaluator, scores
from configs.sweeps import product, sweep, zip_
from tests import e2e

COPY_TINY = '--config=configs/default.py:task=copy,model=tiny'
# Each point trains 4 steps of a 1-layer model and decodes 4 examples greedily.
TINY = [COPY_TINY, '--config.model.num_layers=1', '--config.train.num_steps=4',
        '--config.train.batch_size=8', '--config.data.max_length=24',
        '--config.train.warmup_steps=2', '--config.train.log_every_steps=2',
        '--config.eval.every_steps=4', '--config.eval.num_examples=4',
        '--config.eval.test_examples=4', '--config.eval.batch_size=4',
        '--config.eval.beam_size=1', '--config.checkpoint.every_steps=4']
# The learning-rate sweep also scores test_long and tabulates exact match by source length.
LR_SWEEP = ['--sweep=train.learning_rate=[1e-3, 3e-3]', "--config.eval.extra_splits=('test_long',)",
            '--length_bins=1-20,21-200']



def sweep_run(*args):
  return e2e.run('scripts/sweep.py', *args)


def read_rows(workdir):
  with open(os.path.join(workdir, 'results.csv'), newline='') as f:
    return list(csv.DictReader(f))


@pytest.fixture
def lr_sweep(data_dir, once):
  """A finished 2-point learning-rate sweep (both points at once, one CPU each), and
  its stdout."""
  def build(root):
    out = sweep_run(*TINY, f'--config.data.data_dir={data_dir}', f'--workdir={root / "lr"}',
                    *LR_SWEEP)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout

  root, stdout = once('lr_sweep', build)
  return root / 'lr', stdout


@pytest.mark.slow
def test_sweep_runs_every_point_and_tabulates(lr_sweep):
  workdir, stdout = lr_sweep
  names = ['train.learning_rate=0.001', 'train.learning_rate=0.003']
  assert sorted(n for n in os.listdir(workdir) if os.path.isdir(workdir / n)) == names
  rows = read_rows(workdir)
  assert [r['train.learning_rate'] for r in rows] == ['0.001', '0.003']
  for name, row, lr in zip(names, rows, (1e-3, 3e-3)):
    assert row['status'] == 'done' and row['error'] == '', row
    for key in ('val_bleu', 'val_exact_match', 'test_bleu', 'test_exact_match'):
      assert 0.0 <= float(row[key]) <= 100.0, (key, row)
    assert float(row['val_perplexity']) > 1.0
    assert int(row['params']) > 0 and float(row['wall_s']) > 0
    assert float(row['train_ms_per_step']) > 0
    # test_long was scored too, and exact match split by source length (test: up to 20
    # words in copy's characters... every sentence lands in one of the two bins).
    long_record = json.loads((workdir / name / 'eval' / 'test_long.json').read_text())
    assert float(row['test_long_exact_match']) == pytest.approx(long_record['exact_match'])
    assert float(row['test_long_bleu']) == pytest.approx(long_record['bleu'])
    assert row['em_words_1-20'] != '' and row['em_words_21-200'] != ''
    # The swept value and the fixed flags both reached the run.
    config = json.loads((workdir / name / 'config.json').read_text())
    assert config['train']['learning_rate'] == lr and config['train']['num_steps'] == 4
    assert config['model']['num_layers'] == 1
    info = json.loads((workdir / name / 'sweep.json').read_text())
    assert info['status'] == 'done' and info['wall_s'] == float(row['wall_s'])
    assert 'test @ step 4' in (workdir / name / 'sweep.log').read_text()
  assert rows[0]['params'] == rows[1]['params']
  table = (workdir / 'results.md').read_text().splitlines()
  assert table[0].startswith('| train.learning_rate | val_bleu |') and len(table) == 4
  assert table[2].startswith('| 0.001 |') and '| done |' in table[2]
  # One key varies: results.png plots test exact match against it.
  assert (workdir / 'results.png').read_bytes()[:4] == b'\x89PNG'
  assert (workdir / 'results_by_length.png').read_bytes()[:4] == b'\x89PNG'
  curves = json.loads((workdir / 'curves.json').read_text())
  assert sorted(curves) == names and [s for s, _ in curves[names[0]]] == [2, 4]
  assert (workdir / 'curves.png').read_bytes()[:4] == b'\x89PNG'
  assert 'plot:' in stdout
  # Each run says what it was timed on; the sweep, the one kind all its points ran on.
  from attention.bench import machine
  ran_on = json.loads((workdir / names[0] / 'machine.json').read_text())
  assert ran_on['isa'] == machine.cpu()['isa'] and ran_on['devices'] and ran_on['cores'] >= 1
  assert json.loads((workdir / 'machine.json').read_text()) == ran_on


@pytest.mark.slow
def test_rerun_skips_finished_points(lr_sweep, data_dir):
  workdir, _ = lr_sweep
  names = ['train.learning_rate=0.001', 'train.learning_rate=0.003']
  before = {n: e2e.snapshot(workdir / n) for n in names}
  rows_before = read_rows(workdir)
  out = sweep_run(*TINY, f'--config.data.data_dir={data_dir}', f'--workdir={workdir}',
                  *LR_SWEEP)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.count('done already, skipped') == 2 and 'started' not in out.stdout
  assert {n: e2e.snapshot(workdir / n) for n in names} == before   # nothing trained or rewritten
  assert read_rows(workdir) == rows_before   # the wall times of the first run are kept


HEADS_SWEEP = ['--config.train.learning_rate=1e-3', '--sweep=model.num_heads=[3, 4]']


@pytest.fixture
def heads_sweep(data_dir, once):
  """num_heads=3 does not divide d_model=64: train.py rejects it; the next point still runs
  (one at a time, so it starts after the failure). The sweep's directory and output."""
  def build(root):
    out = sweep_run(*TINY, f'--config.data.data_dir={data_dir}', f'--workdir={root / "heads"}',
                    *HEADS_SWEEP, '--parallel=1')
    return dict(returncode=out.returncode, stdout=out.stdout, stderr=out.stderr)

  root, out = once('heads_sweep', build)
  return root / 'heads', out


def check_failed_point_sweep(workdir, out):
  """What a sweep with one failing point leaves, whichever launcher ran it."""
  assert out['returncode'] == 1, out['stdout'][-2000:] + out['stderr'][-2000:]
  failed, done = read_rows(workdir)
  assert failed['model.num_heads'] == '3' and failed['status'] == 'failed'
  assert failed['error'].startswith('error: config.model.num_heads=3 must divide')
  assert failed['test_exact_match'] == '' and failed['wall_s']
  assert done['model.num_heads'] == '4' and done['status'] == 'done', done
  log = (workdir / 'model.num_heads=3' / 'sweep.log').read_text().strip()
  assert log.splitlines()[-1] == failed['error']
  assert '1 of 2 points failed' in out['stderr']
  assert '| failed | error: config.model.num_heads=3' in (workdir / 'results.md').read_text()


@pytest.mark.slow
def test_failed_point_is_recorded_and_the_rest_run(heads_sweep):
  workdir, out = heads_sweep
  check_failed_point_sweep(workdir, out)
  info = json.loads((workdir / 'model.num_heads=4' / 'sweep.json').read_text())
  assert info['launcher'] == 'local' and len(info['cpus']) == len(os.sched_getaffinity(0))


def test_print_commands_runs_nothing(tmp_path):
  workdir = tmp_path / 'grid'
  out = sweep_run(COPY_TINY, f'--workdir={workdir}', '--config.train.num_steps=7',
                  "--sweep=train.schedule=[cosine, 'constant'] data.bucket_boundaries=[(8, 16)]",
                  '--zip=model.num_layers=[1,2] model.d_ff=[64,128]', '--print_commands')
  assert out.returncode == 0, out.stderr
  assert not workdir.exists()
  commands = [shlex.split(line) for line in out.stdout.splitlines()]
  assert len(commands) == 4   # 2 schedules x 1 bucket list x 2 zipped (layers, d_ff)
  first = commands[0]
  assert first[1] == 'train.py' and first[2] == COPY_TINY
  assert first[3:] == ['--config.train.num_steps=7', '--config.train.schedule=cosine',
                       '--config.data.bucket_boundaries=(8, 16)', '--config.model.num_layers=1',
                       '--config.model.d_ff=64', '--record_machine',
                       f'--workdir={workdir}/train.schedule=cosine,data.bucket_boundaries=_8,16_,'
                       'model.num_layers=1,model.d_ff=64']
  assert [c[-4:-2] for c in commands] == [
      ['--config.model.num_layers=1', '--config.model.d_ff=64'],
      ['--config.model.num_layers=2', '--config.model.d_ff=128']] * 2
  assert [c[4] for c in commands] == ['--config.train.schedule=cosine'] * 2 + [
      '--config.train.schedule=constant'] * 2


def test_sweep_file_points_and_commands(tmp_path):
  points = importlib.import_module('configs.sweeps.copy_lr_layers').get_sweep()
  assert points == [{'model.num_layers': n, 'train.learning_rate': lr, 'train.warmup_steps': w}
                    for n in (1, 2) for lr, w in ((1e-3, 25), (3e-3, 50), (1e-2, 100))]
  out = sweep_run(COPY_TINY, f'--workdir={tmp_path / "file"}', '--print_commands',
                  '--sweep_file=configs/sweeps/copy_lr_layers.py')
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  assert len(lines) == 6
  assert lines[5].endswith('--config.model.num_layers=2 --config.train.learning_rate=0.01 '
                           '--config.train.warmup_steps=100 --record_machine --workdir=' +
                           str(tmp_path / 'file') +
                           '/model.num_layers=2,train.learning_rate=0.01,train.warmup_steps=100')


# Points per study (positional and attention_vs_recurrence: three seeds of each setting).
STUDIES = {'attention_vs_recurrence': 24, 'positional': 15, 'kernels': 5, 'table3': 10,
           'long_range': 90}


@pytest.mark.parametrize('study', sorted(STUDIES))
def test_study_commands_parse(study, tmp_path):
  """Each study's recorded COMMAND is a valid sweep: every point's config checks out."""
  module = importlib.import_module(f'configs.sweeps.{study}')
  argv = [a for a in shlex.split(module.COMMAND) if not a.startswith('--workdir=')]
  assert argv[:2] == ['python', 'scripts/sweep.py']
  out = sweep_run(*argv[2:], f'--workdir={tmp_path}', '--print_commands')
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  assert len(lines) == len(module.get_sweep()) == STUDIES[study]
  if study == 'table3':   # the base point: the paper's positions, nothing else changed
    assert lines[0].endswith(f'--workdir={tmp_path}/model.positional=sinusoidal')


def test_helpers():
  assert sweep('a', [1, 2]) == [{'a': 1}, {'a': 2}]
  assert product(sweep('a', [1, 2]), sweep('b', ['x', 'y'])) == [
      {'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}, {'a': 2, 'b': 'x'}, {'a': 2, 'b': 'y'}]
  assert zip_(sweep('a', [1, 2]), sweep('b', [3, 4])) == [{'a': 1, 'b': 3}, {'a': 2, 'b': 4}]
  assert product(sweep('c', [0]), zip_(sweep('a', [1, 2]), sweep('b', [3, 4]))) == [
      {'c': 0, 'a': 1, 'b': 3}, {'c': 0, 'a': 2, 'b': 4}]
  assert product() == [{}] and product(sweep('a', [])) == []
  with pytest.raises(ValueError, match='different lengths'):
    zip_(sweep('a', [1, 2]), sweep('b', [3]))
  with pytest.raises(ValueError, match='a is swept twice'):
    product(sweep('a', [1]), sweep('a', [2]))


ERROR_CASES = [
    # (arguments besides --config and --workdir, words the message must contain)
    (['--sweep=train.learning_rat=[1e-3]'], ["'learning_rat'", 'config.train', 'learning_rate']),
    (['--sweep=model.num_layers=[1.5]'], ['--config.model.num_layers=1.5']),
    (['--sweep=model.num_layers=2'], ['--sweep', 'KEY=[V1,V2,...]']),
    (['--sweep=model.num_layers=[1,2'], ['--sweep', 'unclosed']),
    (['--sweep=model.num_layers=[]'], ['model.num_layers', 'empty']),
    (['--zip=model.num_layers=[1,2] model.d_ff=[64]'], ['different lengths']),
    ([], ['nothing to sweep']),
    (['--sweep=model.num_layers=[1]', '--config.model.num_layers=2'],
     ['model.num_layers', 'both fixed and swept']),
    (['--sweep=model.num_layers=[1,1]'], ['model.num_layers=1', 'twice']),
    (['--sweep=model.num_layers=[1]', '--config.train.nope=1'], ["'nope'", 'allowed']),
    (['--sweep=model.num_layers=[1]', '--metric=loss'], ['--metric', 'test_exact_match']),
    (['--sweep=model.num_layers=[1]', '--parallel=-1'], ['--parallel', '0 for as many as fit']),
    (['--sweep=model.num_layers=[1]', '--length_bins=10-5'], ['--length_bins', "'10-5'"]),
    (['--sweep_file=configs/sweeps/missing.py'], ['no such file']),
    (['--sweep_file=configs/default.py'], ['no get_sweep()']),
    (['--sweep=model.num_layers=[1]', '--workdir=/dev/null/sweep'],
     ['--workdir=/dev/null/sweep', 'cannot be a directory']),
    (['--sweep=model.num_layers=[1]', '--launcher=kubernetes'], ['--launcher', 'local|ray|slurm']),
    (['--sweep=model.num_layers=[1]', '--slurm_partition=gpu'],
     ['--slurm_partition=gpu', '--launcher=slurm']),
    (['--sweep=model.num_layers=[1]', '--launcher=slurm', '--slurm_time_min=0'],
     ['--slurm_time_min', '>= 1']),
    (['--sweep=model.num_layers=[1]', '--slurm_options=account=proj'],
     ['--slurm_options=account=proj', '--launcher=slurm']),
    (['--sweep=model.num_layers=[1]', '--launcher=slurm', '--slurm_cluster=local',
      '--slurm_options=account'], ['--slurm_options', "'account' is not KEY=VALUE"]),
    (['--sweep=model.num_layers=[1]', '--launcher=slurm', '--slurm_cluster=pbs'],
     ['--slurm_cluster', 'slurm|local']),
    # Without SLURM (a login node has sbatch): said before the sweep directory is made.
    *([(['--sweep=model.num_layers=[1]', '--launcher=slurm'], ['--launcher=slurm', 'no sbatch'])]
      if shutil.which('sbatch') is None else []),
    (['--sweep=model.num_layers=[1]', '--launcher=slurm', '--slurm_cluster=local',
      '--gpus_per_point=1'], ['--gpus_per_point', '--launcher=local']),
    (['--sweep=model.num_layers=[1]', '--ray_address=auto'], ['--ray_address=auto', '--launcher=ray']),
    (['--sweep=model.num_layers=[1]', '--launcher=ray', '--ray_address=head'],
     ['--ray_address', 'HOST:PORT']),
    # A port nothing listens on (Ray would retry it for minutes): refused at once.
    (['--sweep=model.num_layers=[1]', '--launcher=ray', '--ray_address=127.0.0.1:1'],
     ['--ray_address=127.0.0.1:1', 'nothing answers']),
    (['--sweep=model.num_layers=[1]', '--cpus_per_point=-1'], ['--cpus_per_point', '>= 1']),
    (['--sweep=model.num_layers=[1]', '--gpus_per_point=-1'], ['--gpus_per_point', '>= 0']),
]


@pytest.mark.parametrize('args,words', ERROR_CASES,
                         ids=[' '.join(a) or 'no sweep' for a, _ in ERROR_CASES])
def test_bad_input_is_one_line_and_runs_nothing(args, words, tmp_path):
  workdir = tmp_path / 'sweep'
  out = sweep_run(COPY_TINY, f'--workdir={workdir}', *args)
  assert out.returncode == 2, (out.stdout, out.stderr)
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), out.stderr
  for word in words:
    assert word in lines[0], (word, lines[0])
  assert not workdir.exists()


def test_exact_match_by_length(tmp_path):
  """Bins count sentences by source words, from the predictions eval wrote."""
  rows = [('a b', 'x y', 'x  y'), ('a b c', 'x', 'z'), ('a', 'q', 'q'), ('a b c d e', 'x', 'x'),
          ('a b c d e f', 'x', 'y')]
  evaluator.write_results(str(tmp_path), 'test', 1, {}, rows, {})
  read = evaluator.read_predictions(str(tmp_path), 'test')
  assert read == rows
  got = scores.exact_match_by_length(read, [(1, 2), (3, 4), (5, 9), (10, 20)])
  assert got == [100.0, 0.0, 50.0, None]


SEEDED_POINTS = r'''
import json, sys
sys.path.insert(0, 'scripts')
from sweeping import plots, results
from sweeping.points import Point, flag_text, point_name
workdir, bins = sys.argv[1], [(1, 10), (11, 20)]
def point(positional, seed):
  overrides = {'model.positional': positional, 'seed': seed}
  name = point_name(overrides)
  return Point(overrides, name, f'{workdir}/{name}', [])
def row(p, em, status='done'):
  return {**{k: flag_text(v) for k, v in p.overrides.items()}, 'val_bleu': em + 1.0,
          'val_exact_match': em, 'val_perplexity': float('nan'), 'test_bleu': em + 2.0,
          'test_exact_match': em, 'em_words_1-10': em, 'em_words_11-20': None,
          'params': 1000, 'train_ms_per_step': 10.0 * em, 'wall_s': 5.0, 'status': status,
          'error': ''}
points = [point('sinusoidal', s) for s in (0, 1, 2)] + [point('rope', s) for s in (0, 1)]
rows = [row(points[0], 60.0), row(points[1], 80.0), row(points[2], 0.0, 'failed'),
        row(points[3], 99.0), row(points[4], 100.0)]
columns = results.write_results(points, rows, workdir, bins)
results.write_summary(points, rows, columns, workdir)
print(json.dumps([plots.plot(points, rows, 'test_exact_match', f'{workdir}/results.png'),
                  plots.plot_by_length(points, rows, bins, f'{workdir}/by_length.png')]))
'''


def test_seeds_of_one_setting_are_summarized(tmp_path):
  """Points that differ only in `seed` make one row of summary.csv: the seeds done (a
  failed one is left out), and each metric's mean, min and max over them; a metric
  that is not finite (nan) or missing in every seed stays empty; the plots draw one
  line per setting."""
  out = subprocess.run([sys.executable, '-c', SEEDED_POINTS, str(tmp_path)], cwd=e2e.ROOT,
                       capture_output=True, text=True, env=e2e.environment(None, None))
  assert out.returncode == 0, out.stderr[-3000:]
  assert json.loads(out.stdout.splitlines()[-1]) == [str(tmp_path / 'results.png'),
                                                     str(tmp_path / 'by_length.png')]
  with open(tmp_path / 'summary.csv', newline='') as f:
    summary = list(csv.DictReader(f))
  assert [(r['model.positional'], r['seeds']) for r in summary] == [('sinusoidal', '2'),
                                                                    ('rope', '2')]
  sinusoidal, rope = summary
  assert 'seed' not in sinusoidal and 'wall_s' not in sinusoidal
  assert [float(sinusoidal[k]) for k in ('test_exact_match', 'test_exact_match_min',
                                         'test_exact_match_max')] == [70.0, 60.0, 80.0]
  assert float(rope['val_bleu']) == 100.5 and float(rope['train_ms_per_step_max']) == 1000.0
  assert sinusoidal['params'] == '1000' and 'params_min' not in sinusoidal
  assert sinusoidal['val_perplexity'] == sinusoidal['em_words_11-20'] == ''
  md = (tmp_path / 'summary.md').read_text().splitlines()
  assert md[0].startswith('| model.positional | seeds | val_bleu |')
  assert '| sinusoidal | 2 | 71.00 (61.00–81.00) |' in md[2]
