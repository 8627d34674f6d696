"""One constructor for every sequence-to-sequence model, chosen by `config.model.name`."""

from __future__ import annotations

from flax import nnx

from attention.rnn import LSTMSeq2Seq
from attention.transformer import Transformer

MODELS = {'transformer': Transformer, 'lstm': LSTMSeq2Seq}


def build(cfg, *, rngs: nnx.Rngs):
  """cfg: config.model, with vocab_size already set (> 0)."""
  if cfg.name not in MODELS:
    raise ValueError(f'model.name must be one of {sorted(MODELS)}, got {cfg.name!r}')
  return MODELS[cfg.name](cfg, rngs=rngs)
