"""Fewer bits per parameter: int8 weights per output channel, and bfloat16 inference.

int8: every dense kernel (nnx.Linear, nnx.LinearGeneral) and embedding table is stored
as int8 values q and a float32 scale per output channel, symmetric:
  scale = max |w| over the channel's inputs / 127,   q = round(w / scale) in [-127, 127];
an embedding's output channels are its rows (one per token, which is also what the
shared output projection produces). Biases and norms stay float32. `quantize_int8`
replaces each weight by its dequantized value q * scale in place, so the model computes
in float32 with exactly the weights an int8 store holds; `int8_bytes` counts what that
store takes (values, scales, and the float32 rest).

bfloat16: `to_bfloat16` casts every parameter and every module's compute dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from attention.interpret import maps as maps_lib
from attention.interpret import pruning


def _weights(model):
  """(module, attribute name, input axes) of every weight quantize_int8 stores as int8."""
  out = []
  for _, m in maps_lib.iter_modules(model):
    if isinstance(m, nnx.LinearGeneral):
      out.append((m, 'kernel', tuple(range(len(tuple(m.in_features))))))
    elif isinstance(m, nnx.Linear):
      out.append((m, 'kernel', (0,)))
    elif isinstance(m, nnx.Embed):
      out.append((m, 'embedding', (1,)))   # [vocab, D]: one scale per row
  return out


def int8(w, input_axes) -> tuple[np.ndarray, np.ndarray]:
  """(q int8, scale float32 broadcastable to w): symmetric, one scale per output channel."""
  w = np.asarray(w, np.float32)
  scale = np.max(np.abs(w), axis=input_axes, keepdims=True) / 127.0
  scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
  q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
  return q, scale


def parameter_bytes(model) -> int:
  """Bytes of the model's parameters as they are held now (any dtype)."""
  return sum(int(np.asarray(x).nbytes) for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))


def int8_bytes(model) -> int:
  """Bytes of the model's parameters stored as quantize_int8 stores them: int8 values
  and float32 scales for the weights, float32 for the rest."""
  total = 4 * pruning.parameters(model)
  for m, attr, axes in _weights(model):
    w = getattr(m, attr)[...]
    channels = int(np.size(w)) // int(np.prod([w.shape[a] for a in axes]))
    total -= 4 * int(np.size(w))
    total += int(np.size(w)) + 4 * channels
  return total


def quantize_int8(model) -> dict:
  """Replaces every dense kernel and embedding by its int8 round trip, in place; returns
  {'tensors', 'fp32_bytes', 'int8_bytes', 'max_abs_error'}."""
  fp32 = 4 * pruning.parameters(model)
  stored = int8_bytes(model)
  worst = 0.0
  weights = _weights(model)
  for m, attr, axes in weights:
    var = getattr(m, attr)
    w = np.asarray(var[...], np.float32)
    q, scale = int8(w, axes)
    back = q.astype(np.float32) * scale
    worst = max(worst, float(np.max(np.abs(back - w), initial=0.0)))
    var[...] = jnp.asarray(back, var[...].dtype)
  return {'tensors': len(weights), 'fp32_bytes': fp32, 'int8_bytes': stored,
          'max_abs_error': worst}


def to_bfloat16(model) -> dict:
  """Casts every parameter to bfloat16 and every module to compute in it, in place."""
  for _, m in maps_lib.iter_modules(model):
    for attr in ('dtype', 'param_dtype'):
      if getattr(m, attr, None) is not None and not callable(getattr(type(m), attr, None)):
        setattr(m, attr, jnp.bfloat16)
  state = nnx.state(model, nnx.Param)
  nnx.update(model, jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), state))
  return {'bf16_bytes': parameter_bytes(model)}
