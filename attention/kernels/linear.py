"""Kernelized linear attention (Katharopoulos et al. 2020): O(length) time and memory.

softmax(q.k) is replaced by phi(q).phi(k) with phi(x) = elu(x) + 1 > 0, so
  out_i = phi(q_i)^T S / phi(q_i)^T z,   S = sum_j phi(k_j) v_j^T,  z = sum_j phi(k_j)
with the sums over all keys (non-causal) or over j <= i (causal). The causal form works on
chunks of `chunk_size` positions: within a chunk a masked C x C product, across chunks the
running S and z carried by a scan, so the work of one step is one chunk and memory is
O(T * H + (T / C) * H * Hv) (the scan keeps each chunk's incoming S for the backward pass).

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
  b, kh, g = dims.batch, dims.num_kv_heads, dims.groups
  q_scale = 1.0 if scale is None else float(scale)
  # Padded block positions (>= kv_len) must never count, whatever kv_lengths says.
  kv_valid = jnp.minimum(dims.kv_len if kv_lengths is None else kv_lengths, dims.kv_len)
  kv_valid = jnp.broadcast_to(kv_valid, (b,))
  q_valid = jnp.full((b,), dims.q_len) if q_lengths is None else q_lengths

  # Feature maps and normalization are closures applied where their inputs are used (per
  # chunk inside the causal scan; fused into the head-major transposes of the non-causal
  # form) rather than as whole-length fp32 copies up front.
  def phi_q(q_blk):      # [B, C, N, H] -> [B, C, K, G, H] fp32
    q_blk = feature_map(q_blk.astype(jnp.float32) * q_scale)
    return q_blk.reshape(*q_blk.shape[:2], kh, g, dims.head_dim)

  def phi_k(k_blk, pos):  # [B, C, K, H] -> fp32, zero past kv_lengths
    live = pos[None, :] < kv_valid[:, None]
    return jnp.where(live[..., None, None], feature_map(k_blk.astype(jnp.float32)), 0.0)

  def normalize(num, den, pos):   # [B, C, K, G, Hv], [B, C, K, G] -> [B, C, N, Hv]
    ok = (den > 0) & (pos[None, :] < q_valid[:, None])[..., None, None]
    out = jnp.where(ok[..., None], num / jnp.where(ok, den, 1.0)[..., None], 0.0)
    return out.reshape(*out.shape[:2], dims.num_heads, dims.value_dim).astype(query.dtype)

  if is_causal:
    return _causal(query, key, value, min(chunk_size, dims.q_len), phi_q, phi_k, normalize,
                   (kv_valid, q_valid))
  return _non_causal(query, key, value, phi_q, phi_k, normalize)


def _to_blocks(x, size):
  """[B, T, ...] -> [n, B, size, ...], zero-padded; n = ceil(T / size)."""
  n = -(-x.shape[1] // size)
  x = jnp.pad(x, [(0, 0), (0, n * size - x.shape[1])] + [(0, 0)] * (x.ndim - 2))
  return jnp.moveaxis(x.reshape(x.shape[0], n, size, *x.shape[2:]), 1, 0)


def _from_blocks(x, length):
  """[n, B, size, ...] -> [B, length, ...]."""
  x = jnp.moveaxis(x, 0, 1)
  return x.reshape(x.shape[0], -1, *x.shape[3:])[:, :length]


def _non_causal(query, key, value, phi_q, phi_k, normalize):
  """Sum S = [sum_j phi(k_j) v_j, sum_j phi(k_j)] over all keys, then apply it to every query.

  Head-major ([B, K, T, H]): the two products then batch over leading axes and the
  transposes fuse with the feature maps, which made it faster than token-major einsums with
  a separate denominator (timed old against new: docs/development_log.md).
  """
  to_heads = lambda x: jnp.swapaxes(x, 1, 2)       # [B, T, K, ...] -> [B, K, T, ...]
  k = to_heads(phi_k(key, jnp.arange(key.shape[1])))
  v = value.astype(jnp.float32)
  v = jnp.concatenate([v, jnp.ones_like(v[..., :1])], axis=-1)    # the column of ones gives z
  s_BKHV = jnp.einsum('bksh,bksv->bkhv', k, to_heads(v))
  q = phi_q(query).transpose(0, 2, 3, 1, 4)          # [B, K, G, Tq, H]
  nd = jnp.einsum('bkgqh,bkhv->bkgqv', q, s_BKHV).transpose(0, 3, 1, 2, 4)
  return normalize(nd[..., :-1], nd[..., -1], jnp.arange(query.shape[1]))


def _causal(query, key, value, chunk, phi_q, phi_k, normalize, lengths):
  """lengths: (kv_valid, q_valid), which phi_k and normalize close over.

  A scan over chunks carries the running S and z: within a chunk a masked C x C product,
  from earlier chunks the carried sums. An iteration's working set is one chunk whatever
  the length (the earlier parallel form materialized every chunk's prefix sum and scores at
  once, so its memory grew with the length; BENCHMARKS.md has the growth). The denominator is not folded
  into S here as in the non-causal form: within a chunk it is a cheap row sum of the
  scores, and an Hv + 1 wide value made the chunk products slower (measured)."""
  tri = jnp.tril(jnp.ones((chunk, chunk), bool))

  def step(state, xs):
    s_BKHV, z_BKH = state
    q_raw, k_raw, v_raw, pos = xs
    q, k, v = phi_q(q_raw), phi_k(k_raw, pos), v_raw.astype(jnp.float32)
    a = jnp.einsum('bqkgh,bckh->bkgqc', q, k) * tri       # within the chunk: j <= i
    num = (jnp.einsum('bkgqc,bckv->bqkgv', a, v)
           + jnp.einsum('bqkgh,bkhv->bqkgv', q, s_BKHV))  # plus all earlier chunks
    den = jnp.sum(a, axis=-1).transpose(0, 3, 1, 2) + jnp.einsum('bqkgh,bkh->bqkg', q, z_BKH)
    state = (s_BKHV + jnp.einsum('bckh,bckv->bkhv', k, v), z_BKH + jnp.sum(k, axis=1))
    return state, normalize(num, den, pos)

  b, _, kh, h = key.shape
  inputs = (query, key, value, lengths)   # what the carry is computed from (shard_map typing)
  # Split over B and K as the key is (explicit-sharding meshes): else the carry's type is
  # replicated, and every step all-gathers the sums it computes.
  zeros_BKH = jnp.zeros_like(key[:, 0], jnp.float32)
  state = (common.full_like_inputs((b, kh, h, value.shape[-1]), 0.0, *inputs)
           + zeros_BKH[..., None], common.full_like_inputs((b, kh, h), 0.0, *inputs) + zeros_BKH)
  q_blocks, k_blocks, v_blocks = (_to_blocks(x, chunk) for x in (query, key, value))
  pos = jnp.arange(q_blocks.shape[0] * chunk).reshape(-1, chunk)   # [n, C]
  _, out = jax.lax.scan(step, state, (q_blocks, k_blocks, v_blocks, pos))
  return _from_blocks(out, query.shape[1])


# No softmax to drop weights from, no per-pair scores for ALiBi or segment ids to mask; a
# decode step over a cached prefix is the causal form at its last row.
KERNEL = common.Kernel(
    'linear', linear_attention, options=lambda model_cfg: {'chunk_size': model_cfg.linear_chunk},
    packing=False, alibi=False, dropout=False, feature_map=feature_map)
