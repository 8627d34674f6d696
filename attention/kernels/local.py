"""Sliding-window attention in O(length x window) compute and memory.

Query i attends keys j with  i - left <= j <= i + right  (right = 0 when causal).
Queries are cut into blocks of `block_q` rows; each block gathers only the slab of
block_q + left + right keys it can reach, so no [Tq, Tk] array is ever built. Within a
block the softmax is exact, so with a window covering the whole sequence this equals
the reference kernel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from attention.kernels import common


DEFAULT_WINDOW = 128


def window_bounds(window_size=DEFAULT_WINDOW, is_causal=False) -> tuple[int, int]:
  """(left, right) reach of the window: query i sees keys i - left .. i + right."""
  left, right = (window_size, window_size) if isinstance(window_size, int) else window_size
  if min(left, right) < 0:
    raise ValueError(f'local: window_size must be >= 0, got {window_size}')
  return left, 0 if is_causal else right


def _slabs(x_BS, gather_idx):
  """x [B, S, ...] -> [B, nq, span, ...]: the keys (or their segment ids) each query block
  reaches. Under explicit sharding the gather is told to keep x's split of the batch and
  the trailing axes (heads); jax < 0.7 refuses to guess it."""
  sharding = common.explicit_sharding(x_BS)
  if sharding is None:
    return x_BS[:, gather_idx]
  spec = tuple(sharding.spec) + (None,) * (x_BS.ndim - len(sharding.spec))
  out = jax.sharding.NamedSharding(sharding.mesh,
                                   jax.sharding.PartitionSpec(spec[0], None, None, *spec[2:]))
  return x_BS.at[:, gather_idx].get(out_sharding=out)


def local_attention(query, key, value, *, mask=None, bias=None, is_causal=False, scale=None,
                    q_segment_ids=None, kv_segment_ids=None, q_lengths=None, kv_lengths=None,
                    alibi_slopes=None, dropout_rate=0.0, dropout_rng=None, window_size=DEFAULT_WINDOW,
                    block_q=128):
  """window_size: int (same reach left and right) or (left, right); output [B, Tq, N, Hv]."""
  dims = common.check_inputs(
      query, key, value, mask=mask, bias=bias, scale=scale, q_segment_ids=q_segment_ids,
      kv_segment_ids=kv_segment_ids, q_lengths=q_lengths, kv_lengths=kv_lengths,
      alibi_slopes=alibi_slopes, kernel='local')
  common.reject('local', mask=mask, bias=bias, dropout_rate=dropout_rate)
  if block_q <= 0:
    raise ValueError(f'local: block_q must be > 0, got {block_q}')
  left, right = window_bounds(window_size, is_causal)
  bq = min(block_q, dims.q_len)
  nq = -(-dims.q_len // bq)
  span = bq + left + right
  scale = common.default_scale(scale, dims.head_dim)

  q = jnp.pad(query, [(0, 0), (0, nq * bq - dims.q_len), (0, 0), (0, 0)])
  # One axis split per reshape: JAX's explicit sharding infers each (heads split on the
  # model axis stay split on K), not both at once.
  q = q.reshape(dims.batch, nq * bq, dims.num_kv_heads, dims.groups, dims.head_dim)
  q = q.reshape(dims.batch, nq, bq, dims.num_kv_heads, dims.groups, dims.head_dim)
  # Key slab of block i covers key positions i * bq - left + [0, span).
  kv_pos = jnp.arange(nq)[:, None] * bq - left + jnp.arange(span)[None, :]   # [nq, span]
  gather_idx = jnp.clip(kv_pos, 0, dims.kv_len - 1)
  k_slabs = _slabs(key, gather_idx)        # [B, nq, span, K, H]
  v_slabs = _slabs(value, gather_idx)      # [B, nq, span, K, Hv]
  q_pos = jnp.arange(nq)[:, None] * bq + jnp.arange(bq)[None, :]             # [nq, bq]
  kv_valid = jnp.full((dims.batch,), dims.kv_len) if kv_lengths is None else jnp.minimum(
      kv_lengths, dims.kv_len)
  if q_segment_ids is not None:
    q_seg = jnp.pad(q_segment_ids, [(0, 0), (0, nq * bq - dims.q_len)]).reshape(dims.batch, nq, bq)
    kv_seg = _slabs(kv_segment_ids, gather_idx)
  else:
    q_seg = kv_seg = None

  def block(q_blk, k_blk, v_blk, qp, kp, qs, ks):
    """One query block: q_blk [B, bq, K, G, H], k_blk/v_blk [B, span, K, *]."""
    s = jnp.einsum('bqkgh,bskh->bkgqs', q_blk, k_blk, preferred_element_type=jnp.float32)
    s = common.add_position_bias(s * scale, qp, kp, alibi_slopes=alibi_slopes,
                                 num_kv_heads=dims.num_kv_heads)
    band = (kp[None, :] >= qp[:, None] - left) & (kp[None, :] <= qp[:, None] + right)
    allowed = common.visible(qp, kp, is_causal=is_causal, q_lengths=q_lengths,
                             kv_lengths=kv_valid, q_segment_ids=qs, kv_segment_ids=ks,
                             mask=band & (kp[None, :] >= 0))
    s = jnp.where(allowed, s, -jnp.inf)
    row_max = jax.lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True))
    e = jnp.exp(s - jnp.where(jnp.isfinite(row_max), row_max, 0.0))
    denom = jnp.sum(e, axis=-1, keepdims=True)
    p = e / jnp.where(denom > 0, denom, 1.0)
    return jnp.einsum('bkgqs,bskh->bqkgh', p.astype(v_blk.dtype), v_blk,
                      preferred_element_type=jnp.float32)

  seg_axes = (None, None) if q_seg is None else (1, 1)
  out = jax.vmap(block, in_axes=(1, 1, 1, 0, 0) + seg_axes, out_axes=1)(
      q, k_slabs, v_slabs, q_pos, kv_pos, q_seg, kv_seg)
  out = out.reshape(dims.batch, nq * bq, dims.num_kv_heads, dims.groups, dims.value_dim)
  out = out.reshape(dims.batch, nq * bq, dims.num_heads, dims.value_dim)[:, :dims.q_len]
  return out.astype(query.dtype)


def step_band(options: dict, position, kv_len: int, is_causal: bool):
  """Decoding from a cache: the window of the query at `position` over the cached keys
  [kv_len] (the layers then attend with the reference kernel, O(kv_len) per query)."""
  left, right = window_bounds(options.get('window_size', DEFAULT_WINDOW), is_causal)
  times = jnp.arange(kv_len)
  return (times >= position - left) & (times <= position + right)


KERNEL = common.Kernel(
    'local', local_attention, options=lambda model_cfg: {'window_size': model_cfg.local_window},
    dropout=False, step_band=step_band)
