"""Positional information: sinusoidal, learned, rotary (RoPE) and ALiBi.

Sinusoidal and learned encodings are added to the token embeddings; RoPE rotates queries
and keys inside attention; ALiBi adds -slope * |i - j| to the logits (as a bias array,
or as per-head slopes that the flash kernel applies tile by tile).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from flax import nnx

from attention.kernels import common


def sinusoidal_encoding(positions, d_model: int, max_timescale: float = 10000.0):
  """The paper's PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(same).

  positions: int array [...]; returns float32 [..., d_model] (sin at even, cos at odd
  feature indices, as in Vaswani et al. section 3.5).
  """
  if d_model % 2:
    raise ValueError(f'sinusoidal encoding needs an even d_model, got {d_model}')
  inv_freq = max_timescale ** (-np.arange(0, d_model, 2, dtype=np.float32) / d_model)
  angles = jnp.asarray(positions, jnp.float32)[..., None] * inv_freq
  pe = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1)
  return pe.reshape(*angles.shape[:-1], d_model)


class LearnedPositionalEmbedding(nnx.Module):
  """A trained table of max_length x d_model vectors (Gehring et al. 2017; Table 3 row E)."""

  def __init__(self, max_length: int, d_model: int, *, rngs: nnx.Rngs,
               param_dtype=jnp.float32):
    self.max_length = max_length
    self.embedding = nnx.Embed(max_length, d_model, param_dtype=param_dtype,
                               embedding_init=nnx.initializers.normal(0.02), rngs=rngs)

  def __call__(self, positions):
    """positions: int [...] < max_length -> [..., d_model]."""
    return self.embedding(positions)


def apply_rope(x_BTNH, positions_BT, max_timescale: float = 10000.0):
  """Rotary embedding (Su et al. 2021), rotating the two halves of each head ("rotate half").

  Pairs feature i with feature i + H/2 and rotates the pair by positions * theta_i, so
  that q.k depends on positions only through their difference.
  """
  h = x_BTNH.shape[-1]
  if h % 2:
    raise ValueError(f'RoPE needs an even head_dim, got {h}')
  inv_freq = max_timescale ** (-np.arange(0, h, 2, dtype=np.float32) / h)
  angles = jnp.asarray(positions_BT, jnp.float32)[..., None, None] * inv_freq   # [B, T, 1, H/2]
  sin, cos = jnp.sin(angles), jnp.cos(angles)
  x = x_BTNH.astype(jnp.float32)
  x1, x2 = x[..., : h // 2], x[..., h // 2:]
  rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return rotated.astype(x_BTNH.dtype)


def alibi_slopes(num_heads: int):
  """Per-head slopes of ALiBi (Press et al. 2022): 2^(-8/n), 2^(-16/n), ... for n heads.

  For a head count that is not a power of two, the paper's recipe: the slopes of the
  next lower power of two, then every other slope of the next higher one.
  """
  def powers(n):
    start = 2.0 ** (-8.0 / n)
    return [start ** (i + 1) for i in range(n)]

  if num_heads <= 0:
    raise ValueError(f'alibi_slopes needs num_heads > 0, got {num_heads}')
  low = 2 ** int(math.floor(math.log2(num_heads)))
  slopes = powers(low)
  if low != num_heads:
    slopes += powers(2 * low)[0::2][: num_heads - low]
  return jnp.asarray(slopes, jnp.float32)


def alibi_bias(slopes_N, q_len: int, kv_len: int, q_offset: int = 0):
  """Bias [1, N, Tq, Tk] = -slope * |i - j| (query i at position q_offset + i)."""
  return common.alibi_bias(slopes_N, jnp.arange(q_len) + q_offset, jnp.arange(kv_len))[None]
