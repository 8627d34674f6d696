"""Transformer layers in Flax NNX: multi-head attention, feed-forward, encoder and decoder blocks.

Shapes: B batch, T query length, S key/value length, D d_model, N query heads,
K key/value heads, H d_k, V d_v, F d_ff.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from attention import kernels
from attention.models import positional
from attention.kernels import beam_cache, common
from attention.kernels import dropout as dropout_lib


ACTIVATIONS = {'relu': jax.nn.relu, 'gelu': jax.nn.gelu}
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}


def parse_dtype(name: str):
  """A config dtype name (model.dtype, model.param_dtype) -> the JAX dtype."""
  if name not in DTYPES:
    raise ValueError(f'dtype must be one of {sorted(DTYPES)}, got {name!r}')
  return DTYPES[name]


def module_list(modules):
  """A list of submodules: flax >= 0.12 wants nnx.List, older versions a plain list."""
  return nnx.List(modules) if hasattr(nnx, 'List') else list(modules)


@dataclasses.dataclass
class AttentionMask:
  """Which keys each query may see, in the forms the kernels take without an L x L array.

  Right padding as lengths, packing as segment ids, causality as a flag; `mask` is a
  materialized boolean [B?, N?, T, S] for what the others cannot say (cached decoding).
  Positions (for RoPE and ALiBi) are per token: [B, T] and [B, S].
  """

  is_causal: bool = False
  q_lengths: Any = None
  kv_lengths: Any = None
  q_segment_ids: Any = None
  kv_segment_ids: Any = None
  mask: Any = None

  def kernel_kwargs(self) -> dict:
    return {'is_causal': self.is_causal, 'q_lengths': self.q_lengths,
            'kv_lengths': self.kv_lengths, 'q_segment_ids': self.q_segment_ids,
            'kv_segment_ids': self.kv_segment_ids, 'mask': self.mask}


class MultiHeadAttention(nnx.Module):
  """Multi-head attention: Q = X W_Q, K = C W_K, V = C W_V per head, then W_O.

  d_k and d_v are per-head sizes and need not equal d_model / num_heads (Table 3 row B);
  num_kv_heads < num_heads shares key/value heads between query heads (GQA/MQA).
  The attention itself is a kernel from `attention.kernels`, picked by name.
  """

  def __init__(self, d_model: int, num_heads: int, *, d_k: int | None = None,
               d_v: int | None = None, num_kv_heads: int | None = None, kernel: str = 'flash',
               kernel_options: dict | None = None, attention_dropout_rate: float = 0.0,
               qk_norm: bool = False, positional_scheme: str = 'none', dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    d_k = d_k or d_model // num_heads
    d_v = d_v or d_model // num_heads
    num_kv_heads = num_kv_heads or num_heads
    if num_heads % num_kv_heads:
      raise ValueError(f'num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})')
    self.kernel = kernels.spec(kernel)
    self.kernel_fn = self.kernel.fn
    self.kernel_options = dict(kernel_options or {})
    self.num_heads, self.num_kv_heads, self.d_k, self.d_v = num_heads, num_kv_heads, d_k, d_v
    self.attention_dropout_rate = attention_dropout_rate
    self.positional_scheme = positional_scheme
    self.dtype = dtype
    init = nnx.initializers.xavier_uniform()
    proj = dict(use_bias=False, dtype=dtype, param_dtype=param_dtype, kernel_init=init, rngs=rngs)
    self.query = nnx.LinearGeneral(d_model, (num_heads, d_k), **proj)
    self.key = nnx.LinearGeneral(d_model, (num_kv_heads, d_k), **proj)
    self.value = nnx.LinearGeneral(d_model, (num_kv_heads, d_v), **proj)
    self.out = nnx.LinearGeneral((num_heads, d_v), d_model, axis=(-2, -1), **proj)
    self.q_norm = nnx.RMSNorm(d_k, dtype=dtype, param_dtype=param_dtype, rngs=rngs) if qk_norm else None
    self.k_norm = nnx.RMSNorm(d_k, dtype=dtype, param_dtype=param_dtype, rngs=rngs) if qk_norm else None
    self.alibi_slopes = (nnx.Variable(positional.alibi_slopes(num_heads))
                         if positional_scheme == 'alibi' else None)
    self.rngs = rngs
    # Set by attention.interpret.maps.attention_maps: __call__ then sows its weights.
    self.record_weights = False
    # Per-head output gates [N], set by attention.interpret.heads: a head multiplied by 0
    # is removed (ablation), and the loss's gradient by each gate is its importance.
    self.head_gate = nnx.data(None) if hasattr(nnx, 'data') else None

  def _output(self, out_BTNV):
    """W_O of the heads' outputs, each scaled by its gate when there are gates."""
    if self.head_gate is not None:
      out_BTNV = out_BTNV * self.head_gate[...][:, None].astype(out_BTNV.dtype)
    return self.out(out_BTNV.astype(self.dtype))

  def _project(self, proj, norm, x_BTD, positions_BT):
    """[B, T, heads, H]: projected, normalized and rotated as configured."""
    y = proj(x_BTD)
    if norm is not None:
      y = norm(y)
    if self.positional_scheme == 'rope':
      y = positional.apply_rope(y, positions_BT)
    return y

  def project_kv(self, context_BSD, kv_positions_BS=None):
    """Keys [B, S, K, H] (normalized and rotated as configured) and values [B, S, K, V]."""
    return (self._project(self.key, self.k_norm, context_BSD, kv_positions_BS),
            self.value(context_BSD))

  def project_q(self, x_BTD, q_positions_BT=None):
    """Queries [B, T, N, H] (normalized and rotated as configured)."""
    return self._project(self.query, self.q_norm, x_BTD, q_positions_BT)

  def attend(self, q_BTNH, k_BSKH, v_BSKV, attn_mask: AttentionMask, *, deterministic: bool):
    """Runs the kernel over whole sequences; returns the output [B, T, D]."""
    kw = dict(attn_mask.kernel_kwargs(), **self.kernel_options)
    if self.alibi_slopes is not None:
      kw['alibi_slopes'] = self.alibi_slopes[...]
    rate = 0.0 if deterministic else self.attention_dropout_rate
    if rate > 0.0:
      kw['dropout_rate'] = rate
      kw['dropout_rng'] = self.rngs.dropout()
    out_BTNV = self.kernel_fn(q_BTNH, k_BSKH, v_BSKV, **kw)
    return self._output(out_BTNV)

  def _step_position_terms(self, position, kv_len: int, is_causal: bool):
    """For a query at `position`: which cached times [T] it sees when the kernel limits
    them itself (Kernel.step_band; else None), and ALiBi's bias [N, T] (or None)."""
    band = bias = None
    if self.kernel.step_band is not None:
      band = self.kernel.step_band(self.kernel_options, position, kv_len, is_causal)
    if self.alibi_slopes is not None:
      bias = positional.alibi_bias(self.alibi_slopes[...], 1, kv_len, position)[0, :, 0, :]
    return band, bias

  def attend_step(self, q_BQNH, k_BSKH, v_BSKV, *, kv_lengths_B, position, is_causal: bool):
    """One decoding step: Q queries per row, all at `position` (a scalar; Q > 1 when the
    beams of one source share a row), over keys [0, kv_lengths). Output [B, Q, D].

    Equals row `position` of `attend` over the whole sequence. Exact and linear kernels
    run as they are (linear attention over a prefix is the causal form at its last row);
    a kernel with a step_band (local's window) becomes that band as a mask on the cached
    row, attended by the reference kernel, which is O(S) per query.
    """
    band, bias = self._step_position_terms(position, k_BSKH.shape[1], is_causal)
    kw = {'kv_lengths': kv_lengths_B}
    fn = self.kernel_fn
    if band is not None:
      kw['mask'] = band[None, None, None, :]
      fn = kernels.get('reference')
    else:
      kw.update(self.kernel_options)
    if bias is not None:
      kw['bias'] = bias[None, :, None, :]
    out_BQNV = fn(q_BQNH, k_BSKH, v_BSKV, **kw)
    return self._output(out_BQNV)

  def attend_beam_step(self, q_R1NH, k_RTKH, v_RTKV, ancestry_BKT, *, position):
    """Causal self-attention step for R = B * K beam rows over a shared cache (see
    kernels.beam_cache): row b * K + k's history is ancestry[b, k]. Output [R, 1, D]."""
    batch, beams, t = ancestry_BKT.shape
    band, bias = self._step_position_terms(position, t, True)
    split = lambda x: x.reshape(batch, beams, *x.shape[1:])
    out = beam_cache.beam_cache_attention(
        split(q_R1NH[:, 0]), split(k_RTKH), split(v_RTKV), ancestry_BKT, position + 1,
        bias_NT=bias, mask_T=band,
        feature_map=self.kernel.feature_map)
    return self._output(out.reshape(batch * beams, 1, *out.shape[2:]))

  def weights(self, q_BTNH, k_BSKH, attn_mask: AttentionMask):
    """Softmax attention weights [B, N, T, S] (float32) of projected queries and keys,
    for inspection. They are the exact kernels' weights; an approximate kernel (`local`,
    `linear`) computes something else (a window of them, or no softmax at all)."""
    kw = attn_mask.kernel_kwargs()
    if self.alibi_slopes is not None:
      kw['alibi_slopes'] = self.alibi_slopes[...]
    return kernels.attention_weights(q_BTNH, k_BSKH, **kw)

  def __call__(self, x_BTD, context_BSD=None, *, attn_mask: AttentionMask | None = None,
               q_positions_BT=None, kv_positions_BS=None, deterministic: bool = True):
    """Self-attention when context is None, else cross-attention over context."""
    context_BSD = x_BTD if context_BSD is None else context_BSD
    if kv_positions_BS is None:
      kv_positions_BS = q_positions_BT
    q = self.project_q(x_BTD, q_positions_BT)
    k, v = self.project_kv(context_BSD, kv_positions_BS)
    attn_mask = attn_mask or AttentionMask()
    if self.record_weights:
      self.sow(nnx.Intermediate, 'attention_weights', self.weights(q, k, attn_mask))
    return self.attend(q, k, v, attn_mask, deterministic=deterministic)


class Dropout(nnx.Module):
  """Inverted dropout with a hashed mask (kernels.dropout.keep_elements), keyed by the
  module's `dropout` RNG stream; same interface as nnx.Dropout."""

  def __init__(self, rate: float, *, rngs: nnx.Rngs):
    if not 0.0 <= rate < 1.0:
      raise ValueError(f'dropout rate must be in [0, 1), got {rate}')
    self.rate = rate
    self.rngs = rngs

  def __call__(self, x, *, deterministic: bool = True):
    if deterministic or self.rate == 0.0:
      return x
    seed = common.rng_to_seed(self.rngs.dropout())
    keep = dropout_lib.keep_elements(seed, x.shape, self.rate)
    return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros_like(x))


class FeedForward(nnx.Module):
  """Position-wise FFN(x) = act(x W_1 + b_1) W_2 + b_2 (ReLU in the paper)."""

  def __init__(self, d_model: int, d_ff: int, *, activation: str = 'relu',
               dropout_rate: float = 0.0, dtype=jnp.float32, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    acts = ACTIVATIONS
    if activation not in acts:
      raise ValueError(f'activation must be one of {sorted(acts)}, got {activation!r}')
    self.activation = acts[activation]
    kw = dict(dtype=dtype, param_dtype=param_dtype, kernel_init=nnx.initializers.xavier_uniform(),
              rngs=rngs)
    self.w1 = nnx.Linear(d_model, d_ff, **kw)
    self.w2 = nnx.Linear(d_ff, d_model, **kw)
    self.dropout = Dropout(dropout_rate, rngs=rngs)

  def __call__(self, x_BTD, *, deterministic: bool = True):
    h_BTF = self.dropout(self.activation(self.w1(x_BTD)), deterministic=deterministic)
    return self.w2(h_BTF)


class Residual(nnx.Module):
  """x + Dropout(sublayer(LN(x))) (pre-LN) or LN(x + Dropout(sublayer(x))) (post-LN, the paper)."""

  def __init__(self, d_model: int, *, norm: str, dropout_rate: float, dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if norm not in ('pre', 'post'):
      raise ValueError(f"norm must be 'pre' or 'post', got {norm!r}")
    self.pre = norm == 'pre'
    self.norm = nnx.LayerNorm(d_model, epsilon=1e-6, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.dropout = Dropout(dropout_rate, rngs=rngs)

  def __call__(self, x, sublayer, *, deterministic: bool):
    if self.pre:
      return x + self.dropout(sublayer(self.norm(x)), deterministic=deterministic)
    return self.norm(x + self.dropout(sublayer(x), deterministic=deterministic))
