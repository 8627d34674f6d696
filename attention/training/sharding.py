"""Where arrays live on the device mesh: one set of partition rules for the whole run.

The mesh has two axes, `data` (batch rows; optionally FSDP parameter shards) and `model`
(tensor parallelism: attention heads and the feed-forward hidden layer). Parameters and
the optimizer state (whose Adam moments mirror the parameters' paths) are laid out by
PARAM_RULES; batches by BATCH_SPEC. `jit` with these NamedShardings (no pmap) then lets
XLA insert the collectives, so the same train step runs on 1 CPU, 8 GPUs or a TPU slice.
"""

from __future__ import annotations

import re

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from attention import UserError

DATA, MODEL = 'data', 'model'
FSDP = 'fsdp'   # placeholder in a rule: becomes DATA with mesh.fsdp, else None

# (regex searched in the '/'-joined path of a leaf, spec per dimension). The first match
# wins; a leaf that matches none is replicated. A dimension the axis does not divide is
# replicated instead (e.g. 2 key/value heads on a model axis of 4), and so is one whose
# axis has a single device.
PARAM_RULES = (
    (r'attention/(query|key|value)/kernel$', (FSDP, MODEL, None)),   # [D, heads, d_k]
    (r'attention/out/kernel$', (MODEL, None, FSDP)),                 # [heads, d_v, D]
    (r'feed_forward/w1/kernel$', (FSDP, MODEL)),                     # [D, F]
    (r'feed_forward/w1/bias$', (MODEL,)),                            # [F]
    (r'feed_forward/w2/kernel$', (MODEL, FSDP)),                     # [F, D]
    (r'embed\w*/embedding$', (None, FSDP)),                          # [vocab, D]
    (r'output_projection/kernel$', (FSDP, None)),                     # [D, vocab]
)
BATCH_SPEC = P(DATA)   # rows over the data axis, every other dimension whole


def make_mesh(data: int, model: int, devices=None) -> Mesh:
  """A (data, model) mesh over `devices` (default: all devices of all processes)."""
  devices = np.asarray(devices if devices is not None else jax.devices())
  if devices.size != data * model:
    raise UserError(f'config.mesh: data={data} x model={model} does not fit the '
                    f'{devices.size} available device(s)')
  return Mesh(devices.reshape(data, model), (DATA, MODEL))


def path_string(path) -> str:
  """'/'-joined names of a pytree key path: 'params/encoder/0/self_attention/query/kernel'."""
  parts = []
  for key in path:
    if isinstance(key, jax.tree_util.GetAttrKey):
      if key.name != 'value':   # an nnx Variable's payload, not a name in the model
        parts.append(key.name)
    elif isinstance(key, jax.tree_util.DictKey):
      parts.append(str(key.key))
    elif isinstance(key, jax.tree_util.SequenceKey):
      parts.append(str(key.idx))
    else:
      parts.append(str(key))
  return '/'.join(parts)


def spec_for(path: str, shape: tuple[int, ...], mesh: Mesh, *, fsdp: bool = False) -> P:
  for pattern, dims in PARAM_RULES:
    if re.search(pattern, path) and len(dims) == len(shape):
      out = []
      for dim, axis in zip(shape, dims):
        if axis == FSDP:
          axis = DATA if fsdp else None
        splits = axis is not None and mesh.shape[axis] > 1 and dim % mesh.shape[axis] == 0
        out.append(axis if splits else None)
      return P(*out)
  return P()


def tree_shardings(tree, mesh: Mesh, *, fsdp: bool = False):
  """A NamedSharding for every array leaf of `tree` (params, TrainState, ...)."""
  def one(path, leaf):
    return NamedSharding(mesh, spec_for(path_string(path), tuple(np.shape(leaf)), mesh, fsdp=fsdp))
  return jax.tree_util.tree_map_with_path(one, tree)


def put(tree, shardings):
  """Places host values (the same on every process) as global arrays with `shardings`;
    works across processes, where each one fills only its own devices."""
  def one(x, sharding):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
  return jax.tree_util.tree_map(one, jax.device_get(tree), shardings)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, BATCH_SPEC)


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
  """This process's rows of the batch -> global arrays sharded over `data`."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def describe(tree, shardings) -> dict[str, str]:
  """{path: spec} of the leaves that are not replicated, for --dry_run."""
  out = {}
  for (path, _), sharding in zip(jax.tree_util.tree_leaves_with_path(tree),
                                 jax.tree_util.tree_leaves(shardings)):
    if any(axis is not None for axis in sharding.spec):
      out[path_string(path)] = str(tuple(sharding.spec))
  return out
