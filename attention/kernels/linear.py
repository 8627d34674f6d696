"""Kernelized linear attention (Katharopoulos et al. 2020): O(length) time and memory.

softmax(q.k) is replaced by phi(q).phi(k) with phi(x) = elu(x) + 1 > 0, so
  out_i = phi(q_i)^T S / phi(q_i)^T z,   S = sum_j phi(k_j) v_j^T,  z = sum_j phi(k_j)
with the sums over all keys (non-causal) or over j <= i (causal). The causal form works on
chunks of `chunk_size` positions: within a chunk a masked C x C product, across chunks a
prefix sum of the per-chunk S and z, so memory is O(T * C + (T / C) * H * Hv), not the
O(T * H * Hv) of a naive per-position prefix sum.

This is not softmax attention: it is compared with the exact kernels, not tested against
them. `scale` multiplies the queries before phi (default 1: no scaling, as in the paper).
Rows that attend to nothing (past q_lengths, or kv_lengths == 0) return 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from attention.kernels import common


def feature_map(x):
  return jax.nn.elu(x) + 1.0


def linear_attention(query, key, value, *, mask=None, bias=None, is_causal=False, scale=None,
                     q_segment_ids=None, kv_segment_ids=None, q_lengths=None, kv_lengths=None,
                     alibi_slopes=None, dropout_rate=0.0, dropout_rng=None, chunk_size=128):
  """Output [B, Tq, N, Hv] in the dtype of `query`; statistics kept in fp32."""
  dims = common.check_inputs(
      query, key, value, mask=mask, bias=bias, scale=scale, q_segment_ids=q_segment_ids,
      kv_segment_ids=kv_segment_ids, q_lengths=q_lengths, kv_lengths=kv_lengths,
      alibi_slopes=alibi_slopes, kernel='linear')
  common.reject('linear', mask=mask, bias=bias, q_segment_ids=q_segment_ids,
                alibi_slopes=alibi_slopes, dropout_rate=dropout_rate)
  if is_causal and dims.q_len != dims.kv_len:
    raise ValueError(f'linear: causal form needs q_len == kv_len, got {dims.q_len} and {dims.kv_len}')
  if chunk_size <= 0:
    raise ValueError(f'linear: chunk_size must be positive, got {chunk_size}')
  f32 = jnp.float32
  qf = feature_map(query.astype(f32) * (1.0 if scale is None else float(scale)))
  qf = qf.reshape(dims.batch, dims.q_len, dims.num_kv_heads, dims.groups, dims.head_dim)
  kf = feature_map(key.astype(f32))
  if kv_lengths is not None:
    kf = jnp.where((jnp.arange(dims.kv_len)[None, :] < kv_lengths[:, None])[..., None, None], kf, 0.0)
  v = value.astype(f32)
  if is_causal:
    num, den = _causal_sums(qf, kf, v, min(chunk_size, dims.q_len))
  else:
    s_BKHV = jnp.einsum('bskh,bskv->bkhv', kf, v)
    z_BKH = jnp.sum(kf, axis=1)
    num = jnp.einsum('bqkgh,bkhv->bqkgv', qf, s_BKHV)
    den = jnp.einsum('bqkgh,bkh->bqkg', qf, z_BKH)
  ok = den > 0
  if q_lengths is not None:
    ok = ok & (jnp.arange(dims.q_len)[None, :] < q_lengths[:, None])[..., None, None]
  out = jnp.where(ok[..., None], num / jnp.where(ok, den, 1.0)[..., None], 0.0)
  return out.reshape(dims.batch, dims.q_len, dims.num_heads, dims.value_dim).astype(query.dtype)


def _causal_sums(qf, kf, v, chunk):
  """Causal numerator [B, T, K, G, Hv] and denominator [B, T, K, G] by chunks."""
  b, t, kh, g, h = qf.shape
  nc = -(-t // chunk)
  pad = [(0, 0), (0, nc * chunk - t)] + [(0, 0)] * 3
  qc = jnp.pad(qf, pad).reshape(b, nc, chunk, kh, g, h)
  kc = jnp.pad(kf, pad[:4]).reshape(b, nc, chunk, kh, h)
  vc = jnp.pad(v, pad[:4]).reshape(b, nc, chunk, kh, -1)
  # Within a chunk: position i sees j <= i.
  tri = jnp.tril(jnp.ones((chunk, chunk), bool))
  a = jnp.einsum('bnqkgh,bnckh->bnkgqc', qc, kc) * tri
  num = jnp.einsum('bnkgqc,bnckv->bnqkgv', a, vc)
  den = jnp.sum(a, axis=-1).transpose(0, 1, 4, 2, 3)
  # Across chunks: everything in earlier chunks (exclusive prefix sum).
  s_chunk = jnp.einsum('bnckh,bnckv->bnkhv', kc, vc)
  z_chunk = jnp.sum(kc, axis=2)
  s_prev = jnp.cumsum(s_chunk, axis=1) - s_chunk
  z_prev = jnp.cumsum(z_chunk, axis=1) - z_chunk
  num = num + jnp.einsum('bnqkgh,bnkhv->bnqkgv', qc, s_prev)
  den = den + jnp.einsum('bnqkgh,bnkh->bnqkg', qc, z_prev)
  num = num.reshape(b, nc * chunk, kh, g, -1)[:, :t]
  den = den.reshape(b, nc * chunk, kh, g)[:, :t]
  return num, den
