"""train.py and eval.py end to end, in fresh processes: a tiny run, its exact resume,
evaluation, translation of a file, attention plots, and real convergence on `copy`."""

import json
import os

import numpy as np
import pytest

from tests import e2e


# rsqrt: the resume fixture stops a run at 6 steps and extends it to 12, and a cosine
# schedule (it ends at num_steps) would change with the extension.
TINY = ['--config=configs/default.py:task=copy,model=tiny', '--config.train.batch_size=8',
        '--config.train.schedule=rsqrt',
        '--config.data.max_length=48', '--config.train.warmup_steps=4',
        '--config.train.log_every_steps=2', '--config.eval.every_steps=6',
        '--config.eval.num_examples=8', '--config.eval.test_examples=16',
        '--config.eval.batch_size=8', '--config.eval.beam_size=2',
        '--config.checkpoint.every_steps=6']


@pytest.fixture
def tiny_run(data_dir, once):
  """A finished 12-step run, and one that stopped at 6 steps and was resumed to 12; the
  stdout of the first and of the resume."""
  def build(root):
    common = TINY + [f'--config.data.data_dir={data_dir}']
    out = e2e.run('train.py', *common, '--config.train.num_steps=12', f'--workdir={root / "straight"}',
                  '--record_machine')
    assert out.returncode == 0, out.stderr[-3000:]
    first = e2e.run('train.py', *common, '--config.train.num_steps=6', f'--workdir={root / "resumed"}')
    assert first.returncode == 0, first.stderr[-3000:]
    second = e2e.run('train.py', *common, '--config.train.num_steps=12', f'--workdir={root / "resumed"}')
    assert second.returncode == 0, second.stderr[-3000:]
    return [out.stdout, second.stdout]

  root, (straight_stdout, resumed_stdout) = once('tiny_run', build)
  return root / 'straight', root / 'resumed', straight_stdout, resumed_stdout


def metrics(workdir, split):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [r for r in map(json.loads, f) if r['split'] == split]


def final_params(workdir):
  from attention.training import checkpointing, run_dir
  config = run_dir.load_config(str(workdir))
  ckpts = checkpointing.Checkpoints(str(workdir), create=False)
  try:
    state, step = ckpts.restore(run_dir.abstract_state(config))
  finally:
    ckpts.close()
  import jax
  return step, [np.asarray(x) for x in jax.tree_util.tree_leaves(state)]


@pytest.mark.slow
def test_run_writes_everything(tiny_run):
  straight, resumed, out, _ = tiny_run
  for name in ('config.json', 'vocab.json', 'metrics.jsonl', 'eval/test.json', 'eval/test.tsv'):
    assert (straight / name).exists(), name
  ran_on = json.loads((straight / 'machine.json').read_text())   # --record_machine
  assert ran_on['backend'] == 'cpu' and ran_on['isa'] and set(ran_on['devices']) == {'cpu'}
  assert not (resumed / 'machine.json').exists()   # only when asked for
  assert sorted(os.listdir(straight / 'checkpoints')) == ['12', '6']
  assert os.listdir(straight / 'checkpoints_best')
  assert any(f.startswith('events') for f in os.listdir(straight / 'tensorboard'))
  train = metrics(straight, 'train')
  assert [r['step'] for r in train] == list(range(2, 13, 2))
  for r in train:
    for key in ('loss', 'learning_rate', 'tokens_per_s', 'padding_fraction', 'grad_norm'):
      assert np.isfinite(r[key]), (key, r)
    assert 0 <= r['padding_fraction'] < 1
  assert [r['step'] for r in metrics(straight, 'validation')] == [6, 12]
  result = json.loads((straight / 'eval' / 'test.json').read_text())
  assert result['step'] == 12 and result['num_examples'] == 16
  for key in ('bleu', 'chrf', 'exact_match', 'token_accuracy'):
    assert 0.0 <= result[key] <= 100.0
  assert result['bleu_signature'].startswith('nrefs:1') and 'tok:none' in result['bleu_signature']
  assert 'forgot to detokenize' not in out
  rows = (straight / 'eval' / 'test.tsv').read_text().splitlines()
  assert rows[0] == 'source\treference\thypothesis' and len(rows) == 17
  assert 'test @ step 12' in out


@pytest.mark.slow
def test_resumed_run_is_bitwise_identical(tiny_run):
  straight, resumed, _, second = tiny_run
  assert 'resumed from step 6' in second
  strip = lambda rs: [{k: v for k, v in r.items() if not k.endswith('_per_s')} for r in rs]
  assert strip(metrics(straight, 'train')) == strip(metrics(resumed, 'train'))
  assert metrics(straight, 'validation') == metrics(resumed, 'validation')
  step_a, leaves_a = final_params(straight)
  step_b, leaves_b = final_params(resumed)
  assert step_a == step_b == 12
  for a, b in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_eval_scores_and_translates(tiny_run, tmp_path):
  straight = tiny_run[0]
  out = e2e.run('eval.py', f'--workdir={straight}', '--split=validation', '--num_examples=10',
                '--checkpoint=best', '--beam_size=1')
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads((straight / 'eval' / 'validation.json').read_text())
  assert result['num_examples'] == 10 and result['beam_size'] == 1
  assert result['checkpoint'] == 'best' and result['step'] in (6, 12)
  assert 'bleu signature: nrefs:1' in out.stdout
  # Nothing a user is not owed: orbax's notices about opening the run read-only.
  assert 'read only' not in out.stderr and 'read_only' not in out.stderr, out.stderr[-2000:]

  # One output line per input line, whatever the line holds.
  lines = [b'a b c', b'', b'zz unknown-word q', b'\xff\xfe broken bytes', b'a ' * 80, b'c b a\r']
  src = tmp_path / 'in.txt'
  src.write_bytes(b'\n'.join(lines) + b'\n')
  dst = tmp_path / 'out.txt'
  out = e2e.run('eval.py', f'--workdir={straight}', f'--input={src}', f'--output={dst}')
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'truncated' in out.stderr and ':5:' in out.stderr
  written = dst.read_text(encoding='utf-8')
  assert written.endswith('\n') and written.count('\n') == len(lines)


@pytest.mark.slow
def test_attention_plots(tiny_run):
  straight = tiny_run[0]
  out = e2e.run('eval.py', f'--workdir={straight}', '--split=test', '--plot_attention=2')
  assert out.returncode == 0, out.stderr[-3000:]
  pngs = sorted(os.listdir(straight / 'eval' / 'attention'))
  kinds = ('decoder_cross_attention', 'decoder_self_attention', 'encoder_self_attention')
  assert pngs == sorted(f'test_{i}_{k}.png' for i in range(2) for k in kinds)
  assert all((straight / 'eval' / 'attention' / p).read_bytes()[:4] == b'\x89PNG' for p in pngs)


@pytest.mark.slow
def test_dry_run_counts_parameters(data_dir):
  out = e2e.run('train.py', '--config=configs/default.py:task=copy,model=tiny', '--dry_run',
                f'--config.data.data_dir={data_dir}')
  assert out.returncode == 0, out.stderr[-3000:]
  lines = out.stdout.splitlines()
  total = int(next(line for line in lines if line.startswith('params: ')).split()[1])
  parts = [int(line.split(':')[1].replace(',', '')) for line in lines if line.startswith('  ')
           and line.strip().split(':')[0] in ('encoder', 'decoder', 'source_embedding',
                                              'encoder_norm', 'decoder_norm')]
  assert sum(parts) == total
  # tiny: 2 + 2 layers of d_model 64, d_ff 256, and a 30-word vocabulary (26 letters + 4).
  d, f, v = 64, 256, 30
  attn, ff, ln = 4 * d * d, 2 * d * f + d + f, 2 * d
  assert total == v * d + 2 * (attn + ff + 2 * ln) + 2 * (2 * attn + ff + 3 * ln) + 2 * ln


@pytest.mark.slow
def test_local_parallel_corpus_with_sentencepiece(tmp_path):
  """tsv:DIR goes the way of any TFDS translation dataset: a builder prepared as
  array_record, supervised keys, SentencePiece trained on train and kept in the run."""
  from attention.data import grammar
  rng = np.random.default_rng(0)
  g = grammar.Grammar(grammar.Lexicon.generate(0), max_clauses=1)
  corpus = tmp_path / 'corpus'
  corpus.mkdir()
  for split, n in (('train', 300), ('validation', 8), ('test', 8)):
    lines = ['\t'.join(g.pair(rng)) for _ in range(n)]
    (corpus / f'{split}.tsv').write_text('\n'.join(lines) + '\n', encoding='utf-8')
  workdir = tmp_path / 'run'
  out = e2e.run('train.py', f'--config=configs/default.py:task=copy,model=tiny',
                f'--config.task=tsv:{corpus}', f'--config.data.data_dir={tmp_path / "data"}',
                '--config.data.vocab_size=80', '--config.train.num_steps=3',
                '--config.train.batch_size=4', '--config.eval.every_steps=3',
                '--config.eval.beam_size=1', f'--workdir={workdir}')
  assert out.returncode == 0, out.stderr[-3000:]
  assert json.loads((workdir / 'vocab.json').read_text())['kind'] == 'sentencepiece'
  assert (workdir / 'spm.model').exists()
  config = json.loads((workdir / 'config.json').read_text())
  assert 60 <= config['model']['vocab_size'] <= 80
  result = json.loads((workdir / 'eval' / 'test.json').read_text())
  assert result['num_examples'] == 8
  assert list((tmp_path / 'data' / 'parallel_text').iterdir())


@pytest.mark.slow
def test_copy_converges(data_dir, tmp_path):
  """Real learning, not a smoke test: the tiny Transformer learns to copy strings of 1-40
  symbols. Standalone this takes ~55 s on 2 CPU cores (data prepared beforehand) and
  reaches 97.5% exact match on the first 200 test examples."""
  workdir = tmp_path / 'copy'
  out = e2e.run('train.py', '--config=configs/default.py:task=copy,model=tiny',
                f'--config.data.data_dir={data_dir}', '--config.train.num_steps=450',
                '--config.train.batch_size=32', '--config.train.warmup_steps=50',
                '--config.train.learning_rate=5e-3', '--config.train.schedule=rsqrt',
                '--config.model.dropout_rate=0.1', '--config.eval.every_steps=450',
                '--config.eval.beam_size=1', '--config.eval.num_examples=100',
                '--config.eval.test_examples=200', '--config.checkpoint.every_steps=1000',
                f'--workdir={workdir}')
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads((workdir / 'eval' / 'test.json').read_text())
  assert result['num_examples'] == 200
  assert result['exact_match'] >= 95.0, result
