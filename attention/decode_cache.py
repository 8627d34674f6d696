"""The state a model carries between decoding steps.

Every model that decodes (`Transformer`, `LSTMSeq2Seq`) has
  start_decoding(src_BS, max_length, beams=1) -> DecodeCache for R = B * beams rows
  decode_step(cache, tokens_R, step) -> (logits_RV float32, DecodeCache)
  reorder_cache(cache, parent_BK) -> DecodeCache: beam k now continues beam parent[b, k]
How a model lays out its cache is its own business (the Transformer keeps one cross-
attention cache per source and lets beams share their self-attention cache).
"""

from typing import Any, NamedTuple


class DecodeCache(NamedTuple):
  # Computed once from the source: cross-attention keys/values, source lengths.
  static: Any
  # Changes every step: self-attention keys/values, recurrent state, beam ancestry.
  dynamic: Any
