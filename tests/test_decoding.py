"""Cached decoding, greedy, sampling and beam search, for the Transformer and the LSTM."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attention import kernels, models
from attention.models import decoding
from configs import models as model_configs

VOCAB = 13


def build(name='transformer', **overrides):
  cfg = model_configs.get_model_config('tiny')
  # Untied output weights: a tied random model mostly predicts its input token back,
  # which makes every decoder look alike.
  cfg.update(vocab_size=VOCAB, dropout_rate=0.0, share_embeddings=False, d_model=32,
             d_ff=64, name=name, max_length=32)
  cfg.update(overrides)
  return models.build(cfg, rngs=nnx.Rngs(0))


def sources(rng, batch=4, length=7):
  """Random sources; rows 1 and 3 (when present) are right-padded."""
  src = rng.integers(4, VOCAB, (batch, length))
  src[1:2, 4:] = 0
  src[3:4, 2:] = 0
  return jnp.asarray(src)


@nnx.jit
def stepwise_and_parallel_logits(model, src, tgt_in):
  """Logits [B, T, V] from T cached decode steps, and from one teacher-forced pass."""
  def step(cache, inputs):
    t, tokens = inputs
    logits, cache = model.decode_step(cache, tokens, t)
    return cache, logits

  steps = jnp.arange(tgt_in.shape[1])
  _, logits_TBV = jax.lax.scan(step, model.start_decoding(src, tgt_in.shape[1]),
                               (steps, tgt_in.T))
  return jnp.swapaxes(logits_TBV, 0, 1), model(src, tgt_in)


def random_batch():
  """Fresh sources [4, 7] (two rows padded) and decoder inputs [4, 9]."""
  rng = np.random.default_rng()
  return sources(rng), jnp.asarray(rng.integers(4, VOCAB, (4, 9)))


CACHE_CASES = ([dict(positional=p, kernel=k)
                for p in ('sinusoidal', 'learned', 'rope', 'alibi', 'none')
                for k in kernels.EXACT]
               + [dict(positional='sinusoidal', kernel='local', kernel_options={'window_size': 3}),
                  dict(positional='rope', kernel='linear')]
               + [dict(name='lstm', rnn_attention=a) for a in ('none', 'luong', 'bahdanau')])


@pytest.mark.parametrize('overrides', CACHE_CASES,
                         ids=lambda o: '-'.join(str(v) for k, v in o.items() if k != 'kernel_options'))
def test_cached_steps_equal_the_parallel_forward_pass(overrides):
  model = build(**overrides)
  src, tgt_in = random_batch()
  stepwise, parallel = stepwise_and_parallel_logits(model, src, tgt_in)
  np.testing.assert_allclose(stepwise, parallel, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('attention', ['none', 'luong', 'bahdanau'])
def test_lstm_masks_hold(attention):
  model = build('lstm', rnn_attention=attention)
  src, tgt_in = random_batch()
  logits = model(src, tgt_in)
  longer = jnp.pad(src, ((0, 0), (0, 3)))
  np.testing.assert_allclose(model(longer, tgt_in), logits, atol=1e-6)
  t = 4
  changed = tgt_in.at[:, t + 1:].set((tgt_in[:, t + 1:] + 1) % VOCAB)
  np.testing.assert_allclose(model(src, changed)[:, :t + 1], logits[:, :t + 1], atol=1e-6)


DECODING_MODELS = {
    'transformer': {},
    'transformer-alibi-local': dict(positional='alibi', kernel='local',
                                    kernel_options={'window_size': 2}),
    'transformer-rope-linear': dict(positional='rope', kernel='linear', num_kv_heads=2),
    'lstm': dict(name='lstm', rnn_attention='luong'),
}


@functools.lru_cache(maxsize=None)
def decoding_model(name):
  """A random model and an EOS id it emits often enough for rows to end.

  A random model rarely predicts the real EOS id, and decoders that never stop test
  little, so EOS is taken to be the token greedy decoding emits most after step 0.
  """
  model = build(**DECODING_MODELS[name])
  src = sources(np.random.default_rng(0), batch=16)
  free_running = decoding.jit_decoder(decoding.greedy_decode, max_length=8, eos_id=-1)(model, src)
  eos = int(np.bincount(np.asarray(free_running[:, 1:]).ravel(), minlength=VOCAB).argmax())
  return model, eos


@pytest.mark.parametrize('name', ['transformer', 'lstm'])
def test_beam_of_one_is_greedy(name):
  model, eos = decoding_model(name)
  # Fixed sources: the check below needs rows that end and rows that do not, which
  # fresh random rows of a random model do not always give.
  src = sources(np.random.default_rng(1), batch=12)
  greedy = decoding.jit_decoder(decoding.greedy_decode, eos_id=eos, max_length=12)(model, src)
  beam, _ = decoding.jit_decoder(decoding.beam_search, eos_id=eos, beam_size=1, max_length=12,
                                 alpha=0.6)(model, src)
  np.testing.assert_array_equal(beam[:, 0], greedy)
  ended = np.any(np.asarray(greedy) == eos, axis=1)
  assert ended.any() and not ended.all(), 'rows should both end and run to max_length'


@pytest.mark.parametrize('name', list(DECODING_MODELS))
def test_beam_scores_are_the_model_log_probabilities(name):
  model, eos = decoding_model(name)
  src = sources(np.random.default_rng(), batch=3)
  beams, alpha = 4, 0.6
  tokens, scores = decoding.jit_decoder(decoding.beam_search, eos_id=eos, beam_size=beams, max_length=12,
                                        alpha=alpha)(model, src)
  assert tokens.shape == (3, beams, 12) and scores.shape == (3, beams)
  flat = tokens.reshape(3 * beams, -1)
  logp = decoding.sequence_log_prob(model, jnp.repeat(src, beams, axis=0), flat, eos_id=eos)
  expected = logp / decoding.length_penalty(decoding.output_lengths(flat, eos), alpha)
  np.testing.assert_allclose(scores.reshape(-1), expected, atol=1e-4, rtol=1e-4)
  assert np.all(np.diff(np.asarray(scores), axis=1) <= 0), 'beams not sorted best first'
  # Distinct hypotheses, and nothing after EOS.
  for row in np.asarray(tokens):
    assert len({tuple(h) for h in row}) == beams
    for hyp in row:
      ends = np.flatnonzero(hyp == eos)
      if ends.size:
        assert not hyp[ends[0] + 1:].any()


def test_wider_beams_find_better_scores():
  model, eos = decoding_model('transformer')
  src = sources(np.random.default_rng(), batch=8)
  best = [decoding.jit_decoder(decoding.beam_search, eos_id=eos, beam_size=k, max_length=12,
                               alpha=0.0)(model, src)[1][:, 0] for k in (1, 4)]
  # Not guaranteed row by row (a wider beam can prune differently), but on average.
  assert float(jnp.mean(best[1])) >= float(jnp.mean(best[0]))


@pytest.mark.parametrize('name', ['transformer', 'lstm'])
def test_uncached_greedy_gives_the_same_tokens(name):
  model, eos = decoding_model(name)
  src = sources(np.random.default_rng(), batch=5)
  cached = decoding.jit_decoder(decoding.greedy_decode, eos_id=eos, max_length=10)(model, src)
  uncached = decoding.jit_decoder(decoding.uncached_greedy_decode, eos_id=eos, max_length=10)(model, src)
  np.testing.assert_array_equal(cached, uncached)


def test_rows_decode_independently_of_their_batch():
  model, eos = decoding_model('transformer')
  src = sources(np.random.default_rng(), batch=4)
  greedy = decoding.jit_decoder(decoding.greedy_decode, eos_id=eos, max_length=10)
  beam = decoding.jit_decoder(decoding.beam_search, eos_id=eos, beam_size=3, max_length=10)
  batch_greedy = greedy(model, src)
  batch_beam, batch_scores = beam(model, src)
  for i in (1, 3):  # the padded rows, alone and without their padding
    alone = src[i:i + 1, :int(jnp.sum(src[i] != 0))]
    np.testing.assert_array_equal(greedy(model, alone)[0], batch_greedy[i])
    tokens, scores = beam(model, alone)
    np.testing.assert_array_equal(tokens[0], batch_beam[i])
    np.testing.assert_allclose(scores[0], batch_scores[i], atol=1e-5)


def test_sampling():
  model, eos = decoding_model('transformer')
  src = sources(np.random.default_rng(), batch=8)
  greedy = decoding.jit_decoder(decoding.greedy_decode, eos_id=eos, max_length=10)(model, src)
  key = jax.random.key(np.random.default_rng().integers(1 << 31))
  top1 = decoding.jit_decoder(decoding.sample_decode, eos_id=eos, max_length=10, top_k=1)(model, src, key)
  np.testing.assert_array_equal(top1, greedy)

  top3 = decoding.jit_decoder(decoding.sample_decode, eos_id=eos, max_length=10, top_k=3,
                              temperature=2.0)
  a, b = top3(model, src, key), top3(model, src, key)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, top3(model, src, jax.random.fold_in(key, 1)))
  # Every sampled token is among the 3 most probable (PAD, BOS aside) given its prefix.
  tgt_in = jnp.concatenate([jnp.ones_like(a[:, :1]), a[:, :-1]], axis=1)
  logits = model(src, tgt_in).at[..., :2].set(-jnp.inf)  # PAD, BOS: never sampled
  rank = jnp.sum(logits > jnp.take_along_axis(logits, a[..., None], -1), axis=-1)
  live = decoding.output_lengths(a, eos)[:, None] > jnp.arange(a.shape[1])[None, :]
  assert int(jnp.max(jnp.where(live, rank, 0))) < 3


def test_bad_decoding_arguments():
  model, eos = decoding_model('transformer')
  src = sources(np.random.default_rng(), batch=1)
  with pytest.raises(ValueError, match='beam_size must be >= 1'):
    decoding.beam_search(model, src, beam_size=0, max_length=4)
  with pytest.raises(ValueError, match='temperature and top_k must be >= 0'):
    decoding.sample_decode(model, src, jax.random.key(0), max_length=4, temperature=-1.0)
  learned = build(positional='learned', max_length=8)
  with pytest.raises(ValueError, match='exceeds model.max_length'):
    learned.start_decoding(src, 9)


@pytest.mark.parametrize('attention', ['luong', 'bahdanau'])
def test_lstm_attention_weights_are_distributions_over_real_source_tokens(attention):
  model = build('lstm', rnn_attention=attention)
  rng = np.random.default_rng()
  src = sources(rng)
  weights = model.cross_attention_weights(src, jnp.asarray(rng.integers(4, VOCAB, (4, 5))))
  assert weights.shape == (4, 5, 7)
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
  assert not np.any(np.asarray(weights)[np.broadcast_to(np.asarray(src == 0)[:, None], weights.shape)])
