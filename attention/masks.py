"""Boolean attention masks (True = attend) shaped to broadcast against [B, N, Tq, Tk].

These materialize a mask for callers that want one (the layers' cached decoding, plots,
tests). The kernels themselves take lengths and segment ids directly and build only the
tiles they need, through the same rule (`attention.kernels.common.visible`).
"""

from __future__ import annotations

import jax.numpy as jnp

from attention.kernels import common


def make_causal_mask(q_len: int, kv_len: int | None = None, offset: int = 0):
  """[1, 1, Tq, Tk]: query i sees key j iff j <= i + offset (offset = position of query 0)."""
  kv_len = q_len if kv_len is None else kv_len
  allowed = common.visible(jnp.arange(q_len) + offset, jnp.arange(kv_len), is_causal=True)
  return allowed[None, None]


def make_padding_mask(q_valid, kv_valid):
  """q_valid [B, Tq], kv_valid [B, Tk] booleans (True = real token) -> [B, 1, Tq, Tk]."""
  return jnp.logical_and(q_valid[:, None, :, None], kv_valid[:, None, None, :])


def make_length_mask(q_lengths, kv_lengths, q_len: int, kv_len: int):
  """Right padding given by lengths [B] -> [B, 1, Tq, Tk]."""
  allowed = common.visible(jnp.arange(q_len), jnp.arange(kv_len), q_lengths=q_lengths,
                           kv_lengths=kv_lengths)
  return allowed[:, :, 0]


def make_segment_mask(q_segment_ids, kv_segment_ids):
  """Packed sequences: attend only within the same segment id -> [B, 1, Tq, Tk]."""
  return q_segment_ids[:, None, :, None] == kv_segment_ids[:, None, None, :]


def combine_masks(*masks):
  """Logical AND of the given masks, skipping None; None if every mask is None."""
  return common.all_of(masks)
