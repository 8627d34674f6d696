"""Dropout masks hashed from a seed and element coordinates.

Attention-weight dropout: the mask is a pure function of (seed, batch, head, i, j).

A counter-based hash instead of `jax.random.bernoulli` over the whole [B, N, Tq, Tk]
array: a blockwise kernel can regenerate exactly the mask of any block, in the forward
and in the backward pass, without storing it, and every kernel (whatever its block
sizes) drops the same weights for the same seed.
"""

import math

import jax
import jax.numpy as jnp


def _mix32(x):
  # "lowbias32" integer finalizer (C. Wellons): full avalanche in 5 cheap ops.
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def _threshold(rate: float):
  """A uniform uint32 hash is kept when >= this: probability 1 - rate."""
  return jnp.uint32(min(int(rate * 2.0**32), 2**32 - 1))


def keep_mask(seed, rate: float, num_heads: int, q_pos, kv_pos, batch: int, num_kv_heads: int):
  """Boolean [B, K, G, len(q_pos), len(kv_pos)], True with probability 1 - rate.

  seed: uint32[2]; q_pos, kv_pos: global row and column indices of the block.
  """
  groups = num_heads // num_kv_heads
  bn = (jnp.arange(batch, dtype=jnp.uint32)[:, None] * jnp.uint32(num_heads)
        + jnp.arange(num_heads, dtype=jnp.uint32)[None, :])
  h = _mix32(_mix32(bn ^ seed[0]) + seed[1]).reshape(batch, num_kv_heads, groups, 1, 1)
  rows = q_pos.astype(jnp.uint32) * jnp.uint32(0x9E3779B9)
  cols = _mix32(kv_pos.astype(jnp.uint32) + jnp.uint32(0x632BE5AB))
  h = _mix32(h ^ rows[:, None])
  h = _mix32(h ^ cols[None, :])
  return h >= _threshold(rate)


def keep_elements(seed, shape, rate: float):
  """Boolean array of `shape`, True with probability 1 - rate, hashed from (seed, flat index).

  The activation dropout of the layers: a few integer operations per element instead of
  `jax.random.bernoulli`'s threefry rounds, which on CPU took a large share of a training
  step (docs/development_log.md has the measurement). Element indices wrap past 2^32, far
  beyond any activation here.
  """
  index = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
  h = _mix32(_mix32(index * jnp.uint32(0x9E3779B9) ^ seed[0]) + seed[1])
  return h >= _threshold(rate)
