"""Blockwise attention with an online softmax and a recomputing backward pass.

FlashAttention (Dao et al. 2022) / "Self-attention does not need O(n^2) memory"
(Rabe & Staats 2021), written in plain JAX so that it compiles for CPU, GPU and TPU.

Forward: for each query block, loop over key/value blocks keeping the running row max
m, the running softmax denominator l and the unnormalized output; save only the output
and the log-sum-exp  lse = m + log(l)  per query row.
Backward (a `jax.custom_vjp`): for each key/value block, loop over query blocks and
recompute the probabilities  p = exp(s - lse)  from the saved lse; dK and dV of the block
stay in the loop carry, dQ is accumulated into one [.., Tq, H] buffer. Nothing of size
Tq x Tk is ever stored, so memory is O(length).

Causal attention and length padding shrink the loop bounds, so fully masked blocks are
never computed, in either pass. Segment ids, masks and biases are sliced per block.
A fully masked query row returns 0 (its lse is +inf, so every recomputed p is 0).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from attention.kernels import common
from attention.kernels import dropout as dropout_lib

# (block_q, block_kv) per backend. CPU: the fastest tiles of scripts/bench_attention.py
# --tune (BENCHMARKS.md, "CPU tile sizes", holds the sweep). GPU/TPU: the
# FlashAttention-2 paper's sizes, not tuned here.
DEFAULT_BLOCKS = {'cpu': (512, 512), 'gpu': (128, 128), 'tpu': (512, 512)}


@dataclasses.dataclass(frozen=True)
class _Plan:
  """Static description of one call: sizes after padding and which features are on."""

  dims: common.Dims
  block_q: int
  block_kv: int
  num_q_blocks: int
  num_kv_blocks: int
  score_scale: float   # 1.0 when q was scaled before the loops (fp32/fp64 inputs)
  is_causal: bool
  dropout_rate: float
  bwd_blocks: tuple[int, int]   # (block_q, block_kv) of the backward pass

  @property
  def q_padded(self) -> int:
    return self.num_q_blocks * self.block_q

  @property
  def kv_padded(self) -> int:
    return self.num_kv_blocks * self.block_kv

  def backward(self) -> _Plan:
    """The plan of the backward pass: its own tiles over the same padded lengths (the
    backward recomputes every tile from the saved lse, so any tiling is exact)."""
    bq, bkv = self.bwd_blocks
    return dataclasses.replace(self, block_q=bq, block_kv=bkv,
                               num_q_blocks=self.q_padded // bq,
                               num_kv_blocks=self.kv_padded // bkv)


def flash_attention(query, key, value, *, mask=None, bias=None, is_causal=False, scale=None,
                    q_segment_ids=None, kv_segment_ids=None, q_lengths=None, kv_lengths=None,
                    alibi_slopes=None, dropout_rate=0.0, dropout_rng=None, block_q=None,
                    block_kv=None, bwd_block_q=None, bwd_block_kv=None):
  """Exact attention in O(length) memory; output [B, Tq, N, Hv] in the dtype of `query`.

  block_q, block_kv: tile sizes of the forward pass (default: DEFAULT_BLOCKS for the
  current backend); bwd_block_q, bwd_block_kv: of the backward pass (default: the
  forward's). Any sequence length works: lengths are padded to a multiple of both
  passes' tiles, so pick sizes that divide one another (powers of two).
  """
  dims = common.check_inputs(
      query, key, value, mask=mask, bias=bias, scale=scale, q_segment_ids=q_segment_ids,
      kv_segment_ids=kv_segment_ids, q_lengths=q_lengths, kv_lengths=kv_lengths,
      alibi_slopes=alibi_slopes, dropout_rate=dropout_rate, dropout_rng=dropout_rng,
      kernel='flash')
  default_q, default_kv = DEFAULT_BLOCKS.get(jax.default_backend(), DEFAULT_BLOCKS['gpu'])
  for name, size in (('block_q', block_q), ('block_kv', block_kv), ('bwd_block_q', bwd_block_q),
                     ('bwd_block_kv', bwd_block_kv)):
    if size is not None and size <= 0:
      raise ValueError(f'flash: {name} must be positive, got {size}')
  block_q = min(block_q or default_q, dims.q_len)
  block_kv = min(block_kv or default_kv, dims.kv_len)
  # A backward tile longer than the forward's padded length would only add padding.
  bwd_q = min(bwd_block_q or block_q, -(-dims.q_len // block_q) * block_q)
  bwd_kv = min(bwd_block_kv or block_kv, -(-dims.kv_len // block_kv) * block_kv)
  q_unit, kv_unit = math.lcm(block_q, bwd_q), math.lcm(block_kv, bwd_kv)
  scale = common.default_scale(scale, dims.head_dim)
  # Scaling q once (O(Tq H)) rather than every score tile (O(Tq Tk)): in the forward loop
  # the scaled tile feeds both the row max and the exp, so XLA writes it out as one more
  # pass over the tile. Autodiff through this product scales dQ; dK = dS^T (scale q).
  # bf16/fp16 inputs keep the scale on the fp32 scores instead: rounding (or, in fp16,
  # overflowing) scale * q in the input dtype would add an error the scores never had.
  prescale = jnp.dtype(query.dtype).itemsize >= 4
  plan = _Plan(dims, block_q, block_kv, -(-dims.q_len // q_unit) * (q_unit // block_q),
               -(-dims.kv_len // kv_unit) * (kv_unit // block_kv), 1.0 if prescale else scale,
               bool(is_causal), float(dropout_rate), (bwd_q, bwd_kv))
  pad_q = plan.q_padded - dims.q_len
  pad_kv = plan.kv_padded - dims.kv_len

  q = query * jnp.asarray(scale, query.dtype) if prescale else query
  q = jnp.pad(common.group_query(q, dims), [(0, 0)] * 3 + [(0, pad_q), (0, 0)])
  k = jnp.pad(jnp.swapaxes(key, 1, 2), [(0, 0), (0, 0), (0, pad_kv), (0, 0)])
  v = jnp.pad(jnp.swapaxes(value, 1, 2), [(0, 0), (0, 0), (0, pad_kv), (0, 0)])
  if pad_kv and kv_lengths is None:
    kv_lengths = jnp.full((dims.batch,), dims.kv_len, jnp.int32)
  aux = {
      'mask': None if mask is None else _pad_grouped(mask, dims, pad_q, pad_kv, False),
      'q_segment_ids': _pad_last(q_segment_ids, pad_q),
      'kv_segment_ids': _pad_last(kv_segment_ids, pad_kv),
      'q_lengths': q_lengths,
      'kv_lengths': kv_lengths,
      'alibi_slopes': alibi_slopes,
      'seed': None if dropout_rate == 0.0 else common.rng_to_seed(dropout_rng),
  }
  bias5 = None if bias is None else _pad_grouped(bias, dims, pad_q, pad_kv, 0.0)
  out = _flash(plan, q, k, v, bias5, aux)
  out = out[:, :, :, :dims.q_len].transpose(0, 3, 1, 2, 4)
  return out.reshape(dims.batch, dims.q_len, dims.num_heads, dims.value_dim)


def _pad_last(x, pad):
  return None if x is None else jnp.pad(x, [(0, 0), (0, pad)])


def _pad_grouped(x, dims, pad_q, pad_kv, fill):
  """mask/bias [B?, N?, Tq?, Tk?] -> grouped 5-d, padded along the full-size length axes."""
  x = common.group_heads(x, dims.num_kv_heads)
  pads = [(0, 0)] * 3 + [(0, pad_q if x.shape[3] > 1 else 0), (0, pad_kv if x.shape[4] > 1 else 0)]
  return jnp.pad(x, pads, constant_values=fill)


def _block_of(x, i, j, plan: _Plan):
  """The (i, j) tile of a grouped 5-d mask/bias, leaving broadcast (size-1) axes alone."""
  if x is None:
    return None
  if x.shape[3] > 1:
    x = lax.dynamic_slice_in_dim(x, i * plan.block_q, plan.block_q, axis=3)
  if x.shape[4] > 1:
    x = lax.dynamic_slice_in_dim(x, j * plan.block_kv, plan.block_kv, axis=4)
  return x


def _scores(plan: _Plan, q_rows, k_blk, i, j, bias, aux, on_diagonal=True):
  """Masked logits [B, K, G*bq, bkv] (fp32, -inf where not visible) and the dropout keep
  mask, from q_rows [B, K, G*bq, H] (_flat_rows of the query tile) and k_blk [B, K, bkv, H].

  on_diagonal=False: the caller knows the tile lies wholly below the causal diagonal, so
  the causal comparison is skipped (it would be all True).
  """
  q_pos = i * plan.block_q + jnp.arange(plan.block_q)
  kv_pos = j * plan.block_kv + jnp.arange(plan.block_kv)
  s = _batched_scores(q_rows, k_blk)
  if plan.score_scale != 1.0:
    s = s * plan.score_scale
  bias_blk = _block_of(bias, i, j, plan)
  if bias_blk is not None or aux['alibi_slopes'] is not None:
    s = s + _as_rows(common.add_position_bias(
        jnp.zeros((), jnp.float32), q_pos, kv_pos, bias=bias_blk,
        alibi_slopes=aux['alibi_slopes'], num_kv_heads=plan.dims.num_kv_heads), plan)
  seg_q = aux['q_segment_ids']
  seg_kv = aux['kv_segment_ids']
  allowed = common.visible(
      q_pos, kv_pos, is_causal=plan.is_causal and on_diagonal, q_lengths=aux['q_lengths'],
      kv_lengths=aux['kv_lengths'],
      q_segment_ids=None if seg_q is None else lax.dynamic_slice_in_dim(
          seg_q, i * plan.block_q, plan.block_q, axis=1),
      kv_segment_ids=None if seg_kv is None else lax.dynamic_slice_in_dim(
          seg_kv, j * plan.block_kv, plan.block_kv, axis=1),
      mask=_block_of(aux['mask'], i, j, plan))
  if allowed is not None:
    s = jnp.where(_as_rows(allowed, plan), s, -jnp.inf)
  keep = None
  if plan.dropout_rate > 0.0:
    keep = _as_rows(dropout_lib.keep_mask(
        aux['seed'], plan.dropout_rate, plan.dims.num_heads, q_pos, kv_pos, plan.dims.batch,
        plan.dims.num_kv_heads), plan)
  return s, keep


def _as_rows(x, plan: _Plan):
  """A mask or bias broadcastable to [B, K, G, bq, bkv] -> broadcastable to the score tile
  [B, K, G*bq, bkv] (row g*bq + r is query row r of head group g)."""
  x = jnp.reshape(x, (1,) * (5 - x.ndim) + x.shape)
  if plan.dims.groups == 1 or x.shape[2:4] == (1, 1):
    return x[:, :, 0]
  x = jnp.broadcast_to(x, x.shape[:2] + (plan.dims.groups, plan.block_q) + x.shape[4:])
  return x.reshape(x.shape[:2] + (-1,) + x.shape[4:])


def _batched_scores(q_rows, k_blk):
  """q_rows [B, K, G*bq, H] . k_blk [B, K, bkv, H] -> [B, K, G*bq, bkv] in fp32.

  Every score tile is 4-d, G and the query rows merged: from a 5-d [B, K, G, bq, bkv]
  product or view, XLA's CPU layout assignment picks a layout that the element-wise code
  after it does not take, and writes a copy of every tile. B and K stay separate axes:
  merging them would make the SPMD partitioner all-gather any tensor sharded on both
  (data-parallel batch and tensor-parallel heads); XLA merges them after partitioning.
  """
  return jnp.einsum('bkrh,bkch->bkrc', q_rows, k_blk, preferred_element_type=jnp.float32)


def _flat_rows(x):
  """[B, K, G, rows, X] -> [B, K, G*rows, X], the layout of the score tiles' rows."""
  return x.reshape(x.shape[:2] + (-1, x.shape[-1]))


def _sum_over_rows(a_t, tile):
  """sum_r a[.., r, h] tile[.., r, c] -> [B, K, H, bkv], from a_t [B, K, H, G, rows] = a^T
  and tile [B, K, G*rows, bkv].

  With a^T already in memory this is a plain product for XLA's CPU library dot (YNNPACK);
  contracting the rows of a itself falls back to a slower generic dot, and tile^T a
  would first write a transposed copy of every P and dS tile.
  """
  return jnp.einsum('bkhr,bkrc->bkhc', a_t.reshape(a_t.shape[:3] + (-1,)), tile,
                    preferred_element_type=jnp.float32)


def _dropped(x, keep, plan: _Plan):
  if keep is None:
    return x
  return jnp.where(keep, x * (1.0 / (1.0 - plan.dropout_rate)), 0.0)


def _max_length(lengths, full):
  return full if lengths is None else jnp.max(lengths)


def _kv_block_range(plan: _Plan, i, aux):
  """Key/value blocks that query block i can see, as [0, split) below the causal
  diagonal (no causal mask needed) and [split, hi) crossing it."""
  hi = jnp.asarray(plan.num_kv_blocks)
  split = hi
  if plan.is_causal:
    first_row, last_row = i * plan.block_q, (i + 1) * plan.block_q - 1
    hi = jnp.minimum(hi, last_row // plan.block_kv + 1)
    split = (first_row + 1) // plan.block_kv
  kv_max = _max_length(aux['kv_lengths'], plan.dims.kv_len)
  hi = jnp.minimum(hi, (kv_max + plan.block_kv - 1) // plan.block_kv)
  q_max = _max_length(aux['q_lengths'], plan.dims.q_len)
  hi = jnp.where(i * plan.block_q < q_max, hi, 0)
  return jnp.minimum(split, hi), hi


def _q_block_range(plan: _Plan, j, aux):
  """Query blocks that can see key/value block j, as [lo, split) crossing the causal
  diagonal and [split, hi) wholly below it."""
  lo = split = jnp.asarray(0)
  if plan.is_causal:
    lo = (j * plan.block_kv) // plan.block_q
    last_key = (j + 1) * plan.block_kv - 1
    split = (last_key + plan.block_q - 1) // plan.block_q
  q_max = _max_length(aux['q_lengths'], plan.dims.q_len)
  hi = jnp.minimum(plan.num_q_blocks, (q_max + plan.block_q - 1) // plan.block_q)
  kv_max = _max_length(aux['kv_lengths'], plan.dims.kv_len)
  hi = jnp.maximum(jnp.where(j * plan.block_kv < kv_max, hi, lo), lo)
  return lo, jnp.clip(split, lo, hi), hi


def _forward(plan: _Plan, q, k, v, bias, aux):
  """Returns out [B, K, G, Tq_pad, Hv] (dtype of q) and lse [B, K, G, Tq_pad] (fp32)."""
  d = plan.dims
  rows_shape = (d.batch, d.num_kv_heads, d.groups * plan.block_q)

  def query_block(i):
    q_rows = _flat_rows(lax.dynamic_slice_in_dim(q, i * plan.block_q, plan.block_q, axis=3))

    def kv_step(j, carry, on_diagonal):
      m, l, acc = carry
      k_blk = lax.dynamic_slice_in_dim(k, j * plan.block_kv, plan.block_kv, axis=2)
      v_blk = lax.dynamic_slice_in_dim(v, j * plan.block_kv, plan.block_kv, axis=2)
      s, keep = _scores(plan, q_rows, k_blk, i, j, bias, aux, on_diagonal)
      m_new = jnp.maximum(m, jnp.max(s, axis=-1))
      # Rows with nothing visible yet keep m = -inf; shift by 0 there to avoid inf - inf.
      m_shift = jnp.where(jnp.isfinite(m_new), m_new, 0.0)
      p = jnp.exp(s - m_shift[..., None])
      correction = jnp.exp(m - m_shift)
      l = l * correction + jnp.sum(p, axis=-1)
      pv = jnp.einsum('bkrc,bkch->bkrh', _dropped(p, keep, plan).astype(v.dtype), v_blk,
                      preferred_element_type=jnp.float32)
      return m_new, l, acc * correction[..., None] + pv

    # Typed like what the loop computes from these (shard_map: common.full_like_inputs).
    full = lambda shape, fill: common.full_like_inputs(shape, fill, q_rows, k, v, bias, aux)
    init = (full(rows_shape, -jnp.inf), full(rows_shape, 0.0),
            full(rows_shape + (d.value_dim,), 0.0))
    split, hi = _kv_block_range(plan, i, aux)
    carry = lax.fori_loop(0, split, functools.partial(kv_step, on_diagonal=False), init)
    m, l, acc = lax.fori_loop(split, hi, functools.partial(kv_step, on_diagonal=True), carry)
    out = acc / jnp.where(l > 0, l, 1.0)[..., None]
    lse = jnp.where(l > 0, m + jnp.log(jnp.where(l > 0, l, 1.0)), jnp.inf)
    return out.astype(q.dtype), lse

  out, lse = lax.map(query_block, jnp.arange(plan.num_q_blocks))
  # [nq, B, K, G * bq, ...] -> [B, K, G, nq * bq, ...]
  grouped = (plan.num_q_blocks, d.batch, d.num_kv_heads, d.groups, plan.block_q)
  out = jnp.moveaxis(out.reshape(grouped + (d.value_dim,)), 0, 3)
  lse = jnp.moveaxis(lse.reshape(grouped), 0, 3)
  return (out.reshape(rows_shape[:2] + (d.groups, plan.q_padded, d.value_dim)),
          lse.reshape(rows_shape[:2] + (d.groups, plan.q_padded)))


def _backward(plan: _Plan, q, k, v, bias, aux, out, lse, d_out):
  d = plan.dims
  # D_i = sum_j P_ij dP_ij = dO_i . O_i (dropout included, since O already is dropped).
  delta = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), axis=-1)
  # Initial carries typed like what the loops compute from these (shard_map).
  zeros = lambda shape: common.full_like_inputs(shape, 0.0, q, k, v, bias, aux, out, lse, d_out)
  dq0 = zeros(q.shape)
  dbias0 = None if bias is None else zeros(bias.shape)
  bk = (d.batch, d.num_kv_heads)
  # [B, K, H, G, Tq]: row blocks of q^T and dO^T for the dK and dV products (_sum_over_rows).
  q_t, d_out_t = (jnp.moveaxis(x, -1, 2) for x in (q, d_out))

  def kv_block(carry, j):
    dq, dbias = carry
    k_blk = lax.dynamic_slice_in_dim(k, j * plan.block_kv, plan.block_kv, axis=2)
    v_blk = lax.dynamic_slice_in_dim(v, j * plan.block_kv, plan.block_kv, axis=2)

    def q_step(i, c, on_diagonal):
      dkT_j, dvT_j, dq, dbias = c
      rows = functools.partial(lax.dynamic_slice_in_dim, start_index=i * plan.block_q,
                               slice_size=plan.block_q, axis=3)
      q_blk = rows(q)
      q_rows, do_rows = _flat_rows(q_blk), _flat_rows(rows(d_out))
      lse_rows, delta_rows = (rows(x).reshape(q_rows.shape[:3]) for x in (lse, delta))
      q_t_blk, do_t_blk = (lax.dynamic_slice_in_dim(x, i * plan.block_q, plan.block_q, axis=4)
                           for x in (q_t, d_out_t))
      s, keep = _scores(plan, q_rows, k_blk, i, j, bias, aux, on_diagonal)
      p = jnp.exp(s - lse_rows[..., None])
      dvT_j += _sum_over_rows(do_t_blk, _dropped(p, keep, plan).astype(do_rows.dtype))
      dp = _batched_scores(do_rows, v_blk)
      ds = p * (_dropped(dp, keep, plan) - delta_rows[..., None])
      ds_in = ds.astype(q.dtype)
      dq_blk = jnp.einsum('bkrc,bkch->bkrh', ds_in, k_blk, preferred_element_type=jnp.float32)
      dk_blk = _sum_over_rows(q_t_blk, ds_in)
      if plan.score_scale != 1.0:
        dq_blk, dk_blk = dq_blk * plan.score_scale, dk_blk * plan.score_scale
      dq = lax.dynamic_update_slice_in_dim(dq, rows(dq) + dq_blk.reshape(q_blk.shape),
                                           i * plan.block_q, axis=3)
      dkT_j += dk_blk
      if dbias is not None:
        dbias = _accumulate_bias_grad(dbias, ds.reshape(q_blk.shape[:4] + (-1,)), i, j, plan)
      return dkT_j, dvT_j, dq, dbias

    lo, split, hi = _q_block_range(plan, j, aux)
    init = (zeros(bk + (d.head_dim, plan.block_kv)), zeros(bk + (d.value_dim, plan.block_kv)),
            dq, dbias)
    carry = lax.fori_loop(lo, split, functools.partial(q_step, on_diagonal=True), init)
    dkT_j, dvT_j, dq, dbias = lax.fori_loop(
        split, hi, functools.partial(q_step, on_diagonal=False), carry)
    return (dq, dbias), (jnp.swapaxes(dkT_j, 2, 3), jnp.swapaxes(dvT_j, 2, 3))

  (dq, dbias), (dk, dv) = lax.scan(kv_block, (dq0, dbias0), jnp.arange(plan.num_kv_blocks))
  # [nk, B, K, bkv, ...] -> [B, K, nk * bkv, ...]
  dk = jnp.moveaxis(dk, 0, 2).reshape(k.shape)
  dv = jnp.moveaxis(dv, 0, 2).reshape(v.shape)
  if dbias is not None:
    dbias = dbias.astype(bias.dtype)
  return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), dbias


def _accumulate_bias_grad(dbias, ds, i, j, plan: _Plan):
  """Adds the (i, j) tile of dS, summed over the axes the bias broadcasts along."""
  tile = jnp.sum(ds, axis=tuple(a for a in range(5) if dbias.shape[a] == 1), keepdims=True)
  starts = [0, 0, 0, i * plan.block_q if dbias.shape[3] > 1 else 0,
            j * plan.block_kv if dbias.shape[4] > 1 else 0]
  current = lax.dynamic_slice(dbias, starts, tile.shape)
  return lax.dynamic_update_slice(dbias, current + tile, starts)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _flash(plan, q, k, v, bias, aux):
  return _forward(plan, q, k, v, bias, aux)[0]


def _flash_fwd(plan, q, k, v, bias, aux):
  out, lse = _forward(plan, q, k, v, bias, aux)
  return out, (q, k, v, bias, aux, out, lse)


def _flash_bwd(plan, residuals, d_out):
  q, k, v, bias, aux, out, lse = residuals
  dq, dk, dv, dbias = _backward(plan.backward(), q, k, v, bias, aux, out, lse, d_out)
  return dq, dk, dv, dbias, jax.tree_util.tree_map(_zero_cotangent, aux)


def _zero_cotangent(x):
  if jnp.issubdtype(x.dtype, jnp.inexact):
    return jnp.zeros_like(x)
  return jnp.zeros(x.shape, jax.dtypes.float0)


_flash.defvjp(_flash_fwd, _flash_bwd)


KERNEL = common.Kernel('flash', flash_attention, exact=True)
