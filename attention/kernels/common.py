"""What every attention kernel shares: argument checks, the visibility rule, logit biases.

Layout (as `jax.nn.dot_product_attention`):
  query  [B, Tq, N, H]   B batch, Tq query length, N query heads, H key size d_k
  key    [B, Tk, K, H]   K key/value heads; N % K == 0 (K < N is GQA, K == 1 is MQA)
  value  [B, Tk, K, Hv]  Hv value size d_v (may differ from H)
  output [B, Tq, N, Hv]

Query head n reads key/value head n // (N // K), so inside the kernels the query heads
are grouped as [B, K, G, Tq, H] with G = N // K.

Which (query i, key j) pairs interact is the AND of every restriction given:
  mask[b, n, i, j]                        boolean, True = attend, broadcastable to [B, N, Tq, Tk]
  is_causal:   j <= i                     top-left aligned, as in jax.nn
  q_lengths:   i < q_lengths[b]           right padding of the queries
  kv_lengths:  j < kv_lengths[b]          right padding of the keys
  segment ids: q_segment_ids[b, i] == kv_segment_ids[b, j]   packed sequences
and the logits are  scale * q.k + bias[b, n, i, j] - alibi_slopes[n] * |i - j|.

A query row that may attend to no key at all gets output 0 and gradient 0.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Dims:
  """Static sizes of one attention call (see the module docstring for the letters)."""

  batch: int
  q_len: int
  kv_len: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  value_dim: int

  @property
  def groups(self) -> int:
    return self.num_heads // self.num_kv_heads


def _shape(x: Any) -> tuple[int, ...]:
  return tuple(np.shape(x))


def check_inputs(
    query,
    key,
    value,
    *,
    mask=None,
    bias=None,
    scale=None,
    q_segment_ids=None,
    kv_segment_ids=None,
    q_lengths=None,
    kv_lengths=None,
    alibi_slopes=None,
    dropout_rate: float = 0.0,
    dropout_rng=None,
    kernel: str,
) -> Dims:
  """Validates shapes and dtypes at trace time; raises ValueError naming the argument."""
  for name, x in (('query', query), ('key', key), ('value', value)):
    if np.ndim(x) != 4:
      raise ValueError(
          f'{kernel}: {name} must have rank 4 [batch, length, heads, head_dim], '
          f'got shape {_shape(x)}')
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
      raise ValueError(f'{kernel}: {name} must be floating point, got {jnp.result_type(x)}')
  b, tq, n, h = _shape(query)
  bk, tk, k, hk = _shape(key)
  bv, tv, kv, hv = _shape(value)
  if bk != b or bv != b:
    raise ValueError(
        f'{kernel}: batch sizes differ: query {_shape(query)}, key {_shape(key)}, '
        f'value {_shape(value)}')
  if tv != tk or kv != k:
    raise ValueError(
        f'{kernel}: key {_shape(key)} and value {_shape(value)} must agree in length and heads')
  if hk != h:
    raise ValueError(
        f'{kernel}: key head_dim {hk} != query head_dim {h} '
        f'(query {_shape(query)}, key {_shape(key)})')
  if k == 0 or n % k != 0:
    raise ValueError(
        f'{kernel}: query heads ({n}) must be a multiple of key/value heads ({k})')
  if min(b, tq, tk, n, h, hv) == 0:
    raise ValueError(f'{kernel}: empty input: query {_shape(query)}, key {_shape(key)}')
  full = (b, n, tq, tk)
  if mask is not None:
    if jnp.result_type(mask) != jnp.bool_:
      raise ValueError(f'{kernel}: mask must be boolean (True = attend), got {jnp.result_type(mask)}')
    _check_broadcast(kernel, 'mask', mask, full)
  if bias is not None:
    if not jnp.issubdtype(jnp.result_type(bias), jnp.floating):
      raise ValueError(f'{kernel}: bias must be floating point, got {jnp.result_type(bias)}')
    _check_broadcast(kernel, 'bias', bias, full)
  if (q_segment_ids is None) != (kv_segment_ids is None):
    raise ValueError(f'{kernel}: q_segment_ids and kv_segment_ids must be given together')
  if q_segment_ids is not None:
    _check_exact(kernel, 'q_segment_ids', q_segment_ids, (b, tq), integer=True)
    _check_exact(kernel, 'kv_segment_ids', kv_segment_ids, (b, tk), integer=True)
  if q_lengths is not None:
    _check_exact(kernel, 'q_lengths', q_lengths, (b,), integer=True)
  if kv_lengths is not None:
    _check_exact(kernel, 'kv_lengths', kv_lengths, (b,), integer=True)
  if alibi_slopes is not None:
    _check_exact(kernel, 'alibi_slopes', alibi_slopes, (n,), integer=False)
  if scale is not None and not isinstance(scale, (int, float)):
    raise ValueError(f'{kernel}: scale must be a Python number, got {type(scale).__name__}')
  if not 0.0 <= dropout_rate < 1.0:
    raise ValueError(f'{kernel}: dropout_rate must be in [0, 1), got {dropout_rate}')
  if dropout_rate > 0.0 and dropout_rng is None:
    raise ValueError(f'{kernel}: dropout_rate > 0 needs dropout_rng')
  return Dims(b, tq, tk, n, k, h, hv)


def _check_broadcast(kernel, name, x, full):
  shape = _shape(x)
  if len(shape) != 4 or any(s not in (1, f) for s, f in zip(shape, full)):
    raise ValueError(
        f'{kernel}: {name} of shape {shape} must be 4-d and broadcastable to '
        f'[batch, heads, q_len, kv_len] = {list(full)}')


def _check_exact(kernel, name, x, want, *, integer):
  if _shape(x) != want:
    raise ValueError(f'{kernel}: {name} must have shape {list(want)}, got {_shape(x)}')
  is_int = jnp.issubdtype(jnp.result_type(x), jnp.integer)
  if integer and not is_int:
    raise ValueError(f'{kernel}: {name} must be integer, got {jnp.result_type(x)}')
  if not integer and not jnp.issubdtype(jnp.result_type(x), jnp.floating):
    raise ValueError(f'{kernel}: {name} must be floating point, got {jnp.result_type(x)}')


def reject(kernel: str, **given) -> None:
  """Raises ValueError for features a kernel does not implement, if they were passed."""
  for name, value in given.items():
    unused = value is None or (isinstance(value, (bool, int, float)) and not value)
    if not unused:
      raise ValueError(f'{kernel}: `{name}` is not supported by this kernel')


def default_scale(scale, head_dim: int) -> float:
  return 1.0 / math.sqrt(head_dim) if scale is None else float(scale)


def group_query(query, dims: Dims):
  """[B, Tq, N, H] -> [B, K, G, Tq, H]: query head n = k * G + g reads key/value head k."""
  q = query.reshape(dims.batch, dims.q_len, dims.num_kv_heads, dims.groups, dims.head_dim)
  return q.transpose(0, 2, 3, 1, 4)


def group_heads(x, num_kv_heads: int):
  """[B?, N?, Tq?, Tk?] (mask or bias, N a multiple of K, or 1) -> [B?, K?, G?, Tq?, Tk?]."""
  b, n, tq, tk = x.shape
  if n == 1:
    return x.reshape(b, 1, 1, tq, tk)
  return x.reshape(b, num_kv_heads, n // num_kv_heads, tq, tk)


def visible(q_pos, kv_pos, *, is_causal=False, q_lengths=None, kv_lengths=None,
            q_segment_ids=None, kv_segment_ids=None, mask=None):
  """Boolean [B?, K?, G?, len(q_pos), len(kv_pos)]: may query q_pos[i] attend key kv_pos[j]?

  q_pos, kv_pos: int positions of a block of rows and columns. Segment ids come as
  [B, len(q_pos)] / [B, len(kv_pos)] slices; mask as a grouped 5-d slice (group_heads).
  Returns None when nothing restricts attention.
  """
  parts = []
  if is_causal:
    parts.append(kv_pos[None, :] <= q_pos[:, None])
  if q_lengths is not None:
    parts.append((q_pos[None, :] < q_lengths[:, None])[:, None, None, :, None])
  if kv_lengths is not None:
    parts.append((kv_pos[None, :] < kv_lengths[:, None])[:, None, None, None, :])
  if q_segment_ids is not None:
    same = q_segment_ids[:, :, None] == kv_segment_ids[:, None, :]
    parts.append(same[:, None, None])
  if mask is not None:
    parts.append(mask)
  return all_of(parts)


def all_of(masks):
  """Logical AND of boolean arrays (broadcasting), skipping None; None if none is left."""
  masks = [m for m in masks if m is not None]
  if not masks:
    return None
  out = masks[0]
  for m in masks[1:]:
    out = jnp.logical_and(out, m)
  return out


def add_position_bias(logits, q_pos, kv_pos, *, bias=None, alibi_slopes=None, num_kv_heads=1):
  """logits [B, K, G, bq, bk] fp32 + bias (grouped 5-d slice) - slope * |i - j|."""
  if bias is not None:
    logits = logits + bias.astype(jnp.float32)
  if alibi_slopes is not None:
    alibi = alibi_bias(alibi_slopes, q_pos, kv_pos)
    logits = logits + alibi.reshape(1, num_kv_heads, -1, *alibi.shape[1:])
  return logits


def alibi_bias(alibi_slopes, q_pos, kv_pos):
  """ALiBi's -slope[n] * |q_pos[i] - kv_pos[j]| as float32 [N, len(q_pos), len(kv_pos)]."""
  dist = jnp.abs(q_pos[:, None] - kv_pos[None, :]).astype(jnp.float32)
  return -alibi_slopes.astype(jnp.float32)[:, None, None] * dist


def rng_to_seed(dropout_rng) -> Array:
  """A PRNG key (typed or raw uint32[2]) -> uint32[2] seed for the counter-based dropout hash."""
  if jnp.issubdtype(dropout_rng.dtype, jax.dtypes.prng_key):
    dropout_rng = jax.random.key_data(dropout_rng)
  return jnp.asarray(dropout_rng, jnp.uint32).reshape(-1)[:2]


def full_like_inputs(shape, fill, *inputs, dtype=jnp.float32) -> Array:
  """jnp.full(shape, fill, dtype), typed like what a loop computes from `inputs`
  (pytrees, None skipped): varying over every shard_map mesh axis that any of them varies
  over, and, under explicit sharding, split like the input it shares most leading axes
  with (a loop carry [B, K, ...] of flash or linear: over batch and heads).

  A loop carry must keep one type across iterations. Inside shard_map, values computed
  from sharded inputs vary over the mesh axes, so a carry initialized with a plain
  constant would not type-check; under explicit sharding, neither would a replicated one
  (and dynamic_update_slice insists on equal shardings). Outside both this is the
  constant (the added zeros fold away).
  """
  leaves = jax.tree_util.tree_leaves(inputs)
  out = jnp.full(shape, fill, dtype)
  for x in leaves:
    out = out + (jnp.zeros_like(x, dtype) if x.shape == tuple(shape)
                 else jax.lax.full_like(x, 0, dtype, shape))
  out = _vary_over(out, set().union(*(getattr(jax.typeof(x), 'vma', ()) for x in leaves)))
  explicit = [x for x in leaves if explicit_sharding(x) is not None]
  if not explicit:
    return out
  return _reshard_like(out, max(explicit, key=lambda x: _leading_axes_shared(out, x)))


def _leading_axes_shared(a, b) -> int:
  """How many leading axes arrays a and b have of equal sizes."""
  n = 0
  while n < min(a.ndim, b.ndim) and a.shape[n] == b.shape[n]:
    n += 1
  return n


def _vary_over(out, axes):
  """out marked as varying over the shard_map axes `axes` that it does not vary over yet
  (jax < 0.7 does not carry that over from full_like of another shape)."""
  missing = tuple(sorted(set(axes) - set(getattr(jax.typeof(out), 'vma', ()))))
  if not missing:
    return out
  if hasattr(jax.lax, 'pvary'):   # jax < 0.8
    return jax.lax.pvary(out, missing)
  return jax.lax.pcast(out, missing, to='varying')


def explicit_sharding(x):
  """x's sharding if its type carries one over explicit mesh axes, else None."""
  axis_type = getattr(jax.sharding, 'AxisType', None)
  sharding = getattr(jax.typeof(x), 'sharding', None) if hasattr(jax, 'typeof') else None
  mesh = getattr(sharding, 'mesh', None)
  if axis_type is None or mesh is None:
    return None
  if not any(t == axis_type.Explicit for t in getattr(mesh, 'axis_types', ())):
    return None
  return sharding


def _reshard_like(out, like):
  """out split as `like` is on the leading axes where their sizes agree, whole on the
  rest. Arithmetic with `like` does not always carry its sharding over: jax 0.12 traces
  a custom_vjp's backward pass outside the mesh context, where zeros_like(like) comes
  out replicated, and a constant of another shape always does."""
  want = explicit_sharding(like)
  spec = tuple(want.spec) + (None,) * (like.ndim - len(want.spec))
  keep = _leading_axes_shared(out, like)
  target = jax.sharding.NamedSharding(
      want.mesh, jax.sharding.PartitionSpec(*(spec[:keep] + (None,) * (out.ndim - keep))))
  have = getattr(jax.typeof(out), 'sharding', None)
  padded = lambda p: tuple(p) + (None,) * (out.ndim - len(p))
  if have is not None and padded(have.spec) == padded(target.spec):
    return out
  reshard = getattr(jax.sharding, 'reshard', None)
  if reshard is None:   # jax < 0.7
    from jax.experimental.shard import reshard
  return reshard(out, target)


@dataclasses.dataclass(frozen=True)
class Kernel:
  """An attention kernel and what the layers and the config checks need to know of it.

  fn: the kernel, with the signature of `attention.kernels` (query, key, value, *,
    mask, bias, is_causal, scale, segment ids, lengths, alibi_slopes, dropout, **options).
  exact: computes softmax attention exactly (the reference's numbers up to rounding), so
    its weights are `attention_weights` and the exact-kernel tests hold it to float64.
  options: config.model -> the keyword options the model passes it (e.g. a window).
  packing, alibi, dropout: whether it takes segment ids, ALiBi slopes and attention
    dropout; a config asking for what it lacks is refused before training starts.
  step_band: for decoding from a cache, (options, position, kv_len, is_causal) -> which
    cached keys [kv_len] the query at `position` sees, or None when the kernel itself
    attends from the cache (the exact kernels; linear's prefix is its causal form).
  feature_map: linear attention's phi, for the beam-cache step; None for softmax.
  """

  name: str
  fn: Callable
  exact: bool = False
  options: Callable[[Any], dict] = lambda model_cfg: {}
  packing: bool = True
  alibi: bool = True
  dropout: bool = True
  step_band: Callable | None = None
  feature_map: Callable | None = None
