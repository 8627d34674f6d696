"""The encoder-decoder Transformer: parameter counts, masking, positional schemes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attention.models.transformer import Transformer
from configs import models


def build(preset='tiny', **overrides):
  cfg = models.get_model_config(preset)
  cfg.vocab_size = 50
  cfg.update(overrides)
  return Transformer(cfg, rngs=nnx.Rngs(0)), cfg


def closed_form_params(V, N, D, F, h, dk, dv):
  """Our architecture: shared embedding/output, no attention biases, FFN biases,
  LayerNorm scale+bias, pre-LN final norms on both stacks."""
  attn = D * h * dk * 2 + D * h * dv + h * dv * D
  ffn = D * F + F + F * D + D
  ln = 2 * D
  encoder_layer = attn + ffn + 2 * ln
  decoder_layer = 2 * attn + ffn + 3 * ln
  return V * D + N * (encoder_layer + decoder_layer) + 2 * ln


@pytest.mark.parametrize('preset,expected', [
    ('base', closed_form_params(37000, 6, 512, 2048, 8, 64, 64)),
    ('big', closed_form_params(37000, 6, 1024, 4096, 16, 64, 64)),
])
def test_parameter_count_of_paper_presets(preset, expected):
  cfg = models.get_model_config(preset)
  cfg.vocab_size = 37000
  abstract = nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))
  count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(nnx.state(abstract, nnx.Param)))
  assert count == expected
  # The paper reports 65M (base) and 213M (big) with its own vocabulary handling.
  assert abs(count - {'base': 65e6, 'big': 213e6}[preset]) / count < 0.05


@nnx.jit(static_argnames='deterministic')
def forward(model, src, tgt, deterministic=True):
  """The model's logits, compiled once per shape (eager calls dispatch op by op)."""
  return model(src, tgt, deterministic=deterministic)


def random_pair(rng, b=2, s=9, t=7, vocab=50):
  src = rng.integers(3, vocab, (b, s))
  tgt = rng.integers(3, vocab, (b, t))
  src[-1, 6:] = 0
  tgt[-1, 5:] = 0
  return jnp.asarray(src), jnp.asarray(tgt)


@pytest.mark.parametrize('positional', ['sinusoidal', 'learned', 'rope', 'alibi', 'none'])
def test_future_target_tokens_do_not_leak(positional):
  model, _ = build(positional=positional)
  rng = np.random.default_rng(0)
  src, tgt = random_pair(rng)
  logits = forward(model, src, tgt)
  assert logits.shape == (2, 7, 50) and logits.dtype == jnp.float32
  t = 3
  changed = tgt.at[:, t + 1:].set(jnp.asarray(rng.integers(3, 50, (2, 7 - t - 1))))
  changed_logits = forward(model, src, changed)
  np.testing.assert_allclose(changed_logits[:, :t + 1], logits[:, :t + 1], atol=1e-5)
  assert not np.allclose(changed_logits[0, t + 1:], logits[0, t + 1:], atol=1e-3)


@pytest.mark.parametrize('kernel', ['flash', 'reference', 'xla'])
def test_source_padding_changes_nothing(kernel):
  model, _ = build(kernel=kernel, norm='post')
  rng = np.random.default_rng(1)
  src, tgt = random_pair(rng, b=1)
  padded = forward(model, src, tgt)
  trimmed = forward(model, src[:, :6], tgt)
  more_padding = forward(model, jnp.pad(src, ((0, 0), (0, 5))), tgt)
  np.testing.assert_allclose(padded, trimmed, atol=1e-5)
  np.testing.assert_allclose(padded, more_padding, atol=1e-5)


def test_dropout_is_active_only_when_training():
  model, _ = build()
  src, tgt = random_pair(np.random.default_rng(2))
  eval_a = forward(model, src, tgt)
  eval_b = forward(model, src, tgt)
  train = forward(model, src, tgt, deterministic=False)
  np.testing.assert_array_equal(eval_a, eval_b)
  assert not np.allclose(train, eval_a, atol=1e-4)


def test_bad_model_fields_are_named():
  with pytest.raises(ValueError, match='model.positional must be one of'):
    build(positional='absolute')
  with pytest.raises(ValueError, match="model.norm must be 'pre' or 'post'"):
    build(norm='middle')
  with pytest.raises(ValueError, match='unknown attention kernel'):
    build(kernel='fast')


@pytest.mark.parametrize('rate', [0.1, 0.5])
def test_hashed_dropout_mask_statistics(rate):
  from attention.kernels import dropout
  seed = jnp.asarray(np.random.default_rng().integers(0, 2**32, 2, dtype=np.uint64), jnp.uint32)
  keep = np.asarray(dropout.keep_elements(seed, (512, 2048), rate))
  n = keep.size
  # Keep fraction within 5 standard deviations of 1 - rate.
  assert abs(keep.mean() - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / n)
  # Neighbouring elements (along rows and columns) are uncorrelated.
  for a, b in ((keep[:, 1:], keep[:, :-1]), (keep[1:], keep[:-1])):
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 5 / np.sqrt(a.size)
  other = np.asarray(dropout.keep_elements(seed ^ jnp.uint32(1), (512, 2048), rate))
  assert abs(np.corrcoef(keep.ravel(), other.ravel())[0, 1]) < 5 / np.sqrt(n)
