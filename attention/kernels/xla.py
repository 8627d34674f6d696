"""`jax.nn.dot_product_attention` behind the project's signature.

Padding lengths and causality go to jax.nn as they are, so that on GPU
`implementation='cudnn'` can use its fused kernel; segment ids are turned into a mask
and ALiBi slopes into a bias, both materialized. jax.nn gives a fully masked row the
mean of the values; this wrapper zeroes such rows to match the other kernels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from attention.kernels import common


def xla_attention(query, key, value, *, mask=None, bias=None, is_causal=False, scale=None,
                  q_segment_ids=None, kv_segment_ids=None, q_lengths=None, kv_lengths=None,
                  alibi_slopes=None, dropout_rate=0.0, dropout_rng=None, implementation=None):
  """Exact attention via jax.nn; implementation: None (XLA picks), 'xla' or 'cudnn'."""
  dims = common.check_inputs(
      query, key, value, mask=mask, bias=bias, scale=scale, q_segment_ids=q_segment_ids,
      kv_segment_ids=kv_segment_ids, q_lengths=q_lengths, kv_lengths=kv_lengths,
      alibi_slopes=alibi_slopes, kernel='xla')
  common.reject('xla', dropout_rate=dropout_rate)
  if dims.value_dim != dims.head_dim:
    raise ValueError(f'xla: jax.nn needs value head_dim == key head_dim, got {dims.value_dim} '
                     f'and {dims.head_dim}; use the reference or flash kernel')
  q_pos = jnp.arange(dims.q_len)
  kv_pos = jnp.arange(dims.kv_len)
  if q_segment_ids is not None:
    same = q_segment_ids[:, None, :, None] == kv_segment_ids[:, None, None, :]
    mask = same if mask is None else jnp.logical_and(mask, same)
  if alibi_slopes is not None:
    alibi = common.alibi_bias(alibi_slopes, q_pos, kv_pos)[None]
    bias = alibi if bias is None else bias + alibi
  if bias is not None:
    bias = bias.astype(query.dtype)
  out = jax.nn.dot_product_attention(
      query, key, value, bias=bias, mask=mask, scale=scale, is_causal=is_causal,
      query_seq_lengths=None if q_lengths is None else q_lengths.astype(jnp.int32),
      key_value_seq_lengths=None if kv_lengths is None else kv_lengths.astype(jnp.int32),
      implementation=implementation)
  # Which query rows see at least one key, as [B, Tq, N].
  if mask is not None:
    allowed = common.visible(q_pos, kv_pos, is_causal=is_causal, q_lengths=q_lengths,
                             kv_lengths=kv_lengths, mask=mask[:, :, None])
    row_ok = jnp.any(allowed, axis=-1)[:, :, 0]
  else:
    kv_max = jnp.full((dims.batch,), dims.kv_len) if kv_lengths is None else kv_lengths
    q_max = jnp.full((dims.batch,), dims.q_len) if q_lengths is None else q_lengths
    row_ok = ((q_pos[None, :] < q_max[:, None]) & (kv_max[:, None] > 0))[:, None]
  row_ok = jnp.broadcast_to(row_ok, (dims.batch, dims.num_heads, dims.q_len)).transpose(0, 2, 1)
  return jnp.where(row_ok[..., None], out, jnp.zeros((), out.dtype))


# jax.nn.dot_product_attention has no dropout.
KERNEL = common.Kernel('xla', xla_attention, exact=True, dropout=False)
