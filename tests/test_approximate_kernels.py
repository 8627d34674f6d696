"""`local` against `reference` with the equivalent band mask; `linear` against its float64 formula."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attention import kernels
from tests import numpy_attention as npa
from tests.test_kernels import FWD_TOL, GRAD_TOL, fresh_rng, rel_err


def band_mask(tq, tk, left, right):
  i = np.arange(tq)[:, None]
  j = np.arange(tk)[None, :]
  return jnp.asarray((j >= i - left) & (j <= i + right))[None, None]


LOCAL_CASES = {
    # name: (B, Tq, Tk, N, K, H, (left, right), causal, extra)
    'symmetric_odd': (2, 45, 45, 2, 2, 16, (5, 5), False, {}),
    'causal_gqa': (1, 50, 50, 4, 2, 16, (7, 0), True, {}),
    'asymmetric_lengths': (2, 33, 33, 2, 1, 16, (3, 9), False, {'lengths': True}),
    'segments_alibi': (2, 40, 40, 2, 2, 16, (6, 6), False, {'segments': True, 'alibi': True}),
    'window_covers_all': (1, 21, 21, 2, 2, 32, (64, 64), False, {}),
    'cross_lengths': (1, 17, 29, 2, 2, 16, (4, 4), False, {}),
}


@pytest.mark.parametrize('name', list(LOCAL_CASES))
def test_local_equals_reference_with_band_mask(name):
  b, tq, tk, n, kh, h, (left, right), causal, extra = LOCAL_CASES[name]
  rng, seed = fresh_rng()
  q = jnp.asarray(rng.normal(size=(b, tq, n, h)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(b, tk, kh, h)), jnp.float32)
  v = jnp.asarray(rng.normal(size=(b, tk, kh, h)), jnp.float32)
  kw = {'is_causal': causal}
  if extra.get('lengths'):
    kw['q_lengths'] = jnp.asarray([tq, tq - 10], jnp.int32)
    kw['kv_lengths'] = jnp.asarray([tk - 4, 0], jnp.int32)
  if extra.get('segments'):
    seg = jnp.asarray(np.sort(rng.integers(0, 3, (b, tq)), axis=1), jnp.int32)
    kw['q_segment_ids'] = kw['kv_segment_ids'] = seg
  if extra.get('alibi'):
    kw['alibi_slopes'] = jnp.asarray([0.1, 0.4])
  local = functools.partial(kernels.get('local'), window_size=(left, right), block_q=8, **kw)
  reference = functools.partial(kernels.get('reference'), mask=band_mask(tq, tk, left, right), **kw)
  cot = jnp.asarray(rng.normal(size=(b, tq, n, h)), jnp.float32)
  out_l, vjp_l = jax.vjp(jax.jit(local), q, k, v)
  out_r, vjp_r = jax.vjp(jax.jit(reference), q, k, v)
  assert rel_err(out_l, out_r) < FWD_TOL, f'seed {seed}'
  for gl, gr in zip(vjp_l(cot), vjp_r(cot)):
    assert rel_err(gl, gr) < GRAD_TOL, f'seed {seed}'


def test_local_work_is_linear_in_length():
  """Compiled FLOPs of local attention grow x4 for x4 length (reference: x16)."""
  def flops(name, t, **kw):
    x = jax.ShapeDtypeStruct((1, t, 2, 32), jnp.float32)
    fn = functools.partial(kernels.get(name), **kw)
    return jax.jit(fn).lower(x, x, x).compile().cost_analysis()['flops']

  small, big = flops('local', 1024, window_size=64), flops('local', 4096, window_size=64)
  assert 3.5 < big / small < 4.5
  assert flops('reference', 4096) > 10 * big


LINEAR_CASES = {
    'noncausal_cross': (2, 23, 37, 4, 2, 16, 24, False, 8, False),
    'causal_chunked_odd': (2, 45, 45, 4, 4, 16, 16, True, 8, False),
    'causal_one_chunk': (1, 12, 12, 2, 1, 16, 16, True, 64, False),
    'causal_lengths': (3, 30, 30, 2, 2, 16, 16, True, 7, True),
    'noncausal_lengths': (3, 19, 30, 2, 2, 16, 16, False, 7, True),
}


@pytest.mark.parametrize('name', list(LINEAR_CASES))
def test_linear_matches_float64_formula(name):
  b, tq, tk, n, kh, h, hv, causal, chunk, lengths = LINEAR_CASES[name]
  rng, seed = fresh_rng()
  q = rng.normal(size=(b, tq, n, h))
  k = rng.normal(size=(b, tk, kh, h))
  v = rng.normal(size=(b, tk, kh, hv))
  kw = {}
  if lengths:
    kw = {'q_lengths': np.asarray([tq, 3, 11][:b], np.int32),
          'kv_lengths': np.asarray([tk, 0, 13][:b], np.int32)}
  fn = jax.jit(functools.partial(kernels.get('linear'), is_causal=causal, chunk_size=chunk))
  got = fn(*(jnp.asarray(x, jnp.float32) for x in (q, k, v)), **kw)
  want = npa.linear_attention(q, k, v, is_causal=causal, **kw)
  assert rel_err(got, want) < FWD_TOL, f'seed {seed}'


def test_linear_causal_gradients_match_quadratic_form():
  """The chunked causal scan vs the O(T^2) masked form of the same function, gradients too."""
  rng, seed = fresh_rng()
  q, k, v = (jnp.asarray(rng.normal(size=(2, 37, 2, 16)), jnp.float32) for _ in range(3))
  phi = kernels.linear.feature_map

  def quadratic(q, k, v):
    w = jnp.einsum('bqnh,bknh->bnqk', phi(q), phi(k)) * jnp.tril(jnp.ones((37, 37)))
    return jnp.einsum('bnqk,bknv->bqnv', w / jnp.sum(w, -1, keepdims=True), v)

  chunked = functools.partial(kernels.get('linear'), is_causal=True, chunk_size=8)
  cot = jnp.asarray(rng.normal(size=(2, 37, 2, 16)), jnp.float32)
  out_c, vjp_c = jax.vjp(chunked, q, k, v)
  out_q, vjp_q = jax.vjp(quadratic, q, k, v)
  assert rel_err(out_c, out_q) < FWD_TOL, f'seed {seed}'
  for gc, gq in zip(vjp_c(cot), vjp_q(cot)):
    assert rel_err(gc, gq) < GRAD_TOL, f'seed {seed}'
