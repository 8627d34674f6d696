"""The textbook definition: softmax(Q K^T / sqrt(d_k) + bias) V, materializing the logits.

Memory is O(Tq * Tk) per head; this kernel is the readable definition the others are
tested against, and the one that can hand back its attention weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from attention.kernels import common
from attention.kernels import dropout as dropout_lib


def attention_weights(query, key, *, mask=None, bias=None, is_causal=False, scale=None,
                      q_segment_ids=None, kv_segment_ids=None, q_lengths=None,
                      kv_lengths=None, alibi_slopes=None, kernel='reference'):
  """Softmax weights [B, N, Tq, Tk] in float32; rows that attend to nothing are all 0."""
  dims = common.check_inputs(
      query, key, key, mask=mask, bias=bias, scale=scale, q_segment_ids=q_segment_ids,
      kv_segment_ids=kv_segment_ids, q_lengths=q_lengths, kv_lengths=kv_lengths,
      alibi_slopes=alibi_slopes, kernel=kernel)
  q_BKGTH = common.group_query(query, dims)
  k_BKSH = jnp.swapaxes(key, 1, 2)
  logits = jnp.einsum('bkgqh,bksh->bkgqs', q_BKGTH, k_BKSH,
                      preferred_element_type=jnp.float32)
  logits = logits * common.default_scale(scale, dims.head_dim)
  q_pos = jnp.arange(dims.q_len)
  kv_pos = jnp.arange(dims.kv_len)
  logits = common.add_position_bias(
      logits, q_pos, kv_pos,
      bias=None if bias is None else common.group_heads(bias, dims.num_kv_heads),
      alibi_slopes=alibi_slopes, num_kv_heads=dims.num_kv_heads)
  allowed = common.visible(
      q_pos, kv_pos, is_causal=is_causal, q_lengths=q_lengths, kv_lengths=kv_lengths,
      q_segment_ids=q_segment_ids, kv_segment_ids=kv_segment_ids,
      mask=None if mask is None else common.group_heads(mask, dims.num_kv_heads))
  if allowed is not None:
    # -inf (not a large negative number) so that masked logits get exactly zero weight
    # and zero gradient; the row max below guards rows that are entirely -inf.
    logits = jnp.where(allowed, logits, -jnp.inf)
  row_max = jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
  row_max = jnp.where(jnp.isfinite(row_max), row_max, 0.0)
  unnormalized = jnp.exp(logits - row_max)
  denom = jnp.sum(unnormalized, axis=-1, keepdims=True)
  weights = unnormalized / jnp.where(denom > 0, denom, 1.0)
  return weights.reshape(dims.batch, dims.num_heads, dims.q_len, dims.kv_len)


def reference_attention(query, key, value, *, mask=None, bias=None, is_causal=False,
                        scale=None, q_segment_ids=None, kv_segment_ids=None, q_lengths=None,
                        kv_lengths=None, alibi_slopes=None, dropout_rate=0.0,
                        dropout_rng=None):
  """Exact attention; output [B, Tq, N, Hv] in the dtype of `query`."""
  dims = common.check_inputs(
      query, key, value, mask=mask, bias=bias, scale=scale, q_segment_ids=q_segment_ids,
      kv_segment_ids=kv_segment_ids, q_lengths=q_lengths, kv_lengths=kv_lengths,
      alibi_slopes=alibi_slopes, dropout_rate=dropout_rate, dropout_rng=dropout_rng,
      kernel='reference')
  weights = attention_weights(
      query, key, mask=mask, bias=bias, is_causal=is_causal, scale=scale,
      q_segment_ids=q_segment_ids, kv_segment_ids=kv_segment_ids, q_lengths=q_lengths,
      kv_lengths=kv_lengths, alibi_slopes=alibi_slopes)
  weights = weights.reshape(dims.batch, dims.num_kv_heads, dims.groups, dims.q_len, dims.kv_len)
  if dropout_rate > 0.0:
    keep = dropout_lib.keep_mask(
        common.rng_to_seed(dropout_rng), dropout_rate, dims.num_heads,
        jnp.arange(dims.q_len), jnp.arange(dims.kv_len), dims.batch, dims.num_kv_heads)
    weights = jnp.where(keep, weights / (1.0 - dropout_rate), 0.0)
  v_BKSH = jnp.swapaxes(value, 1, 2)
  out = jnp.einsum('bkgqs,bksh->bqkgh', weights.astype(value.dtype), v_BKSH,
                   preferred_element_type=jnp.float32)
  return out.reshape(dims.batch, dims.q_len, dims.num_heads, dims.value_dim).astype(query.dtype)


KERNEL = common.Kernel('reference', reference_attention, exact=True)
