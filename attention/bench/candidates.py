"""The candidates scripts/bench_attention.py times: a project kernel or a peer (jax.nn,
flax.linen, PyTorch) by name, compiled for one pass, with its FLOPs and its inputs' placement.

A name is a registered kernel or a peer, 'flash:BQxBK[/BQxBK]' for flash with given tiles,
optionally followed by '+causal' (causal even at a non-causal point) and then '@heads'
(heads split over the local devices).
"""

from __future__ import annotations

import functools
import os
import re

import jax
import jax.numpy as jnp

from attention import UserError, kernels
from attention.kernels import head_parallel

JAX_PEERS = ('jax.nn', 'flax.linen')
EXACT = ('flash', 'reference', 'xla', 'jax.nn', 'flax.linen', 'torch')


def jax_fn(name: str, causal: bool):
  """A function (q, k, v) -> out in [B, T, N, H] for a project kernel or JAX peer.

  A '+causal' suffix forces causal attention, so that a non-causal point can time the
  causal variant side by side (e.g. --candidates=flash,flash+causal --causal=false).
  'flash:BQxBK' sets flash's tiles, 'flash:BQxBK/BQxBK' those of the forward and of the
  backward pass (e.g. --candidates=flash:512x512,flash:512x512/1024x1024).
  An '@heads' suffix runs the candidate with its heads split over the local devices, one
  head at a time on each (attention/kernels/head_parallel.py); its inputs are placed with
  input_sharding(name).
  """
  if name.endswith('@heads'):
    return head_parallel.split_heads(jax_fn(name[:-len('@heads')], causal))[0]
  if name.endswith('+causal'):
    return jax_fn(name[:-len('+causal')], True)
  if name.startswith('flash:'):
    tiles = [[int(x) for x in t.split('x')] for t in name.split(':')[1].split('/')]
    bwd = dict(zip(('bwd_block_q', 'bwd_block_kv'), tiles[1])) if len(tiles) > 1 else {}
    return functools.partial(kernels.get('flash'), is_causal=causal, block_q=tiles[0][0],
                             block_kv=tiles[0][1], **bwd)
  if name in kernels.names():
    return functools.partial(kernels.get(name), is_causal=causal)
  if name == 'jax.nn':
    return functools.partial(jax.nn.dot_product_attention, is_causal=causal)
  if name == 'flax.linen':
    import flax.linen as nn

    def flax_attention(q, k, v):
      mask = nn.make_causal_mask(jnp.ones(q.shape[:2]), dtype=bool) if causal else None
      return nn.dot_product_attention(q, k, v, mask=mask)
    return flax_attention
  raise ValueError(f'unknown candidate {name!r}')


PEERS = ('jax.nn', 'flax.linen', 'torch')
TILES = re.compile(r'[1-9][0-9]*x[1-9][0-9]*')


def check_candidate(name: str) -> None:
  """UserError unless jax_fn (or the torch peer) can run `name`."""
  base = name
  for suffix in ('@heads', '+causal'):
    base = base[:-len(suffix)] if base.endswith(suffix) else base
  if base.startswith('flash:'):
    tiles = base[len('flash:'):].split('/')
    if len(tiles) > 2 or not all(TILES.fullmatch(t) for t in tiles):
      raise UserError(f'--candidates: {name!r}: tiles are written flash:BQxBK or '
                      'flash:BQxBK/BQxBK (forward/backward), e.g. flash:512x512')
  elif base not in (*kernels.names(), *PEERS) or (base == 'torch' and name != 'torch'):
    raise UserError(f'--candidates: unknown {name!r}; allowed: {", ".join(kernels.names())}, '
                    f'{", ".join(PEERS)}, flash:BQxBK[/BQxBK], optionally followed by '
                    '+causal, then @heads (not on torch)')


def input_sharding(name):
  """Where a candidate's q, k, v live: split by head for '@heads', else the default device."""
  return head_parallel.input_sharding() if name.endswith('@heads') else None


def placed(name, arrays):
  sharding = input_sharding(name)
  return arrays if sharding is None else [jax.device_put(x, sharding) for x in arrays]


def compile_jax(name, causal, pass_, shape):
  fn = attention_fn = jax_fn(name, causal)
  if pass_ == 'fwd_bwd':
    fn = jax.grad(lambda q, k, v: jnp.sum(attention_fn(q, k, v)), argnums=(0, 1, 2))
  spec = jax.ShapeDtypeStruct(shape, jnp.float32, sharding=input_sharding(name))
  compiled = jax.jit(fn).lower(spec, spec, spec).compile()
  mem = compiled.memory_analysis()
  return compiled, int(mem.temp_size_in_bytes)


def torch_runner(causal, pass_, shape):
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(os.cpu_count() or 1)
  b, t, n, h = shape
  gen = torch.Generator().manual_seed(0)
  q, k, v = (torch.randn(b, n, t, h, generator=gen) for _ in range(3))
  sdpa = torch.nn.functional.scaled_dot_product_attention
  if pass_ == 'fwd':
    def run():
      with torch.no_grad():
        return sdpa(q, k, v, is_causal=causal)
    return run
  qg, kg, vg = (x.clone().requires_grad_() for x in (q, k, v))

  def run_grad():
    for x in (qg, kg, vg):
      x.grad = None
    sdpa(qg, kg, vg, is_causal=causal).sum().backward()
    return qg.grad
  return run_grad


def have_torch() -> bool:
  try:
    import torch  # noqa: F401
    return True
  except ImportError:
    return False


def is_exact(name: str) -> bool:
  """Whether a candidate computes exact softmax attention (so dense FLOPs describe it)."""
  return name.split('@')[0].split('+')[0] in EXACT or name.startswith('flash')


def dense_flops(shape, causal, pass_):
  """FLOPs of exact attention: 4 B N T^2 H forward (QK^T and PV), 2.5x that backward."""
  b, t, n, h = shape
  f = 4.0 * b * n * t * t * h * (0.5 if causal else 1.0)
  return f * (3.5 if pass_ == 'fwd_bwd' else 1.0)
