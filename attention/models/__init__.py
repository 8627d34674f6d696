"""The models: one constructor for every sequence-to-sequence model, chosen by
`config.model.name`, and the split of a model into what a jitted step passes around.

  layers.py       multi-head attention (a kernel from attention.kernels), feed-forward, residual
  positional.py   sinusoidal, learned, RoPE and ALiBi positions
  transformer.py  the encoder-decoder Transformer
  rnn.py          the LSTM encoder-decoder baseline, with or without attention
  decoding.py     greedy, sampling and beam search over any model's decode cache
"""

from __future__ import annotations

import inspect

from flax import nnx

from attention.models.rnn import LSTMSeq2Seq
from attention.models.transformer import Transformer

MODELS = {'transformer': Transformer, 'lstm': LSTMSeq2Seq}


def from_preset(preset: str, *, rngs: nnx.Rngs, **fields):
  """The model of a preset (attention.models.presets) with fields of config.model replaced,
  e.g. from_preset('lstm', vocab_size=1000, rnn_attention='none', rngs=nnx.Rngs(0))."""
  from attention.models import presets
  return build(presets.with_fields(preset, fields), rngs=rngs)


def build(cfg, *, rngs: nnx.Rngs):
  """cfg: config.model, with vocab_size already set (> 0)."""
  if cfg.name not in MODELS:
    raise ValueError(f'model.name must be one of {sorted(MODELS)}, got {cfg.name!r}')
  return MODELS[cfg.name](cfg, rngs=rngs)


def split_model(model):
  """(graphdef, params, rest): rest = everything that is not a parameter (RNG streams)."""
  return nnx.split(model, nnx.Param, ...)


_MERGE_COPIES = 'copy' in inspect.signature(nnx.merge).parameters


def merge_model(graphdef, *states):
  """A model from its parts, owning fresh Variables (so a jitted step may reseed and count
  its RNG streams: flax >= 0.11 otherwise reuses the caller's Variable objects)."""
  return nnx.merge(graphdef, *states, copy=True) if _MERGE_COPIES else nnx.merge(graphdef, *states)
