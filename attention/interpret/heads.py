"""How much each attention head matters: ablation and gradient importance.

Every MultiHeadAttention scales head h's output by a gate g_h before W_O
(`head_gate`, None in a trained model). With gates of ones the model is unchanged;
  ablation:  importance_h = L(g with g_h = 0) - L(g = 1), the loss rise when head h
             alone is removed (one forward pass over the data per head);
  gradient:  importance_h = sum over batches |dL/dg_h| at g = 1 (Michel et al. 2019,
             "Are Sixteen Heads Really Better than One?", eq. 2, with the absolute value
             taken per batch as in their code, so it depends on the batch size), one
             backward pass per batch for all heads, normalized per attention module by
             its L2 norm as they do before ranking heads across layers.
L is the teacher-forced cross-entropy per target token over the batches given.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from attention.evaluation import eval_step
from attention.interpret import maps as maps_lib


class HeadGate(nnx.Variable):
  """Per-head output gates [N] of one attention module."""


def add_gates(model) -> list[str]:
  """Gives every attention module gates of ones (a no-op on the outputs); their names."""
  names = []
  for name, m in maps_lib.attention_modules(model):
    m.head_gate = HeadGate(jnp.ones((m.num_heads,), jnp.float32))
    names.append(name)
  if not names:
    raise ValueError('this model has no multi-head attention')
  return names


def remove_gates(model) -> None:
  for _, m in maps_lib.attention_modules(model):
    m.head_gate = None


@contextlib.contextmanager
def gated(model):
  """The model with gates of ones while inside; as it was after (gates it had stay)."""
  had = [m.head_gate is not None for _, m in maps_lib.attention_modules(model)]
  if not any(had):
    add_gates(model)
  try:
    yield {name: m for name, m in maps_lib.attention_modules(model)}
  finally:
    if not any(had):
      remove_gates(model)


def _sums(model, batch):
  logits = model(batch['src'], batch['tgt_in'], deterministic=True,
                 **eval_step.model_kwargs(batch))
  sums = eval_step.token_metrics(logits, batch['tgt_out'])
  return sums['nll'], sums['tokens']


# Compiled once per model structure and batch shape: the gates are state, so changing
# their values (one ablation after another) reuses the compiled function.
_gated_sums = nnx.jit(_sums)


@nnx.jit
def _gate_grads(model, batch):
  """d(mean nll per token)/d gate of every head, as a State of HeadGate values."""
  def mean(m):
    nll, tokens = _sums(m, batch)
    return nll / jnp.maximum(tokens, 1.0)
  return nnx.grad(mean, argnums=nnx.DiffState(0, HeadGate))(model)


def _mean(model, batches) -> float:
  if not batches:
    raise ValueError('no batches to measure the loss on')
  nll = tokens = 0.0
  for batch in batches:
    a, b = jax.device_get(_gated_sums(model, batch))
    nll, tokens = nll + float(a), tokens + float(b)
  return nll / max(tokens, 1.0)


def mean_loss(model, batches) -> float:
  """Teacher-forced cross-entropy per target token of the model over the batches."""
  with gated(model):
    return _mean(model, batches)


def ablation_importance(model, batches) -> dict:
  """{'base_loss', 'importance': {module: [loss rise per head]}} over the batches."""
  with gated(model) as modules:
    base = _mean(model, batches)
    out = {}
    for name, m in modules.items():
      saved = m.head_gate[...]
      rises = []
      for h in range(m.num_heads):
        m.head_gate[...] = saved.at[h].set(0.0)
        rises.append(_mean(model, batches) - base)
      m.head_gate[...] = saved
      out[name] = rises
    return {'base_loss': base, 'importance': out}


def gradient_importance(model, batches, *, normalize: bool = True) -> dict:
  """{'importance': {module: [importance per head]}}: sum over batches of |dL/dg_h|,
  L the batch's mean cross-entropy per token; with normalize, divided per module by the
  L2 norm of its heads' importances (Michel et al.'s layer normalization)."""
  if not batches:
    raise ValueError('no batches to measure importance on')
  with gated(model):
    total = None
    for batch in batches:
      grads = jax.tree_util.tree_map(jnp.abs, _gate_grads(model, batch))
      total = grads if total is None else jax.tree_util.tree_map(jnp.add, total, grads)
  out = {}
  for path, v in total.flat_state():
    scores = np.asarray(maps_lib.raw(v), np.float64)
    if normalize:
      scores = scores / max(np.linalg.norm(scores), 1e-20)
    out['/'.join(map(str, path[:-1]))] = scores.tolist()
  return {'importance': out, 'normalized': normalize}
