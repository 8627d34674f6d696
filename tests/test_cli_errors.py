"""Bad input to train.py and eval.py: one clear line naming the field and what is allowed,
a non-zero exit, no traceback, and nothing in the workdir changed."""

import os
import shutil

import pytest

from tests import e2e


COPY_TINY = '--config=configs/default.py:task=copy,model=tiny'


@pytest.fixture
def finished_run(once):
  """A 2-step run, and beside it: a run directory with its config but no checkpoint, one
  whose every checkpoint is truncated, one with a broken config.json, a corpus with a
  line that is not source<TAB>target."""
  def build(root):
    workdir = root / 'run'
    out = e2e.run('train.py', COPY_TINY, f'--workdir={workdir}',
                  f'--config.data.data_dir={root / "data"}', '--config.train.num_steps=2',
                  '--config.eval.every_steps=2', '--config.eval.num_examples=2',
                  '--config.eval.test_examples=2', '--config.eval.beam_size=1',
                  '--config.train.batch_size=4')
    assert out.returncode == 0, out.stderr[-3000:]
    empty = root / 'no_checkpoint'
    empty.mkdir()
    for name in ('config.json', 'vocab.json'):
      shutil.copy(workdir / name, empty / name)
    damaged = root / 'damaged'
    shutil.copytree(workdir, damaged)
    for base, _, files in os.walk(damaged / 'checkpoints'):
      for name in files:
        if not name.endswith(('.json', '.txt')):
          with open(os.path.join(base, name), 'r+b') as f:
            f.truncate(os.path.getsize(f.name) // 2)
    bad_config = root / 'bad_config'
    shutil.copytree(workdir, bad_config)
    (bad_config / 'config.json').write_text('{"seed": 0,')
    corpus = root / 'corpus'
    corpus.mkdir()
    (corpus / 'train.tsv').write_text('ein Haus\ta house\nno tab on this line\n')

  root, _ = once('errors', build)
  return root, root / 'run', root / 'no_checkpoint'


TRAIN_CASES = [
    # (extra arguments, words the message must contain)
    (['--workdir=/dev/null/run'], ['--workdir=/dev/null/run', 'cannot be a directory']),
    (['--config.train.nonexistent=1'], ['config.train', "'nonexistent'", 'allowed', 'num_steps']),
    (['--config.trian.num_steps=1'], ["no field 'trian'", 'train']),
    (['--config.train.num_steps=abc'], ['--config.train.num_steps', 'abc']),
    (['--config.model.dropout_rate=lots'], ['--config.model.dropout_rate']),
    (['--config=configs/default.py:task=nope'], ['task', 'nope', 'allowed', 'reverse']),
    (['--config=configs/default.py:model=huge'], ['huge', 'allowed', 'tiny']),
    (['--config=configs/default.py:colour=red'], ['colour', 'task', 'model']),
    (['--config=configs/missing.py'], ['no such config file', 'missing.py']),
    (['--config.model.kernel=fast'], ['model.kernel', 'fast', 'flash']),
    (['--config.model.positional=absolute'], ['model.positional', 'rope']),
    (['--config.model.name=gru'], ['model.name', 'lstm']),
    (['--config.model.d_model=0'], ['model.d_model', '>= 1']),
    (['--config.model.num_heads=3'], ['num_heads=3', 'd_model']),
    (['--config.model.dropout_rate=1.0'], ['model.dropout_rate', '< 1']),
    (['--config.model.attention_dropout_rate=-0.1'], ['model.attention_dropout_rate', '>= 0']),
    (['--config.train.label_smoothing=1.5'], ['train.label_smoothing']),
    (['--config.train.batch_size=0'], ['train.batch_size', '>= 1']),
    (['--config.train.learning_rate=-1.0'], ['train.learning_rate']),
    (['--config.train.schedule=linear'], ['train.schedule', 'rsqrt', 'cosine']),
    (['--config.eval.beam_size=0'], ['eval.beam_size']),
    (['--config.model.kernel=linear'], ['model.kernel=linear', 'data.pack=False']),
    (["--config.eval.extra_splits=('test_longer',)"], ['eval.extra_splits', 'test_longer',
                                                       'test_long']),
    (['--config.checkpoint.keep=0'], ['checkpoint.keep']),
    (['--config.mesh.data=3'], ['config.mesh', 'device']),
    (['--config.mesh.model=0'], ['mesh.model']),
    (['--config.data.tokenizer=bpe'], ['data.tokenizer', 'sentencepiece']),
    (['--config=configs/default.py:task=copy,model=lstm', '--config.data.pack=True'], ['data.pack', 'LSTM']),
    (['--config.task=tsv:/no/such/corpus'], ['train.tsv', '/no/such/corpus']),
    (['--config.task=no_such_dataset_xyz'], ['config.task', 'no_such_dataset_xyz', 'tsv:DIR']),
    (['--config.model.d_model=128'], ['different config', 'model.d_model', '64', '128']),
    (['--config.data.num_shards=3'], ['data.num_shards', 'batch_size']),
    (['--config.data.num_shards=-1'], ['data.num_shards', '>= 0']),
    (['--config.mesh.fsdp=maybe'], ['--config.mesh.fsdp']),
    (['--config.task=tsv:{root}/corpus'], ['train.tsv:2', 'source<TAB>target']),
    (['--num_processes=2'], ['--coordinator_address', 'together']),
    (['--coordinator_address=nohost', '--num_processes=2', '--process_id=0'],
     ['--coordinator_address', 'HOST:PORT']),
    (['--coordinator_address=localhost:1234', '--num_processes=2', '--process_id=2'],
     ['--process_id=2', '0 ... 1']),
    (['--coordinator_address=localhost:1234', '--num_processes=0', '--process_id=0'],
     ['--num_processes=0', '>= 1']),
    (['--workdir={root}/damaged'], ['every checkpoint is damaged', 'nothing was changed']),
    (['--workdir={root}/bad_config'], ['config.json', 'not a JSON config']),
    (['positional_argument'], ['unexpected arguments']),
    (['--no_such_flag=1'], ['no_such_flag']),
]


def unchanged_state(root):
  """Every file of the runs (the prepared data directory aside, which TFDS may write to)."""
  return {k: v for k, v in e2e.snapshot(root).items() if not k.startswith('data/')}


def check_one_line_error(out, words):
  """What the README promises for bad input: exit status 2, no traceback, and the error
  in one line, the last, and the only one that says error (libraries may log above it:
  orbax's warnings, TFDS's progress bars)."""
  assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
  assert 'Traceback' not in out.stderr, out.stderr[-2000:]
  lines = [line for line in out.stderr.splitlines() if line.strip()]
  errors = [line for line in lines if line.startswith('error: ')]
  assert len(errors) == 1 and lines[-1] == errors[0], out.stderr[-2000:]
  for word in words:
    assert word in errors[0], (word, errors[0])


@pytest.mark.parametrize('args,words', TRAIN_CASES, ids=[' '.join(a) for a, _ in TRAIN_CASES])
def test_train_rejects(finished_run, args, words):
  root, workdir, _ = finished_run
  before = unchanged_state(root)
  first = [] if any(a.startswith('--config=') for a in args) else [COPY_TINY]
  args = [a.format(root=root) for a in args]
  if not any(a.startswith('--workdir=') for a in args):
    args.append(f'--workdir={workdir}')
  if not any('batch_size' in a for a in args):
    args.append('--config.train.batch_size=4')   # as in the run: only `args` differ from it
  out = e2e.run('train.py', *first, *args, f'--config.data.data_dir={root / "data"}', timeout=300)
  check_one_line_error(out, words)
  assert unchanged_state(root) == before


MESH_CASES = [
    # On 8 devices.
    (['--config.mesh.data=3'], ['config.mesh', 'data=3', '8 available device']),
    (['--config.mesh.model=3'], ['config.mesh', 'model=3', '8 available device']),
    (['--config.mesh.data=16', '--config.mesh.model=1'], ['config.mesh', 'data=16']),
    (['--config.mesh.data=8', '--config.train.batch_size=12'],
     ['train.batch_size=12', 'mesh.data (8)']),
]


@pytest.mark.parametrize('args,words', MESH_CASES, ids=[' '.join(a) for a, _ in MESH_CASES])
def test_train_rejects_meshes(finished_run, args, words, tmp_path):
  """A new run refused: its workdir, made for the lock, is gone again (it is outside the
  shared runs, which other tests snapshot meanwhile)."""
  root, workdir, _ = finished_run
  before = unchanged_state(root)
  out = e2e.run('train.py', COPY_TINY, *args, f'--workdir={tmp_path / "new_run"}',
                f'--config.data.data_dir={root / "data"}', timeout=300, devices=8)
  check_one_line_error(out, words)
  assert unchanged_state(root) == before
  assert not (tmp_path / 'new_run').exists()


def test_train_requires_workdir():
  check_one_line_error(e2e.run('train.py', COPY_TINY), ['--workdir'])


@pytest.mark.parametrize('script', ['train.py', 'eval.py', 'scripts/sweep.py'])
def test_help_shows_the_docstring_and_the_flags(script):
  """absl's --help: the command's docstring, its continued lines intact, then its flags;
  a required --workdir is not asked for."""
  out = e2e.run(script, '--help')
  doc = open(os.path.join(e2e.ROOT, script)).read().split('"""')[1]
  usage = next(line for line in doc.splitlines() if line.strip().startswith('python'))
  assert usage in out.stdout and '--workdir' in out.stdout, out.stdout[-2000:]
  if script != 'eval.py':   # the config is the run's own there
    assert '--config:' in out.stdout, out.stdout[-2000:]
  assert 'error:' not in out.stderr and 'Traceback' not in out.stderr, out.stderr[-2000:]


EVAL_CASES = [
    ([], ['--workdir']),
    (['--workdir={root}/nowhere'], ['no run there']),
    (['--workdir={empty}'], ['no checkpoint']),
    (['--workdir={run}', '--checkpoint=soon'], ['--checkpoint', 'latest, best']),
    (['--workdir={run}', '--checkpoint=999'], ['999', 'allowed', '2']),
    (['--workdir={run}', '--split=dev'], ['--split', 'validation', 'test_long']),
    (['--workdir={run}', '--beam_size=0'], ['--beam_size']),
    (['--workdir={run}', '--num_examples=-1'], ['--num_examples', '>= 0']),
    (['--workdir={run}', '--input={root}/missing.txt', '--output={root}/out.txt'], ['--input', 'missing.txt']),
    (['--workdir={run}', '--input={root}/x.txt'], ['--output']),
    (['--workdir={run}', '--input={root}/x.txt', '--output=/dev/null/out.txt'], ['--output=/dev/null/out.txt', 'directory must exist']),
    (['--workdir={root}/damaged'], ['every checkpoint is damaged']),
    (['--workdir={root}/damaged', '--checkpoint=2'], ['damaged checkpoint']),
    (['--workdir={run}', '--alignment'], ['--alignment', "task='copy'", 'only lang']),
    (['--workdir={run}', '--prune_heads=1.5'], ['--prune_heads=', 'fraction in (0, 1)']),
    (['--workdir={run}', '--prune_heads=0'], ['--prune_heads=', 'integer >= 1']),
    (['--workdir={run}', '--prune_heads=99'], ['--prune_heads=99', 'at most 18 of the 24']),
    (['--workdir={run}', '--prune_heads=2', '--head_importance'], ['--head_importance',
                                                                   'one at a time']),
    (['--workdir={run}', '--alignment', '--plot_attention=2'], ['--plot_attention, --alignment',
                                                                'one at a time']),
    (['--workdir={run}', '--quantize=int4'], ['--quantize', 'int8', 'bf16']),
    (['--workdir={run}', '--prune_heads=2', '--prune_method=largest'], ['--prune_method', 'random']),
    (['--workdir={run}', '--importance_examples=-1'], ['--importance_examples', '>= 0']),
    (['--workdir={run}', '--prune_heads=inf'], ['--prune_heads=', 'integer >= 1']),
    (['--workdir={run}', '--prune_heads=2', '--split=validation'],
     ['--prune_heads with --split=validation', 'not be the one scored']),
]


@pytest.mark.parametrize('args,words', EVAL_CASES, ids=[' '.join(a) for a, _ in EVAL_CASES])
def test_eval_rejects(finished_run, args, words):
  root, workdir, empty = finished_run
  before = unchanged_state(root)
  args = [a.format(root=root, run=workdir, empty=empty) for a in args]
  check_one_line_error(e2e.run('eval.py', *args, timeout=300), words)
  assert unchanged_state(root) == before


# The benchmark scripts: every flag checked before anything is compiled, run or written.
SCRIPT_CASES = [
    ('scripts/bench_attention.py', ['--candidates=flash,nope'], ["--candidates: unknown 'nope'", 'jax.nn']),
    ('scripts/bench_attention.py', ['--candidates=flash:512'], ['flash:BQxBK']),
    ('scripts/bench_attention.py', ['--lengths=1k'], ['--lengths', 'integers']),
    ('scripts/bench_attention.py', ['--causal=maybe'], ['--causal', 'true, false']),
    ('scripts/bench_attention.py', ['--passes=bwd'], ["--passes: 'bwd'", 'fwd_bwd']),
    ('scripts/bench_attention.py', ['--repeats=0'], ['--repeats: must be positive']),
    ('scripts/bench_attention.py', ['--out_dir=/dev/null/bench'], ['--out_dir: cannot create']),
    ('scripts/bench_model.py', ['--meshes=4x'], ["--meshes: '4x' is not DATAxMODEL"]),
    ('scripts/bench_model.py', ['--meshes=4x2'], ['--meshes: 4x2 needs 8 devices']),
    ('scripts/bench_model.py', ['--skip=beem'], ["--skip: 'beem'", 'uncached']),
    ('scripts/bench_model.py', ['--config.model.kernel=nope'], ['kernel', 'flash']),
    ('scripts/bench_model.py', ['extra'], ['unexpected arguments']),
    ('scripts/bench_model.py', ['--config.model.positional=learned', '--config.model.max_length=16'],
     ['model.max_length=16', 'data.max_length=64']),   # the longest length the script feeds
    ('scripts/bench_model.py', ['--lengths=256,1k'], ['--lengths', 'positive integers']),
    ('scripts/bench_model.py', ['--lengths=256', '--kernels=flash,nope'],
     ["--kernels: unknown kernel 'nope'", 'linear']),
    ('scripts/bench_model.py', ['--memory_limit_gib=0'], ['--memory_limit_gib', 'must be > 0']),
    ('scripts/bench_model.py', ['--lengths=256', '--out_dir=/dev/null/x'],
     ['--out_dir=/dev/null/x: cannot be a directory']),
    ('scripts/long_range_report.py', ['--study_dir={root}/nowhere'],
     ['--study_dir=', 'no results.csv']),
    ('scripts/interpret_study.py', [], ['--runs']),
    ('scripts/interpret_study.py', ['--runs={root}/nowhere'], ['--runs=', 'no run there']),
    ('scripts/interpret_study.py', ['--runs=x', '--fractions=0.25,1.5'],
     ['--fractions', 'in (0, 1)']),
    ('scripts/interpret_study.py', ['--runs=x', '--methods=gradient,best'], ['--methods', 'best']),
    ('scripts/interpret_study.py', ['--runs=x', '--repeats=0'], ['--repeats: must be positive']),
    ('scripts/interpret_study.py', ['--runs=x', '--importance_examples=-1'],
     ['--importance_examples', '>= 0']),
    ('scripts/interpret_study.py', ['--runs={precious}', '--out_dir=/dev/null/x'],
     ['--out_dir=/dev/null/x: cannot be a directory']),
    ('scripts/ab_kernel.py', ['--rev=no-such-rev'], ['--rev/--against', 'no-such-rev']),
    ('scripts/bench_sweep.py', ['--workdir={precious}'], ['--workdir', 'did not make']),
    ('scripts/bench_sweep.py', ['--steps=0', '--workdir={root}/scratch'], ['--steps: must be positive']),
]


@pytest.mark.parametrize('script,args,words', SCRIPT_CASES,
                         ids=[f'{s.split("/")[1]} {" ".join(a)}' for s, a, _ in SCRIPT_CASES])
def test_scripts_reject(tmp_path, script, args, words):
  """One line naming the flag, exit status 2, and nothing written or deleted: bench_sweep
  empties its workdir, so it must refuse one that it did not make."""
  precious = tmp_path / 'precious'
  precious.mkdir()
  (precious / 'keep.txt').write_text('mine')
  args = [a.format(precious=precious, root=tmp_path) for a in args]
  out = e2e.run(script, *args, timeout=300, devices=1)   # whatever XLA_FLAGS pytest runs under
  check_one_line_error(out, words)
  assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
  assert (precious / 'keep.txt').read_text() == 'mine'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['precious']
