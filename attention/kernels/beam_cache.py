"""One decoding step of attention for a beam whose key/value cache is shared, not copied.

Beam search usually reorders the whole key/value cache every step (each surviving beam
takes a copy of its parent's), which moves the full cache through memory once more per
step. Here nothing moves: at step t beam k writes its key and value into slot k at time
t, and `ancestry[b, k, s]` records which slot holds beam k's token at time s. When a
beam inherits its parent's history only the small ancestry array is gathered.

A query then scores the keys of every slot at every time (J times the dot products, a
few MFLOPs) and keeps the one its ancestry names; the cache is read once per source
instead of gathered, written and read.

Layout: B sources, K beams (= J slots), T cache length, N query heads, KH key/value
heads (N a multiple of KH), H key size, V value size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from attention.kernels import common


def beam_cache_attention(q_BKNH, k_BJTKH, v_BJTKV, ancestry_BKT, kv_length, *, bias_NT=None,
                         mask_T=None, scale=None, feature_map=None):
  """Output [B, K, N, V] for queries q (all at the same step) over cached times < kv_length.

  bias_NT: added to the logits per head and time (ALiBi); mask_T: extra visibility per
  time (a local window). feature_map: None for softmax attention; phi for linear
  attention, whose weights are phi(q . scale) . phi(k) normalized by their sum.
  """
  b, k, n, h = q_BKNH.shape
  _, j, t, kh, _ = k_BJTKH.shape
  g = n // kh
  q = q_BKNH.reshape(b, k, kh, g, h)
  slot = jax.nn.one_hot(ancestry_BKT, j, axis=2, dtype=jnp.float32)          # [B, K, J, T]
  visible = jnp.arange(t) < kv_length
  if mask_T is not None:
    visible = visible & mask_T
  if feature_map is None:
    q = q * common.default_scale(scale, h)
  elif scale is not None:
    q = q * scale
  if feature_map is not None:
    q, keys = feature_map(q.astype(jnp.float32)), feature_map(k_BJTKH.astype(jnp.float32))
  else:
    keys = k_BJTKH
  scores = jnp.einsum('bkhgd,bjshd->bkhgjs', q, keys, preferred_element_type=jnp.float32)
  scores = jnp.einsum('bkhgjs,bkjs->bkhgs', scores, slot)                    # own ancestry
  if feature_map is None:
    if bias_NT is not None:
      scores = scores + bias_NT.reshape(1, 1, kh, g, t).astype(jnp.float32)
    scores = jnp.where(visible, scores, -jnp.inf)
    scores = scores - jax.lax.stop_gradient(jnp.max(scores, axis=-1, keepdims=True))
    weights = jnp.exp(scores)
  else:
    weights = jnp.where(visible, scores, 0.0)
  denom = jnp.sum(weights, axis=-1, keepdims=True)
  weights = weights / jnp.where(denom > 0, denom, 1.0)
  out = jnp.einsum('bkhgs,bkjs,bjshv->bkhgv', weights, slot, v_BJTKV.astype(jnp.float32))
  return out.reshape(b, k, n, -1).astype(q_BKNH.dtype)
