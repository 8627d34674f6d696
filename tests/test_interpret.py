"""attention.interpret: alignment scores, head gates and importance, pruning, quantization.

Models are tiny and untrained (what is tested is the bookkeeping, not what training
learns): a gate of zero must equal the head pruned away, an alignment read off a head
must score 0 AER against itself, int8 must round-trip within half a step.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attention import models
from attention.data import pipeline, tokenizers, toy_translation
from attention.interpret import alignment, heads, maps, pruning, quantize

VOCAB = 64


@pytest.fixture(scope='module')
def lang():
  """A few `lang` examples with their gold alignments and a word vocabulary."""
  base = {c.name: c for c in toy_translation.BUILDER_CONFIGS}['lang']
  cfg = dataclasses.replace(base, name='lang_interpret', num_train=200, num_eval=12)
  examples = toy_translation.generate_examples(cfg)
  vocab = tokenizers.WordVocab.build(t for e in examples['train'] + examples['test']
                                     for t in (e['source'], e['target']))
  test = examples['test']
  return [(e['source'], e['target']) for e in test], [e['alignment'] for e in test], vocab


def model_for(vocab_size, **fields):
  return models.from_preset('tiny', vocab_size=vocab_size, rngs=nnx.Rngs(0), **fields)


def batch_of(pairs, vocab, size=16):
  return [eb.batch for eb in pipeline.eval_batches(pairs, vocab, batch_size=size,
                                                   bucket_boundaries=(16, 32, 64))]


# --- alignment ---------------------------------------------------------------------------

def test_aer_of_the_gold_alignment_is_zero_and_of_a_shuffled_one_high(lang):
  _, gold, _ = lang
  assert alignment.score(gold, gold) == {'aer': 0.0, 'accuracy': 100.0,
                                         'links': sum(map(len, gold))}
  rng = np.random.default_rng()
  shuffled = [rng.permutation(g) for g in gold]
  scores = alignment.score(shuffled, gold)
  assert scores['aer'] > 70 and scores['aer'] == pytest.approx(100 - scores['accuracy'])
  with pytest.raises(ValueError, match='target words'):
    alignment.score([gold[0][:-1]], [gold[0]])


def test_aer_counts_unaligned_gold_words_as_it_should():
  # Two target words, the second without a source word: A has 2 links, S has 1.
  assert alignment.score([[0, 1]], [[0, -1]])['aer'] == pytest.approx(100 * (1 - 2 / 3))


def test_word_attention_merges_pieces_and_picks_the_query(lang):
  """A map whose query t looks at key f(t) gives back f under `predict` (query t for
  target token t) and f shifted by one under `shift`."""
  # Words: target 3 words of tokens [0], [1, 2], [3]; source 2 words of [0, 1], [2].
  tgt_words, src_words = np.array([0, 1, 1, 2]), np.array([0, 0, 1])
  w = np.zeros((5, 4))            # T = BOS + 4 tokens, S = 3 tokens + EOS
  looks = [2, 0, 1, 2, 3]         # query t's key
  w[np.arange(5), looks] = 1.0
  words = alignment.word_attention(w, tgt_words, src_words, query='predict')
  assert words.shape == (3, 2)
  np.testing.assert_array_equal(alignment.hard_alignment(words), [1, 0, 1])   # keys 2, 0, 2
  shifted = alignment.word_attention(w, tgt_words, src_words, query='shift')
  # shift reads queries 1, 3, 4 -> keys 0, 2, EOS (dropped: no weight on any word).
  np.testing.assert_array_equal(shifted[:2].argmax(-1), [0, 1])
  assert shifted[2].sum() == 0
  with pytest.raises(ValueError, match='query'):
    alignment.word_attention(w, tgt_words, src_words, query='nope')


def test_sentencepiece_pieces_are_merged_into_words(tmp_path):
  texts = ['the big cat sees the dogs', 'some old dogs follow the cat'] * 50
  sp = tokenizers.SentencePieceTokenizer.train(texts, str(tmp_path / 'spm'), 40)
  ids = sp.encode('the cats follow')
  words = alignment.token_words(sp, ids)
  assert len(words) == len(ids) and words[0] == 0 and words[-1] == 2
  assert list(words) == sorted(words)
  vocab = tokenizers.WordVocab.build(texts)
  np.testing.assert_array_equal(alignment.token_words(vocab, vocab.encode('the cat')), [0, 1])


def test_evaluate_scores_each_head_against_a_gold_read_off_one_head(lang):
  """Gold taken from head 1 of the last decoder layer's cross-attention: that head's
  AER is 0 and the bookkeeping (batches sorted by length, rows back to pairs) holds."""
  pairs, _, vocab = lang
  model = model_for(vocab.vocab_size)
  target_layer, target_head = 'decoder/1/cross_attention', 1
  gold = []
  pad = lambda x: np.pad(x, (0, 64 - len(x)))[None]   # one shape: one compilation
  for source, target in pairs:
    ex = pipeline.encode_pair(vocab, source, target)
    w = maps.attention_maps(model, pad(ex['src']), pad(ex['tgt_in']))[target_layer][0]
    gold.append(alignment.hard_alignment(alignment.word_attention(
        w[target_head], alignment.token_words(vocab, vocab.encode(target)),
        alignment.token_words(vocab, vocab.encode(source)))))
  result = alignment.evaluate(model, vocab, pairs, gold, batch_size=5)
  assert result['layers'] == ['decoder/0/cross_attention', 'decoder/1/cross_attention']
  assert result['aer'][1][1] == 0.0 and result['best'] == {
      'layer': target_layer, 'head': 1, 'aer': 0.0, 'accuracy': 100.0}
  assert result['aer'][0][0] > 0
  assert result['links'] == sum(len(t.split()) for _, t in pairs)
  # Layers of different widths (a pruned model): each is scored with its own heads.
  pruning.prune(model, {'decoder/0/cross_attention': [0]})
  pruned = alignment.evaluate(model, vocab, pairs, gold, batch_size=5)
  assert pruned['heads'] == [3, 4] and len(pruned['aer'][0]) == 3 and pruned['best']['layer']


# --- maps: entropy and rollout -----------------------------------------------------------

def test_entropy_and_rollout_on_known_maps():
  uniform = np.full((1, 2, 3, 4), 0.25)
  np.testing.assert_allclose(maps.entropy(uniform), [np.log(4)] * 2)
  one_hot = np.zeros((1, 1, 3, 4))
  one_hot[..., 0] = 1
  np.testing.assert_allclose(maps.entropy(one_hot), [0.0], atol=1e-12)
  np.testing.assert_allclose(maps.entropy(np.concatenate([uniform[:, :1], one_hot], 2),
                                          np.array([[1, 1, 1, 0, 0, 0]])), [np.log(4)])
  eye = np.eye(4)[None, None]
  np.testing.assert_allclose(maps.rollout([eye, eye]), np.eye(4)[None])
  rng = np.random.default_rng()
  layers = [rng.dirichlet(np.ones(5), size=(2, 3, 5)) for _ in range(3)]
  r = maps.rollout(layers)
  np.testing.assert_allclose(r.sum(-1), 1.0)
  # One layer, no residual: the head average itself.
  np.testing.assert_allclose(maps.rollout(layers[:1], residual=0.0), layers[0].mean(1))


# --- heads: gates, importance, pruning ---------------------------------------------------

@pytest.fixture(scope='module')
def tiny(lang):
  pairs, _, vocab = lang
  return model_for(vocab.vocab_size), batch_of(pairs, vocab)


@nnx.jit
def _logits(model, src, tgt_in):
  return model(src, tgt_in, deterministic=True)


def logits_of(model, batch):
  return np.asarray(_logits(model, batch['src'], batch['tgt_in']))


def test_gates_of_one_change_nothing_and_a_zero_gate_is_the_head_pruned(tiny):
  model, data = tiny
  batch = data[0]
  base = logits_of(model, batch)
  gated = models.merge_model(*models.split_model(model))
  heads.add_gates(gated)
  np.testing.assert_array_equal(logits_of(gated, batch), base)
  name = 'encoder/1/self_attention'
  m = dict(maps.attention_modules(gated))[name]
  m.head_gate[...] = jnp.asarray([1.0, 0.0, 1.0, 1.0])
  masked = logits_of(gated, batch)
  assert np.abs(masked - base).max() > 1e-3
  pruned = models.merge_model(*models.split_model(model))
  pruning.prune(pruned, {name: [1]})
  np.testing.assert_allclose(logits_of(pruned, batch), masked, atol=2e-5)
  assert dict(maps.attention_modules(pruned))[name].kept_heads == (0, 2, 3)
  assert pruning.attention_parameters(model) - pruning.attention_parameters(pruned) == 4 * 64 * 16


def test_pruned_model_decodes_as_the_gated_one(tiny):
  """Decoding (the cached step, beam search) runs on the smaller projections and gives
  what the full model with the heads gated off gives."""
  from attention.models import decoding
  model, data = tiny
  remove = {'decoder/0/self_attention': [0, 2], 'decoder/1/cross_attention': [3]}
  pruned = models.merge_model(*models.split_model(model))
  pruning.prune(pruned, remove)
  gated = models.merge_model(*models.split_model(model))
  heads.add_gates(gated)
  for name, hs in remove.items():
    values = np.ones(4, np.float32)
    values[hs] = 0
    dict(maps.attention_modules(gated))[name].head_gate[...] = jnp.asarray(values)
  src = jnp.asarray(data[0]['src'][:4])
  greedy = decoding.jit_decoder(decoding.greedy_decode, max_length=12)
  beam = decoding.jit_decoder(decoding.beam_search, beam_size=3, max_length=12)
  for decode in (lambda m: greedy(m, src), lambda m: beam(m, src)[0]):
    np.testing.assert_array_equal(np.asarray(decode(pruned)), np.asarray(decode(gated)))


def test_pruning_refuses_what_it_cannot_do(tiny, lang):
  model, _ = tiny
  m = models.merge_model(*models.split_model(model))
  with pytest.raises(ValueError, match='no head'):
    pruning.prune(m, {'encoder/0/self_attention': [0, 1, 2, 3]})
  with pytest.raises(ValueError, match='no attention module'):
    pruning.prune(m, {'encoder/9/self_attention': [0]})
  with pytest.raises(ValueError, match='no head 7'):
    pruning.prune(m, {'encoder/0/self_attention': [7]})
  gqa = model_for(lang[2].vocab_size, num_kv_heads=2)
  with pytest.raises(ValueError, match='key/value'):
    pruning.prune(gqa, {'encoder/0/self_attention': [0]})
  assert pruning.amount(m, '0.25') == 6 and pruning.amount(m, '3') == 3
  for bad in ('1.5', '-1', 'x', '19'):   # 24 heads, 6 modules keep one each: at most 18
    with pytest.raises(ValueError):
      pruning.amount(m, bad)


def test_ablation_importance_is_the_loss_of_the_pruned_model(tiny):
  model, data = tiny
  batches = data[:2]
  result = heads.ablation_importance(model, batches)
  name, h = 'decoder/1/cross_attention', 2
  pruned = models.merge_model(*models.split_model(model))
  pruning.prune(pruned, {name: [h]})
  want = heads.mean_loss(pruned, batches) - heads.mean_loss(model, batches)
  assert result['base_loss'] == pytest.approx(heads.mean_loss(model, batches), rel=1e-6)
  assert result['importance'][name][h] == pytest.approx(want, abs=2e-5)
  assert set(result['importance']) == {n for n, _ in maps.attention_modules(model)}
  assert dict(maps.attention_modules(model))[name].head_gate is None   # gates removed


def test_gradient_importance_matches_finite_differences(tiny):
  model, data = tiny
  batch = data[:1]
  grads = heads.gradient_importance(model, batch, normalize=False)['importance']
  name, eps = 'encoder/0/self_attention', 1e-2
  gated = models.merge_model(*models.split_model(model))
  heads.add_gates(gated)
  gate = dict(maps.attention_modules(gated))[name].head_gate
  for h in range(4):
    losses = []
    for sign in (1, -1):
      values = np.ones(4, np.float32)
      values[h] += sign * eps
      gate[...] = jnp.asarray(values)
      losses.append(heads.mean_loss(gated, batch))
    assert grads[name][h] == pytest.approx(abs(losses[0] - losses[1]) / (2 * eps), rel=0.05, abs=1e-4)
  normalized = heads.gradient_importance(model, batch)['importance']
  assert np.linalg.norm(normalized[name]) == pytest.approx(1.0)


def test_iterative_pruning_removes_the_least_important_first(tiny):
  model, data = tiny
  batches = data[:2]
  scores = heads.gradient_importance(model, batches)['importance']
  m = models.merge_model(*models.split_model(model))
  order = pruning.prune_iteratively(m, batches, 3, method='gradient', step_fraction=0.5)
  ranked = sorted(((n, h) for n, v in scores.items() for h in range(4)),
                  key=lambda c: scores[c[0]][c[1]])
  assert order == ranked[:3]   # one round of 12: the three lowest
  assert pruning.head_count(m) == 21
  r1 = pruning.prune_iteratively(models.merge_model(*models.split_model(model)), batches, 18,
                                 method='random', seed=1)
  r2 = pruning.prune_iteratively(models.merge_model(*models.split_model(model)), batches, 18,
                                 method='random', seed=1)
  assert r1 == r2 and len(set(r1)) == 18


# --- quantization ------------------------------------------------------------------------

def test_int8_round_trip_and_bytes():
  rng = np.random.default_rng()
  w = (rng.normal(size=(7, 3, 5)) * rng.uniform(0.1, 10, size=(1, 3, 5))).astype(np.float32)
  q, scale = quantize.int8(w, (0,))
  assert q.dtype == np.int8 and scale.shape == (1, 3, 5)
  assert np.all(np.abs(q.astype(np.float32) * scale - w) <= scale * 0.5 * (1 + 1e-5))
  assert np.abs(q).max() == 127
  # A mini-sized model: int8 storage is >= 3.5x smaller than float32.
  model = models.from_preset('mini', vocab_size=500, rngs=nnx.Rngs(0))
  fp32 = quantize.parameter_bytes(model)
  assert fp32 == 4 * pruning.parameters(model)
  assert fp32 / quantize.int8_bytes(model) >= 3.5


def test_int8_and_bf16_models_stay_close_to_float32(tiny):
  model, data = tiny
  batch = data[0]
  base = logits_of(model, batch)
  for convert, tolerance in ((quantize.quantize_int8, 0.1), (quantize.to_bfloat16, 0.1)):
    m = models.merge_model(*models.split_model(model))
    convert(m)
    out = logits_of(m, batch)
    assert 0 < np.abs(out - base).max() < tolerance * np.abs(base).max()
  m = models.merge_model(*models.split_model(model))
  quantize.to_bfloat16(m)
  leaves = jax.tree_util.tree_leaves(nnx.state(m, nnx.Param))
  assert {x.dtype for x in leaves} == {jnp.dtype(jnp.bfloat16)}
  assert quantize.parameter_bytes(m) * 2 == quantize.parameter_bytes(model)


# --- eval.py end to end ------------------------------------------------------------------

@pytest.fixture
def lang_run(once):
  """A tiny `lang` run of a few steps (what is tested is the plumbing, not the scores)."""
  from tests import e2e

  def build(root):
    out = e2e.run('train.py', '--config=configs/default.py:model=tiny', f'--workdir={root / "run"}',
                  f'--config.data.data_dir={root / "data"}', '--config.train.num_steps=4',
                  '--config.train.batch_size=8', '--config.eval.every_steps=4',
                  '--config.eval.num_examples=4', '--config.eval.test_examples=4',
                  '--config.eval.beam_size=1', '--config.checkpoint.every_steps=2',
                  '--config.checkpoint.keep=2')
    assert out.returncode == 0, out.stderr[-3000:]
  return once('lang_run', build)[0] / 'run'


@pytest.mark.slow
def test_eval_measures_alignment_importance_and_smaller_models(lang_run):
  import json
  from tests import e2e
  out = e2e.run('eval.py', f'--workdir={lang_run}', '--alignment', '--num_examples=20')
  assert out.returncode == 0, out.stderr[-3000:]
  record = json.loads((lang_run / 'eval' / 'alignment_test.json').read_text())
  for query in alignment.QUERIES:
    r = record[query]
    assert len(r['aer']) == 2 and len(r['aer'][0]) == 4 and 0 <= r['best']['aer'] <= 100
    assert (lang_run / 'eval' / f'alignment_test_{query}.png').read_bytes()[:4] == b'\x89PNG'
  assert record['num_examples'] == 20 and f'AER {record["predict"]["best"]["aer"]:.1f}%' in out.stdout

  out = e2e.run('eval.py', f'--workdir={lang_run}', '--head_importance', '--split=validation',
                '--num_examples=16')
  assert out.returncode == 0, out.stderr[-3000:]
  record = json.loads((lang_run / 'eval' / 'head_importance_validation.json').read_text())
  assert set(record['ablation']) == set(record['gradient']) == set(record['entropy'])
  assert all(0 <= h <= np.log(64) for v in record['entropy'].values() for h in v)
  assert len(record['ablation']) == 6 and all(len(v) == 4 for v in record['gradient'].values())
  assert len(list((lang_run / 'eval').glob('head_importance_validation_*.png'))) == 3

  out = e2e.run('eval.py', f'--workdir={lang_run}', '--prune_heads=0.25', '--quantize=int8',
                '--num_examples=12', '--importance_examples=16', '--beam_size=1')
  assert out.returncode == 0, out.stderr[-3000:]
  record = json.loads((lang_run / 'eval' / 'test_pruned-0.25-gradient_int8.json').read_text())
  assert record['heads'] == 24 and record['heads_kept'] == 18 and len(record['pruned']) == 6
  assert record['attention_parameters_kept'] == record['attention_parameters'] * 18 // 24
  assert record['bytes'] == record['int8_bytes'] and record['bytes_ratio'] > 3
  assert record['num_examples'] == 12 and 0 <= record['bleu'] <= 100
  assert '18/24 heads' in out.stdout
