"""Removing attention heads for real: W_Q, W_K, W_V lose the head's columns and W_O its
rows, so the pruned model has fewer parameters and does less work, decoding included.

  prune(model, {'decoder/1/cross_attention': [0, 3]})   # in place
  order = prune_iteratively(model, batches, count=12)   # Michel et al. 2019

Each attention module keeps at least one head (a layer without attention is another
model), and key/value heads are pruned with their query heads, so modules that share
key/value heads between query heads (num_kv_heads < num_heads) are refused.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx

from attention.interpret import heads as heads_lib
from attention.interpret import maps as maps_lib


def _sliced(linear: nnx.LinearGeneral, axis: int, keep):
  """A copy of `linear` (no bias) with only the heads `keep` along kernel axis `axis`;
  its kernel's shape is its input features, then its output features."""
  kernel = np.take(np.asarray(linear.kernel[...]), keep, axis=axis)
  n_in = len(tuple(linear.in_features))
  new = nnx.LinearGeneral(kernel.shape[:n_in], kernel.shape[n_in:], axis=linear.axis,
                          use_bias=False, dtype=linear.dtype, param_dtype=linear.param_dtype,
                          rngs=nnx.Rngs(0))
  new.kernel[...] = kernel
  return new


def prune(model, remove: dict[str, list[int]]) -> None:
  """Removes heads (indices into each module's current heads) from attention modules."""
  modules = dict(maps_lib.attention_modules(model))
  for name, heads in remove.items():
    if name not in modules:
      raise ValueError(f'no attention module {name!r}; the model has: {", ".join(modules)}')
    m = modules[name]
    if not heads:
      continue
    if m.num_kv_heads != m.num_heads:
      raise ValueError(f'{name}: {m.num_heads} query heads share {m.num_kv_heads} key/value '
                       'heads; pruning needs one key/value head per query head')
    bad = sorted(set(heads) - set(range(m.num_heads)))
    if bad:
      raise ValueError(f'{name}: no head {bad[0]} (it has {m.num_heads})')
    keep = np.asarray([h for h in range(m.num_heads) if h not in set(heads)])
    if not len(keep):
      raise ValueError(f'{name}: pruning would leave no head (each module keeps one)')
    original = getattr(m, 'kept_heads', None) or tuple(range(m.num_heads))
    m.query = _sliced(m.query, 1, keep)    # kernel [D, N, H]
    m.key = _sliced(m.key, 1, keep)
    m.value = _sliced(m.value, 1, keep)
    m.out = _sliced(m.out, 0, keep)        # kernel [N, V, D]
    if m.alibi_slopes is not None:
      m.alibi_slopes = nnx.Variable(m.alibi_slopes[...][keep])
    if m.head_gate is not None:
      m.head_gate = heads_lib.HeadGate(m.head_gate[...][keep])
    m.num_heads = m.num_kv_heads = len(keep)
    m.kept_heads = tuple(original[i] for i in keep)     # the trained model's indices


def attention_parameters(model) -> int:
  """Parameters of the attention projections (W_Q, W_K, W_V, W_O) of the model."""
  return sum(int(np.size(p.kernel[...])) for _, m in maps_lib.attention_modules(model)
             for p in (m.query, m.key, m.value, m.out))


def parameters(model) -> int:
  return sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))


def head_count(model) -> int:
  return sum(m.num_heads for _, m in maps_lib.attention_modules(model))


def prunable(model) -> list[tuple[str, int]]:
  """(module, head) pairs that may go: every head of a module with more than one."""
  return [(name, h) for name, m in maps_lib.attention_modules(model) if m.num_heads > 1
          for h in range(m.num_heads)]


METHODS = ('gradient', 'ablation', 'random')


def parse_amount(text: str) -> float | int:
  """'K' (a number of heads, an integer >= 1) or a fraction in (0, 1), as given on a
  command line; ValueError saying what is allowed otherwise."""
  try:
    number = float(text)
  except ValueError:
    number = math.nan
  if math.isfinite(number) and 0 < number < 1:
    return number
  if math.isfinite(number) and number >= 1 and number == int(number):
    return int(number)
  raise ValueError(f'{text!r}: a number of heads (an integer >= 1) or a fraction in (0, 1)')


def amount(model, value: str | float | int) -> int:
  """Heads to prune, from parse_amount's 'K' or fraction of the model's heads."""
  number = parse_amount(str(value))
  total = head_count(model)
  if not total:
    raise ValueError('this model has no multi-head attention to prune')
  count = number if isinstance(number, int) else int(round(number * total))
  most = total - len(maps_lib.attention_modules(model))
  if count > most:
    raise ValueError(f'{value}: at most {most} of the {total} heads can go (each attention '
                     'module keeps one)')
  return count


def prune_iteratively(model, batches, count: int, *, method: str = 'gradient',
                      step_fraction: float = 0.1, seed: int = 0) -> list[tuple[str, int]]:
  """Prunes `count` heads in place and returns them in order as (module, head in the
  trained model). `gradient` (Michel et al.): repeatedly remove the least important
  heads, step_fraction of the original heads at a time, recomputing gradient importance
  on the pruned model; `ablation`: the same with ablation importance; `random`: heads
  drawn uniformly (with `seed`), the baseline an importance order has to beat."""
  if method not in METHODS:
    raise ValueError(f'method must be one of {", ".join(METHODS)}, got {method!r}')
  rng = np.random.default_rng(seed)
  step = max(1, int(round(step_fraction * head_count(model))))
  removed = []
  while len(removed) < count:
    candidates = prunable(model)
    if not candidates:
      raise ValueError(f'only {len(removed)} heads could be pruned')
    n = min(step, count - len(removed)) if method != 'random' else 1
    if method == 'random':
      chosen = [candidates[rng.integers(len(candidates))]]
    else:
      fn = (heads_lib.gradient_importance if method == 'gradient'
            else heads_lib.ablation_importance)
      scores = fn(model, batches)['importance']
      ranked = sorted(candidates, key=lambda c: scores[c[0]][c[1]])
      chosen, per_module = [], {}
      for name, h in ranked:   # lowest first, each module keeping one head
        left = dict(maps_lib.attention_modules(model))[name].num_heads - per_module.get(name, 0)
        if left > 1 and len(chosen) < n:
          chosen.append((name, h))
          per_module[name] = per_module.get(name, 0) + 1
    modules = dict(maps_lib.attention_modules(model))
    plan = {}
    for name, h in chosen:
      plan.setdefault(name, []).append(h)
      removed.append((name, (getattr(modules[name], 'kept_heads', None)
                             or tuple(range(modules[name].num_heads)))[h]))
    prune(model, plan)
  return removed
