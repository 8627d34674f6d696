"""Attention maps of a model, and two summaries of them: entropy and rollout.

attention_maps(model, src, tgt_in) runs one teacher-forced forward pass and returns
{name: weights [B, heads, T, S]} in the model's layer order, with names like
`encoder/0/self_attention`, `decoder/2/cross_attention`. The LSTM baseline has one
map, `decoder/cross_attention` (one head). Maps are the raw material of interpretation;
attention.interpret.alignment scores them against what the data says is true.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from attention.models.layers import MultiHeadAttention


def attention_modules(model) -> list[tuple[str, MultiHeadAttention]]:
  """(name, module) of every multi-head attention, in layer order."""
  return [('/'.join(map(str, path)), m) for path, m in iter_modules(model)
          if isinstance(m, MultiHeadAttention)]


def iter_modules(model):
  return nnx.iter_modules(model) if hasattr(nnx, 'iter_modules') else model.iter_modules()


def attention_maps(model, src_BS, tgt_in_BT, **model_kwargs) -> dict[str, np.ndarray]:
  if hasattr(model, 'cross_attention_weights'):  # the LSTM
    if model.attention is None:
      return {}
    return {'decoder/cross_attention': np.asarray(model.cross_attention_weights(src_BS, tgt_in_BT))[:, None]}
  modules = attention_modules(model)
  for _, m in modules:
    m.record_weights = True
  try:
    found = _sown_weights(model, jnp.asarray(src_BS), jnp.asarray(tgt_in_BT), model_kwargs)
  finally:
    for _, m in modules:
      m.record_weights = False
  return {name: np.asarray(found[name]) for name, _ in modules}


@nnx.jit
def _sown_weights(model, src_BS, tgt_in_BT, model_kwargs):
  """{module name: weights} of one forward pass of a model whose attention modules
  record their weights; compiled once per model and shape."""
  model(src_BS, tgt_in_BT, deterministic=True, **model_kwargs)
  out = {}
  for path, value in nnx.pop(model, nnx.Intermediate).flat_state():
    out['/'.join(map(str, path[:-1]))] = raw(value)[0]   # sow keeps a tuple of calls
  return out


def raw(value):
  """What a Variable or a State's leaf holds, whatever it holds (flax < 0.11 keeps a
  VariableState there)."""
  if isinstance(value, nnx.Variable):
    return value.get_value() if hasattr(value, 'get_value') else value.value
  if hasattr(nnx, 'VariableState') and isinstance(value, nnx.VariableState):
    return value.value
  return value


def entropy(weights_BNTS, query_mask_BT=None) -> np.ndarray:
  """Mean entropy in nats [N] of each head's attention distribution over the valid
  queries (all when no mask): 0 when every query looks at one key, log S when it
  spreads evenly."""
  p = np.asarray(weights_BNTS, np.float64)
  h_BNT = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)
  if query_mask_BT is None:
    return h_BNT.mean(axis=(0, 2))
  mask = np.asarray(query_mask_BT, bool)[:, None, :]
  return (h_BNT * mask).sum(axis=(0, 2)) / np.maximum(mask.sum(axis=(0, 2)), 1)


def rollout(self_weights: list, *, residual: float = 0.5) -> np.ndarray:
  """Attention rollout (Abnar & Zuidema 2020) of the encoder's self-attention, one map
  [B, N, S, S] per layer from the bottom: each layer's head-averaged weights mixed with
  the identity for the residual stream (`residual` of it), rows renormalized, multiplied
  up the stack. Returns [B, S, S]: how much each top-layer position draws on each input."""
  out = None
  for w in self_weights:
    a_BSS = np.asarray(w, np.float64).mean(axis=1)
    a_BSS = (1 - residual) * a_BSS + residual * np.eye(a_BSS.shape[-1])
    a_BSS /= a_BSS.sum(axis=-1, keepdims=True)
    out = a_BSS if out is None else a_BSS @ out
  if out is None:
    raise ValueError('rollout needs at least one layer of weights')
  return out
