"""The shared beam cache step against attention over each beam's explicitly gathered history."""

import os
import secrets

import numpy as np
import pytest

from attention.kernels import beam_cache, linear


def gathered_reference(q, k, v, ancestry, kv_length, bias=None, mask=None, feature_map=None):
  """float64 NumPy: beam (b, k) attends over keys k[b, ancestry[b, k, s], s] for s < kv_length."""
  b, beams, n, h = q.shape
  kh = k.shape[3]
  g = n // kh
  out = np.zeros((b, beams, n, v.shape[-1]))
  for bi in range(b):
    for ki in range(beams):
      rows = ancestry[bi, ki]
      keys = k[bi, rows, np.arange(k.shape[2])]        # [T, KH, H]
      vals = v[bi, rows, np.arange(v.shape[2])]
      for ni in range(n):
        kv_head = ni // g
        visible = np.arange(k.shape[2]) < kv_length
        if mask is not None:
          visible &= mask
        if feature_map is None:
          s = keys[:, kv_head] @ q[bi, ki, ni] / np.sqrt(h)
          if bias is not None:
            s = s + bias[ni]
          s = np.where(visible, s, -np.inf)
          w = np.exp(s - s.max())
        else:
          phi = lambda x: np.where(x > 0, x + 1, np.exp(x))
          w = np.where(visible, phi(keys[:, kv_head]) @ phi(q[bi, ki, ni]), 0.0)
        out[bi, ki, ni] = (w / w.sum()) @ vals[:, kv_head]
  return out


@pytest.mark.parametrize('case', ['softmax', 'gqa', 'alibi+window', 'linear', 'one_beam'])
def test_matches_attention_over_gathered_history(case):
  seed = int(os.environ.get('ATTENTION_TEST_SEED', secrets.randbits(32)))
  print(f'seed {seed} (ATTENTION_TEST_SEED={seed} replays it)')
  rng = np.random.default_rng(seed)
  b, beams, t, n, kh, h, dv = 2, 3, 7, 4, 4, 5, 6
  if case == 'gqa':
    kh = 2
  if case == 'one_beam':
    beams = 1
  q = rng.standard_normal((b, beams, n, h))
  k = rng.standard_normal((b, beams, t, kh, h))
  v = rng.standard_normal((b, beams, t, kh, dv))
  ancestry = rng.integers(0, beams, (b, beams, t)).astype(np.int32)
  kv_length = 5
  kw, ref_kw = {}, {}
  if case == 'alibi+window':
    bias = -rng.uniform(0, 1, (n, 1)) * np.abs(np.arange(t) - 4)[None, :]
    mask = np.arange(t) >= 2
    kw = {'bias_NT': np.float32(bias), 'mask_T': mask}
    ref_kw = {'bias': bias, 'mask': mask}
  if case == 'linear':
    kw = {'feature_map': linear.feature_map}
    ref_kw = {'feature_map': True}
  f32 = lambda x: np.asarray(x, np.float32)
  out = beam_cache.beam_cache_attention(f32(q), f32(k), f32(v), ancestry, kv_length, **kw)
  expected = gathered_reference(q, k, v, ancestry, kv_length, **ref_kw)
  np.testing.assert_allclose(out, expected, atol=2e-5, rtol=2e-5)
