"""LSTM encoder-decoder baseline, with or without attention, in Flax NNX.

The recurrent models attention replaced: Sutskever et al. 2014 (no attention: the whole
source passes through the encoder's final state), Bahdanau et al. 2015 (additive
attention, computed from the previous decoder state and fed into the LSTM) and Luong
et al. 2015 (multiplicative "general" attention over the top LSTM state, with input
feeding). Same interface as `Transformer`: __call__(src, tgt_in) -> logits, and
start_decoding / decode_step for the decoders in `attention.models.decoding`.

Config (`config.model` with name='lstm'): num_layers, d_model (embedding and hidden
size), dropout_rate (on embeddings, between encoder layers and before the output),
rnn_attention ('none' | 'luong' | 'bahdanau'), share_embeddings, vocab_size, dtype.
Packed batches (segment ids) are not supported: a recurrence would carry state across
the packed examples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from attention.models import layers
from attention.models.decoding import DecodeCache

RNN_ATTENTION = ('none', 'luong', 'bahdanau')



class Attention(nnx.Module):
  """Scores of one decoder query [B, D] against the encoder memory [B, S, D].

  luong:    score_s = q^T W m_s          (Luong's "general")
  bahdanau: score_s = v^T tanh(W q + U m_s)
  The memory-side projection (W^T m or U m) is computed once per source by `keys`.
  """

  def __init__(self, kind: str, d_model: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.kind = kind
    self.memory_proj = nnx.Linear(d_model, d_model, use_bias=False, **kw)
    if kind == 'bahdanau':
      self.query_proj = nnx.Linear(d_model, d_model, use_bias=False, **kw)
      self.energy = nnx.Linear(d_model, 1, use_bias=False, **kw)

  def keys(self, memory_BSD):
    return self.memory_proj(memory_BSD)

  def __call__(self, query_BD, keys_BSD, memory_BSD, valid_BS):
    """Context [B, D] and weights [B, S] (zero on padded source positions)."""
    if self.kind == 'luong':
      scores = jnp.einsum('bd,bsd->bs', query_BD, keys_BSD, preferred_element_type=jnp.float32)
    else:
      hidden = jnp.tanh(self.query_proj(query_BD)[:, None, :] + keys_BSD)
      scores = self.energy(hidden)[..., 0].astype(jnp.float32)
    scores = jnp.where(valid_BS, scores, -jnp.inf)
    # An empty source (length 0) attends to nothing: weights 0, context 0.
    weights = jnp.where(valid_BS, jax.nn.softmax(scores, axis=-1), 0.0)
    return jnp.einsum('bs,bsd->bd', weights.astype(memory_BSD.dtype), memory_BSD), weights


class LSTMSeq2Seq(nnx.Module):
  """LSTM encoder-decoder; __call__(src, tgt_in) -> logits [B, T, vocab] (float32)."""

  def __init__(self, cfg, *, rngs: nnx.Rngs):
    kind = cfg.get('rnn_attention', 'luong')
    if kind not in RNN_ATTENTION:
      raise ValueError(f'model.rnn_attention must be one of {RNN_ATTENTION}, got {kind!r}')
    self.cfg = cfg
    self.kind = kind
    d = cfg.d_model
    dtype, param_dtype = layers.parse_dtype(cfg.dtype), layers.parse_dtype(cfg.param_dtype)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    embed = lambda: nnx.Embed(cfg.vocab_size, d, **kw)
    self.source_embedding = embed()
    self.target_embedding = None if cfg.share_embeddings else embed()
    self.encoder = layers.module_list([nnx.OptimizedLSTMCell(d, d, **kw)
                                 for _ in range(cfg.num_layers)])
    # The first decoder layer reads the token embedding and the attention feed.
    feed = 0 if kind == 'none' else d
    self.decoder = layers.module_list([nnx.OptimizedLSTMCell(d + feed if i == 0 else d, d, **kw)
                                 for i in range(cfg.num_layers)])
    self.attention = None if kind == 'none' else Attention(kind, d, **kw)
    self.combine = None if kind == 'none' else nnx.Linear(2 * d, d, use_bias=False, **kw)
    self.output_projection = None if cfg.share_embeddings else nnx.Linear(
        d, cfg.vocab_size, use_bias=False, **kw)
    self.dropout = layers.Dropout(cfg.dropout_rate, rngs=rngs)
    self.dtype = dtype

  # -- encoder ---------------------------------------------------------------------------

  def encode(self, src_BS, *, src_segment_ids=None, src_positions=None, deterministic=True):
    """(memory [B, S, D], final (c, h) of each layer at each row's last real token)."""
    if src_segment_ids is not None:
      raise ValueError('model.name=lstm does not take packed batches (segment ids)')
    valid_BS = src_BS != 0
    x = self.dropout(self.source_embedding(src_BS), deterministic=deterministic)
    finals = []
    for i, cell in enumerate(self.encoder):
      if i:
        x = self.dropout(x, deterministic=deterministic)
      x, final = _run_masked(cell, x, valid_BS)
      finals.append(final)
    return x, finals

  # -- decoder ---------------------------------------------------------------------------

  def _step(self, carry, emb_BD, static):
    """One decoder step. carry = (per-layer (c, h), feed [B, D]).
    Returns (carry, out [B, D], attention weights [B, S] or None)."""
    layers, feed = carry
    weights = None
    if self.kind == 'bahdanau':
      # The context is computed from the previous top state and read by the LSTM.
      feed, weights = self.attention(layers[-1][1], static['keys'], static['memory'],
                                     static['valid'])
    x = emb_BD if self.kind == 'none' else jnp.concatenate([emb_BD, feed.astype(emb_BD.dtype)], -1)
    new_layers = []
    for cell, state in zip(self.decoder, layers):
      state, x = cell(state, x)
      new_layers.append(state)
    if self.kind == 'none':
      return (new_layers, feed), x, weights
    context = feed
    if self.kind == 'luong':
      context, weights = self.attention(x, static['keys'], static['memory'], static['valid'])
    out = jnp.tanh(self.combine(jnp.concatenate([context.astype(x.dtype), x], -1)))
    # Luong's input feeding: the attentional output is the next step's extra input.
    return (new_layers, out if self.kind == 'luong' else feed), out, weights

  def _static(self, src_BS, encoded):
    memory, finals = encoded
    static = {'memory': memory, 'valid': src_BS != 0}
    if self.attention is not None:
      static['keys'] = self.attention.keys(memory)
    batch, d = src_BS.shape[0], self.cfg.d_model
    return static, (finals, jnp.zeros((batch, d), memory.dtype))

  def decode(self, encoded, src_BS, tgt_in_BT, *, src_segment_ids=None, tgt_segment_ids=None,
             tgt_positions=None, deterministic=True):
    """Teacher-forced decoder: logits [B, T, vocab] (float32)."""
    if tgt_segment_ids is not None:
      raise ValueError('model.name=lstm does not take packed batches (segment ids)')
    static, carry = self._static(src_BS, encoded)
    emb = self.dropout(self._target_embed(tgt_in_BT), deterministic=deterministic)
    step = lambda c, e: self._step(c, e, static)[:2]
    _, out_TBD = jax.lax.scan(step, carry, jnp.swapaxes(emb, 0, 1))
    out = self.dropout(jnp.swapaxes(out_TBD, 0, 1), deterministic=deterministic)
    return self.logits(out)

  def _target_embed(self, tokens):
    return (self.target_embedding or self.source_embedding)(tokens)

  def logits(self, y_BTD):
    if self.output_projection is not None:
      return self.output_projection(y_BTD).astype(jnp.float32)
    return self.source_embedding.attend(y_BTD).astype(jnp.float32)

  def __call__(self, src_BS, tgt_in_BT, *, src_segment_ids=None, tgt_segment_ids=None,
               src_positions=None, tgt_positions=None, deterministic=True):
    encoded = self.encode(src_BS, src_segment_ids=src_segment_ids, deterministic=deterministic)
    return self.decode(encoded, src_BS, tgt_in_BT, tgt_segment_ids=tgt_segment_ids,
                       deterministic=deterministic)

  # -- incremental decoding --------------------------------------------------------------

  def start_decoding(self, src_BS, max_length: int, beams: int = 1) -> DecodeCache:
    """Encodes once; every part is repeated for the B * beams rows (it is small)."""
    del max_length  # the recurrent state has a fixed size
    static, carry = self._static(src_BS, self.encode(src_BS))
    cache = DecodeCache(static=static, dynamic=carry)
    return jax.tree_util.tree_map(lambda x: jnp.repeat(x, beams, axis=0), cache)

  def decode_step(self, cache: DecodeCache, tokens_R, t):
    del t  # position is implicit in the recurrent state
    carry, out, _ = self._step(cache.dynamic, self._target_embed(tokens_R), cache.static)
    return self.logits(out), DecodeCache(cache.static, carry)

  def reorder_cache(self, cache: DecodeCache, parent_BK) -> DecodeCache:
    """Beam k continues beam parent[b, k]: copy that beam's recurrent state."""
    batch, beams = parent_BK.shape
    rows = (jnp.arange(batch)[:, None] * beams + parent_BK).reshape(-1)
    return DecodeCache(cache.static, jax.tree_util.tree_map(lambda x: x[rows], cache.dynamic))

  def cross_attention_weights(self, src_BS, tgt_in_BT):
    """Decoder-to-source attention weights [B, T, S] (float32) for visualization."""
    if self.attention is None:
      raise ValueError('model.rnn_attention=none has no attention weights')
    static, carry = self._static(src_BS, self.encode(src_BS))

    def step(carry, emb_BD):
      carry, _, weights_BS = self._step(carry, emb_BD, static)
      return carry, weights_BS

    _, w_TBS = jax.lax.scan(step, carry, jnp.swapaxes(self._target_embed(tgt_in_BT), 0, 1))
    return jnp.swapaxes(w_TBS, 0, 1)


def _run_masked(cell, x_BTD, valid_BT):
  """Runs an LSTM cell over time; past a row's last real token its state stops changing,
  so the final carry is the state at the last real token. Outputs [B, T, D], (c, h)."""
  batch, _, d = x_BTD.shape
  zeros = jnp.zeros((batch, cell.hidden_features), x_BTD.dtype)

  def step(carry, inputs):
    x_BD, valid_B = inputs
    new_carry, out = cell(carry, x_BD)
    keep = valid_B[:, None]
    carry = tuple(jnp.where(keep, n, o) for n, o in zip(new_carry, carry))
    return carry, out

  final, out_TBD = jax.lax.scan(step, (zeros, zeros),
                                (jnp.swapaxes(x_BTD, 0, 1), jnp.swapaxes(valid_BT, 0, 1)))
  return jnp.swapaxes(out_TBD, 0, 1), final
