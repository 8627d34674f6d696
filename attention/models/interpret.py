"""Attention maps of a trained model, for inspection (interpretability is one of the open
problems the sources name; these are the raw material, not an explanation).

attention_maps(model, src, tgt_in) runs one teacher-forced forward pass and returns
{name: weights [B, heads, T, S]} in the model's layer order, with names like
`encoder/0/self_attention`, `decoder/2/cross_attention`. The LSTM baseline has one
map, `decoder/cross_attention` (one head).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from attention.models.layers import MultiHeadAttention


def attention_maps(model, src_BS, tgt_in_BT) -> dict[str, np.ndarray]:
  if hasattr(model, 'cross_attention_weights'):  # the LSTM
    if model.attention is None:
      return {}
    return {'decoder/cross_attention': np.asarray(model.cross_attention_weights(src_BS, tgt_in_BT))[:, None]}
  modules = [(path, m) for path, m in model.iter_modules() if isinstance(m, MultiHeadAttention)]
  for _, m in modules:
    m.record_weights = True
  try:
    model(jnp.asarray(src_BS), jnp.asarray(tgt_in_BT), deterministic=True)
    sown = nnx.pop(model, nnx.Intermediate)
  finally:
    for _, m in modules:
      m.record_weights = False
  flat = dict(sown.flat_state())
  out = {}
  for path, _ in modules:
    value = flat[(*path, 'attention_weights')]
    value = value.value if hasattr(value, 'value') else value
    out['/'.join(map(str, path))] = np.asarray(value[0])   # sow keeps a tuple of calls
  return out
