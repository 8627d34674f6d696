"""The kernels' visibility rule and the positional encodings against direct definitions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from attention import kernels
from attention.models import positional
from tests.test_kernels import fresh_rng, rel_err


def _visible(*args, **kw):
  """common.visible over whole rows, as [B?, Tq, Tk] (the grouped head axes dropped)."""
  return np.asarray(kernels.common.visible(*args, **kw))


def test_causal_rule_with_offset_is_the_decoding_view():
  full = _visible(jnp.arange(6), jnp.arange(6), is_causal=True)
  assert np.array_equal(full, np.tril(np.ones((6, 6), bool)))
  # Queries 4 and 5 of a 6-long sequence (e.g. during cached decoding) see keys <= their position.
  tail = _visible(jnp.arange(4, 6), jnp.arange(6), is_causal=True)
  assert np.array_equal(tail, full[4:])


def test_length_and_segment_rules():
  lengths = jnp.array([2, 1])
  by_length = _visible(jnp.arange(4), jnp.arange(4), q_lengths=lengths, kv_lengths=lengths)
  valid = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], bool)
  want = valid[:, :, None] & valid[:, None, :]
  assert np.array_equal(by_length.reshape(2, 4, 4), want)
  seg = jnp.array([[1, 1, 2, 2, 0]])
  segment = _visible(jnp.arange(5), jnp.arange(5), q_segment_ids=seg, kv_segment_ids=seg)
  assert np.array_equal(segment.reshape(5, 5), np.asarray(seg[0][:, None] == seg[0][None, :]))
  both = _visible(jnp.arange(5), jnp.arange(5), is_causal=True, q_segment_ids=seg,
                  kv_segment_ids=seg)
  assert np.array_equal(both.reshape(5, 5), segment.reshape(5, 5) & np.tril(np.ones((5, 5), bool)))
  assert kernels.common.visible(jnp.arange(3), jnp.arange(3)) is None


def test_sinusoidal_encoding_is_the_papers_formula():
  d = 10
  pe = np.asarray(positional.sinusoidal_encoding(jnp.arange(50), d))
  for pos in (0, 1, 17, 49):
    for i in range(d // 2):
      angle = pos / 10000 ** (2 * i / d)
      assert math.isclose(pe[pos, 2 * i], math.sin(angle), abs_tol=1e-5)
      assert math.isclose(pe[pos, 2 * i + 1], math.cos(angle), abs_tol=1e-5)


def test_rope_scores_depend_only_on_relative_position():
  rng, seed = fresh_rng()
  q = jnp.asarray(rng.normal(size=(1, 1, 1, 32)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(1, 1, 1, 32)), jnp.float32)

  def score(pq, pk):
    rq = positional.apply_rope(q, jnp.array([[pq]]))
    rk = positional.apply_rope(k, jnp.array([[pk]]))
    return float(jnp.sum(rq * rk))

  assert math.isclose(score(7, 3), score(107, 103), rel_tol=1e-4, abs_tol=1e-4), seed
  assert not math.isclose(score(7, 3), score(3, 7), rel_tol=1e-3)
  rotated = positional.apply_rope(q, jnp.array([[11]]))
  assert math.isclose(float(jnp.linalg.norm(rotated)), float(jnp.linalg.norm(q)), rel_tol=1e-5)


def test_alibi_slopes_follow_the_paper():
  np.testing.assert_allclose(positional.alibi_slopes(8), [2.0 ** -(i + 1) for i in range(8)])
  # 6 heads: the 4-head slopes, then every other slope of the 8-head sequence.
  np.testing.assert_allclose(positional.alibi_slopes(6),
                             [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3])


def test_alibi_slopes_in_flash_equal_alibi_bias_in_reference():
  rng, seed = fresh_rng()
  q, k, v = (jnp.asarray(rng.normal(size=(2, 19, 4, 16)), jnp.float32) for _ in range(3))
  slopes = positional.alibi_slopes(4)
  via_bias = kernels.get('reference')(q, k, v, bias=positional.alibi_bias(slopes, 19, 19),
                                      is_causal=True)
  via_slopes = kernels.get('flash')(q, k, v, alibi_slopes=slopes, is_causal=True, block_q=8,
                                    block_kv=8)
  assert rel_err(via_slopes, via_bias) < 1e-5, seed


def test_learned_positions_are_trainable_parameters():
  emb = positional.LearnedPositionalEmbedding(16, 8, rngs=nnx.Rngs(0))
  out = emb(jnp.arange(5))
  assert out.shape == (5, 8)
  params = nnx.state(emb, nnx.Param)
  grads = jax.grad(lambda p: jnp.sum(nnx.merge(nnx.graphdef(emb), p)(jnp.arange(5)) ** 2))(params)
  leaves = jax.tree_util.tree_leaves(grads)
  assert any(float(jnp.abs(g).sum()) > 0 for g in leaves)
