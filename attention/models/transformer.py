"""The encoder-decoder Transformer of Vaswani et al. 2017, in Flax NNX.

Built from `config.model` (field names follow the paper's Table 3: num_layers = N,
d_model, d_ff, num_heads = h, d_k, d_v, dropout_rate = P_drop). Token id 0 is padding:
padded source positions are invisible to every query, and padded target positions
produce logits that the loss masks out. Sequences are right-padded, or packed with
segment ids and per-segment positions.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from attention import kernels
from attention.models import layers, positional
from attention.models.decoding import DecodeCache
from attention.models.layers import AttentionMask, FeedForward, MultiHeadAttention, Residual

POSITIONAL_SCHEMES = ('sinusoidal', 'learned', 'rope', 'alibi', 'none')



def _attention(cfg, rngs, *, positional_scheme=None):
  return MultiHeadAttention(
      cfg.d_model, cfg.num_heads, d_k=cfg.d_k or None, d_v=cfg.d_v or None,
      num_kv_heads=cfg.num_kv_heads or None, kernel=cfg.kernel,
      kernel_options=kernel_options(cfg),
      attention_dropout_rate=cfg.attention_dropout_rate, qk_norm=cfg.get('qk_norm', False),
      positional_scheme=positional_scheme or cfg.positional, dtype=layers.parse_dtype(cfg.dtype),
      param_dtype=layers.parse_dtype(cfg.param_dtype), rngs=rngs)


def kernel_options(cfg) -> dict:
  """Keyword options of the configured kernel: model.kernel_options when set (tests,
  benchmarks), else what the kernel reads from the model config (Kernel.options)."""
  if cfg.get('kernel_options'):
    return dict(cfg.kernel_options)
  return kernels.spec(cfg.kernel).options(cfg)


def _residual(cfg, rngs):
  return Residual(cfg.d_model, norm=cfg.norm, dropout_rate=cfg.dropout_rate,
                  dtype=layers.parse_dtype(cfg.dtype), param_dtype=layers.parse_dtype(cfg.param_dtype), rngs=rngs)


def _feed_forward(cfg, rngs):
  return FeedForward(cfg.d_model, cfg.d_ff, activation=cfg.get('activation', 'relu'),
                     dropout_rate=cfg.dropout_rate, dtype=layers.parse_dtype(cfg.dtype),
                     param_dtype=layers.parse_dtype(cfg.param_dtype), rngs=rngs)


class EncoderBlock(nnx.Module):
  """Self-attention then feed-forward, each inside a residual connection."""

  def __init__(self, cfg, *, rngs: nnx.Rngs):
    self.self_attention = _attention(cfg, rngs)
    self.feed_forward = _feed_forward(cfg, rngs)
    self.residual_attention = _residual(cfg, rngs)
    self.residual_ff = _residual(cfg, rngs)

  def __call__(self, x_BSD, attn_mask, positions_BS, *, deterministic):
    x_BSD = self.residual_attention(
        x_BSD, lambda h: self.self_attention(h, attn_mask=attn_mask, q_positions_BT=positions_BS,
                                             deterministic=deterministic),
        deterministic=deterministic)
    return self.residual_ff(x_BSD, lambda h: self.feed_forward(h, deterministic=deterministic),
                            deterministic=deterministic)


class DecoderBlock(nnx.Module):
  """Causal self-attention, cross-attention over the encoder output, feed-forward."""

  def __init__(self, cfg, *, rngs: nnx.Rngs):
    self.self_attention = _attention(cfg, rngs)
    # Positions of a source and a target word are not comparable: no RoPE/ALiBi across.
    self.cross_attention = _attention(cfg, rngs, positional_scheme='none')
    self.feed_forward = _feed_forward(cfg, rngs)
    self.residual_self = _residual(cfg, rngs)
    self.residual_cross = _residual(cfg, rngs)
    self.residual_ff = _residual(cfg, rngs)

  def __call__(self, y_BTD, memory_BSD, self_mask, cross_mask, positions_BT, *, deterministic):
    y_BTD = self.residual_self(
        y_BTD, lambda h: self.self_attention(h, attn_mask=self_mask, q_positions_BT=positions_BT,
                                             deterministic=deterministic),
        deterministic=deterministic)
    y_BTD = self.residual_cross(
        y_BTD, lambda h: self.cross_attention(h, memory_BSD, attn_mask=cross_mask,
                                              deterministic=deterministic),
        deterministic=deterministic)
    return self.residual_ff(y_BTD, lambda h: self.feed_forward(h, deterministic=deterministic),
                            deterministic=deterministic)

  def step(self, y_R1D, self_kv, cross_kv, src_lengths_B, t, ancestry_BKT=None):
    """One decoding step at target position t (a scalar) for R = B * K rows (K beams per
    source; K = 1 without beams). Writes this position's key and value into the
    self-attention cache (k [R, T, Kh, H], v [R, T, Kh, V]) and attends over positions
    0..t: over the row's own cache, or through `ancestry` [B, K, T] over the cache the
    beams share. Cross-attention reads the source's keys/values once for its K beams.
    Returns (y [R, 1, D], updated self_kv)."""
    rows = y_R1D.shape[0]
    batch = src_lengths_B.shape[0]
    positions = jnp.full((rows, 1), t)
    updated = []

    def self_attend(h):
      att = self.self_attention
      q = att.project_q(h, positions)
      k, v = att.project_kv(h, positions)
      k_cache = jax.lax.dynamic_update_slice_in_dim(self_kv[0], k.astype(self_kv[0].dtype), t, 1)
      v_cache = jax.lax.dynamic_update_slice_in_dim(self_kv[1], v.astype(self_kv[1].dtype), t, 1)
      updated.append((k_cache, v_cache))
      if ancestry_BKT is not None:
        return att.attend_beam_step(q, k_cache, v_cache, ancestry_BKT, position=t)
      return att.attend_step(q, k_cache, v_cache, kv_lengths_B=jnp.full((rows,), t + 1),
                             position=t, is_causal=True)

    def cross_attend(h):
      att = self.cross_attention
      # The K beams of a source become K queries of one row: its keys are read once.
      q = att.project_q(h).reshape(batch, rows // batch, att.num_heads, att.d_k)
      out = att.attend_step(q, *cross_kv, kv_lengths_B=src_lengths_B, position=t,
                            is_causal=False)
      return out.reshape(rows, 1, -1)

    y_R1D = self.residual_self(y_R1D, self_attend, deterministic=True)
    y_R1D = self.residual_cross(y_R1D, cross_attend, deterministic=True)
    y_R1D = self.residual_ff(y_R1D, self.feed_forward, deterministic=True)
    return y_R1D, updated[0]


class Transformer(nnx.Module):
  """Encoder-decoder Transformer; __call__(src [B, S], tgt_in [B, T]) -> logits [B, T, vocab]."""

  @classmethod
  def from_preset(cls, preset: str, *, rngs: nnx.Rngs, **fields) -> Transformer:
    """The Transformer of a preset (attention.models.presets: tiny, mini, small, long, base, big)
    with fields of config.model replaced; vocab_size is required (> 0)."""
    from attention.models import presets
    cfg = presets.with_fields(preset, fields)
    if cfg.name != 'transformer':
      raise ValueError(f'preset {preset!r} is not a Transformer (model.name={cfg.name!r})')
    return cls(cfg, rngs=rngs)

  def __init__(self, cfg, *, rngs: nnx.Rngs):
    if cfg.positional not in POSITIONAL_SCHEMES:
      raise ValueError(f'model.positional must be one of {POSITIONAL_SCHEMES}, got {cfg.positional!r}')
    if cfg.norm not in ('pre', 'post'):
      raise ValueError(f"model.norm must be 'pre' or 'post', got {cfg.norm!r}")
    self.cfg = cfg
    dtype, param_dtype = layers.parse_dtype(cfg.dtype), layers.parse_dtype(cfg.param_dtype)
    embed = lambda: nnx.Embed(cfg.vocab_size, cfg.d_model, dtype=dtype, param_dtype=param_dtype,
                              embedding_init=nnx.initializers.normal(cfg.d_model ** -0.5),
                              rngs=rngs)
    self.source_embedding = embed()
    self.target_embedding = None if cfg.share_embeddings else embed()
    self.output_projection = None if cfg.share_embeddings else nnx.Linear(
        cfg.d_model, cfg.vocab_size, use_bias=False, dtype=dtype, param_dtype=param_dtype,
        rngs=rngs)
    self.learned_positions = (
        positional.LearnedPositionalEmbedding(cfg.max_length, cfg.d_model, param_dtype=param_dtype,
                                              rngs=rngs)
        if cfg.positional == 'learned' else None)
    self.encoder = layers.module_list([EncoderBlock(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
    self.decoder = layers.module_list([DecoderBlock(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
    final_norm = lambda: nnx.LayerNorm(cfg.d_model, epsilon=1e-6, dtype=dtype,
                                       param_dtype=param_dtype, rngs=rngs)
    # Pre-LN leaves the residual stream unnormalized, so each stack ends with a LayerNorm.
    self.encoder_norm = final_norm() if cfg.norm == 'pre' else None
    self.decoder_norm = final_norm() if cfg.norm == 'pre' else None
    self.dropout = layers.Dropout(cfg.dropout_rate, rngs=rngs)

  def _embed(self, table, tokens_BT, positions_BT, *, deterministic):
    x = table(tokens_BT) * math.sqrt(self.cfg.d_model)
    if self.cfg.positional == 'sinusoidal':
      x = x + positional.sinusoidal_encoding(positions_BT, self.cfg.d_model).astype(x.dtype)
    elif self.cfg.positional == 'learned':
      x = x + self.learned_positions(positions_BT).astype(x.dtype)
    return self.dropout(x, deterministic=deterministic)

  def encode(self, src_BS, *, src_segment_ids=None, src_positions=None, deterministic=True):
    """Encoder output [B, S, D] and the source mask info used by cross-attention."""
    positions = _positions(src_BS, src_positions)
    mask = source_mask(src_BS, src_segment_ids)
    x = self._embed(self.source_embedding, src_BS, positions, deterministic=deterministic)
    for block in self.encoder:
      x = block(x, mask, positions, deterministic=deterministic)
    if self.encoder_norm is not None:
      x = self.encoder_norm(x)
    return x

  def decode(self, memory_BSD, src_BS, tgt_in_BT, *, src_segment_ids=None,
             tgt_segment_ids=None, tgt_positions=None, deterministic=True):
    """Teacher-forced decoder: logits [B, T, vocab] (float32) for every target position."""
    positions = _positions(tgt_in_BT, tgt_positions)
    self_mask, cross_mask = target_masks(src_BS, tgt_in_BT, src_segment_ids, tgt_segment_ids)
    table = self.target_embedding or self.source_embedding
    y = self._embed(table, tgt_in_BT, positions, deterministic=deterministic)
    for block in self.decoder:
      y = block(y, memory_BSD, self_mask, cross_mask, positions, deterministic=deterministic)
    return self.logits(y)

  def start_decoding(self, src_BS, max_length: int, beams: int = 1) -> DecodeCache:
    """Encodes the source once; empty self-attention caches for max_length target steps
    of B * beams rows (row b * beams + k is beam k of source b)."""
    if self.learned_positions is not None and max_length > self.cfg.max_length:
      raise ValueError(f'decoding length {max_length} exceeds model.max_length '
                       f'({self.cfg.max_length}), the size of the learned position table')
    memory = self.encode(src_BS)
    rows = src_BS.shape[0] * beams
    cross, self_kv = [], []
    for block in self.decoder:
      att = block.self_attention
      cross.append(block.cross_attention.project_kv(memory))
      self_kv.append((jnp.zeros((rows, max_length, att.num_kv_heads, att.d_k), att.dtype),
                      jnp.zeros((rows, max_length, att.num_kv_heads, att.d_v), att.dtype)))
    src_lengths, _ = _visibility(src_BS, None)
    dynamic = {'self': self_kv}
    if beams > 1:
      dynamic['ancestry'] = _own_slots(src_BS.shape[0], beams, max_length)
    return DecodeCache(static={'src_lengths': src_lengths, 'cross': cross}, dynamic=dynamic)

  def decode_step(self, cache: DecodeCache, tokens_R, t):
    """Logits [R, vocab] (float32) for position t + 1 given the token at position t."""
    table = self.target_embedding or self.source_embedding
    positions = jnp.full((tokens_R.shape[0], 1), t)
    y = self._embed(table, tokens_R[:, None], positions, deterministic=True)
    ancestry = cache.dynamic.get('ancestry')
    if ancestry is not None:
      # At step t every beam's own slot holds its token at time t.
      own = _own_slots(ancestry.shape[0], ancestry.shape[1], 1)
      ancestry = jax.lax.dynamic_update_slice_in_dim(ancestry, own, t, 2)
    self_kv = []
    for block, kv, cross in zip(self.decoder, cache.dynamic['self'], cache.static['cross']):
      y, kv = block.step(y, kv, cross, cache.static['src_lengths'], t, ancestry)
      self_kv.append(kv)
    dynamic = {'self': self_kv}
    if ancestry is not None:
      dynamic['ancestry'] = ancestry
    return self.logits(y)[:, 0], DecodeCache(cache.static, dynamic)

  def reorder_cache(self, cache: DecodeCache, parent_BK) -> DecodeCache:
    """Beam k continues beam parent[b, k]: it inherits that beam's history (ancestry
    only; the key/value cache stays where it is). One beam is always its own parent."""
    if 'ancestry' not in cache.dynamic:
      return cache
    ancestry = jnp.take_along_axis(cache.dynamic['ancestry'], parent_BK[:, :, None], axis=1)
    return DecodeCache(cache.static, dict(cache.dynamic, ancestry=ancestry))

  def logits(self, y_BTD):
    if self.decoder_norm is not None:
      y_BTD = self.decoder_norm(y_BTD)
    if self.output_projection is not None:
      return self.output_projection(y_BTD).astype(jnp.float32)
    return self.source_embedding.attend(y_BTD).astype(jnp.float32)

  def __call__(self, src_BS, tgt_in_BT, *, src_segment_ids=None, tgt_segment_ids=None,
               src_positions=None, tgt_positions=None, deterministic=True):
    memory = self.encode(src_BS, src_segment_ids=src_segment_ids, src_positions=src_positions,
                         deterministic=deterministic)
    return self.decode(memory, src_BS, tgt_in_BT, src_segment_ids=src_segment_ids,
                       tgt_segment_ids=tgt_segment_ids, tgt_positions=tgt_positions,
                       deterministic=deterministic)


def _own_slots(batch: int, beams: int, length: int):
  """Ancestry [B, K, length] in which every beam is its own ancestor (kernels.beam_cache)."""
  return jnp.broadcast_to(jnp.arange(beams, dtype=jnp.int32)[None, :, None],
                          (batch, beams, length))


def _positions(tokens_BT, positions_BT):
  if positions_BT is not None:
    return positions_BT
  return jnp.broadcast_to(jnp.arange(tokens_BT.shape[1]), tokens_BT.shape)


def _visibility(tokens_BT, segment_ids_BT):
  """Unpacked rows are right-padded: lengths (which every kernel takes, and which let
  flash skip padded tiles). Packed rows: segment ids, with padding (token 0) moved to
  segment 0, which no real token is in. Returns (lengths, segment_ids), one of them None."""
  valid = (tokens_BT != 0).astype(jnp.int32)
  if segment_ids_BT is None:
    return jnp.sum(valid, axis=1), None
  return None, segment_ids_BT * valid


def source_mask(src_BS, src_segment_ids=None) -> AttentionMask:
  lengths, seg = _visibility(src_BS, src_segment_ids)
  return AttentionMask(q_lengths=lengths, kv_lengths=lengths, q_segment_ids=seg,
                       kv_segment_ids=seg)


def target_masks(src_BS, tgt_BT, src_segment_ids=None, tgt_segment_ids=None):
  """Decoder self-attention (causal) and cross-attention masks."""
  src_len, src_seg = _visibility(src_BS, src_segment_ids)
  tgt_len, tgt_seg = _visibility(tgt_BT, tgt_segment_ids)
  self_mask = AttentionMask(is_causal=True, q_lengths=tgt_len, kv_lengths=tgt_len,
                            q_segment_ids=tgt_seg, kv_segment_ids=tgt_seg)
  cross_mask = AttentionMask(q_lengths=tgt_len, kv_lengths=src_len, q_segment_ids=tgt_seg,
                             kv_segment_ids=src_seg)
  return self_mask, cross_mask
