"""Runs a kernel with its heads split over devices, one head at a time on each.

Heads are independent, so attention parallelizes over them with no communication. On CPU
this is how a loop kernel gets both cores: XLA runs the ops of one loop iteration on the
intra-op thread pool, and a small tile (one head's 256 x 256 block is 256 KiB, inside a
Zen 3 core's 512 KiB L2) runs on one core, while independent loops in one program run one
after the other. N forced host devices (XLA_FLAGS=--xla_force_host_platform_device_count=N,
set before JAX starts) are N executors that do run at once. BENCHMARKS.md, "Heads over
devices", has the measurements.

  fn, sharding = split_heads(kernels.get('flash'))
  out = jax.jit(fn)(*(jax.device_put(x, sharding) for x in (q, k, v)))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = 'heads'


def shard_map(fn, mesh, in_specs, out_specs):
  """jax.shard_map, or its jax.experimental form on jax < 0.7 (Python 3.10's)."""
  if hasattr(jax, 'shard_map'):
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs)
  from jax.experimental.shard_map import shard_map   # jax < 0.7
  return shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs)


def split_heads(fn, devices=None):
  """fn(q, k, v) -> out, all [B, T, N, H], as (fn over the devices, their input sharding).

  Query and key/value have the same head count N (no GQA), a multiple of the device
  count; each device gets N / len(devices) heads and calls `fn` on one at a time
  (lax.map). Other arguments are bound into `fn` (functools.partial); per-head ones such
  as ALiBi slopes cannot be.
  """
  sharding = input_sharding(devices)
  mesh, spec = sharding.mesh, sharding.spec

  def local(q, k, v):   # this device's heads, [B, T, n, H]
    head_major = tuple(jnp.moveaxis(x, 2, 0)[:, :, :, None] for x in (q, k, v))
    out = jax.lax.map(lambda qkv: fn(*qkv)[:, :, 0], head_major)
    return jnp.moveaxis(out, 0, 2)

  def split(q, k, v):
    heads = q.shape[2] if q.ndim == 4 else None
    for name, x in (('query', q), ('key', k), ('value', v)):
      if x.ndim != 4 or x.shape[2] != heads or heads % mesh.size:
        raise ValueError(f'split_heads: {name} must be [B, T, N, H] with the query\'s N '
                         f'({heads}), a multiple of the {mesh.size} devices; got '
                         f'shape {x.shape}')
    return shard_map(local, mesh, (spec,) * 3, spec)(q, k, v)

  return split, sharding


def input_sharding(devices=None) -> NamedSharding:
  """[B, T, N, H] arrays split along N over `devices` (default: all local devices)."""
  mesh = Mesh(np.array(list(devices or jax.local_devices())), (AXIS,))
  return NamedSharding(mesh, PartitionSpec(None, None, AXIS))
