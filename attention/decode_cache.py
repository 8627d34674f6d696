"""The state a model carries between decoding steps.

Every model that decodes (`Transformer`, `LSTMSeq2Seq`) has
  start_decoding(src_BS, max_length) -> DecodeCache
  decode_step(cache, tokens_B, step) -> (logits_BV float32, DecodeCache)
and every leaf of both parts has the batch as its leading axis.
"""

from typing import Any, NamedTuple


class DecodeCache(NamedTuple):
  # Computed once from the source: cross-attention keys/values, source lengths. Beam
  # search tiles it per beam and never reorders it (beams of one source share it).
  static: Any
  # Grows or changes every step: self-attention keys/values, recurrent state. Beam
  # search gathers it along the batch axis when beams are reordered.
  dynamic: Any
