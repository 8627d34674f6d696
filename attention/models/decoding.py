"""Autoregressive decoding: greedy, sampling and beam search over a key/value cache.

The functions work with any model that has the decoding interface below, so the
Transformer and the LSTM baseline decode with the same code:
  start_decoding(src_BS, max_length, beams=1) -> DecodeCache for R = B * beams rows
  decode_step(cache, tokens_R, step) -> (logits_RV float32, DecodeCache)
  reorder_cache(cache, parent_BK) -> DecodeCache: beam k now continues beam parent[b, k]
How a model lays out its cache is its own business (the Transformer keeps one cross-
attention cache per source and lets beams share their self-attention cache).

They are pure and loop with `lax.while_loop`; call them inside `nnx.jit` (or use
`jit_decoder`). Outputs are token arrays of length `max_length`: the generated tokens
after BOS, EOS included, then PAD (0). Rows of a batch may have different source lengths
(right-padded with 0).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from attention import BOS_ID, EOS_ID, PAD_ID


class DecodeCache(NamedTuple):
  """The state a model carries between decoding steps."""
  # Computed once from the source: cross-attention keys/values, source lengths.
  static: Any
  # Changes every step: self-attention keys/values, recurrent state, beam ancestry.
  dynamic: Any


def length_penalty(length, alpha: float):
  """GNMT (Wu et al. 2016): ((5 + length) / 6) ** alpha; beam scores are log p / this."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def _never_generated(logits_BV):
  """PAD and BOS are never produced: -inf at their logits (after any normalization, so a
  score is still the model's own log-probability)."""
  return logits_BV.at[..., PAD_ID].set(-jnp.inf).at[..., BOS_ID].set(-jnp.inf)


def _decode_loop(model, src_BS, choose, *, max_length: int, bos_id: int, eos_id: int):
  """Runs decode_step until every row has emitted EOS or max_length tokens exist.
  choose(logits_BV, t) -> tokens_B picks the next token."""
  batch = src_BS.shape[0]
  cache = model.start_decoding(src_BS, max_length)

  def cond(state):
    t, _, _, done, _ = state
    return (t < max_length) & ~jnp.all(done)

  def body(state):
    t, out_BT, last_B, done_B, cache = state
    logits_BV, cache = model.decode_step(cache, last_B, t)
    nxt_B = jnp.where(done_B, PAD_ID, choose(_never_generated(logits_BV), t))
    nxt_B = nxt_B.astype(jnp.int32)
    out_BT = jax.lax.dynamic_update_slice_in_dim(out_BT, nxt_B[:, None], t, 1)
    return t + 1, out_BT, nxt_B, done_B | (nxt_B == eos_id), cache

  state = (jnp.int32(0), jnp.zeros((batch, max_length), jnp.int32),
           jnp.full((batch,), bos_id, jnp.int32), jnp.zeros((batch,), bool), cache)
  return jax.lax.while_loop(cond, body, state)[1]


def greedy_decode(model, src_BS, *, max_length: int, bos_id: int = BOS_ID,
                  eos_id: int = EOS_ID):
  """The most probable next token at every step; tokens [B, max_length]."""
  return _decode_loop(model, src_BS, lambda logits, t: jnp.argmax(logits, axis=-1),
                      max_length=max_length, bos_id=bos_id, eos_id=eos_id)


def sample_decode(model, src_BS, rng, *, max_length: int, temperature: float = 1.0,
                  top_k: int = 0, bos_id: int = BOS_ID, eos_id: int = EOS_ID):
  """Ancestral sampling from softmax(logits / temperature), restricted to the top_k most
  probable tokens when top_k > 0; temperature 0 is greedy. Tokens [B, max_length]."""
  if temperature < 0 or top_k < 0:
    raise ValueError(f'temperature and top_k must be >= 0, got {temperature}, {top_k}')
  if temperature == 0:
    return greedy_decode(model, src_BS, max_length=max_length, bos_id=bos_id, eos_id=eos_id)

  def choose(logits_BV, t):
    logits_BV = logits_BV / temperature
    if top_k:
      kth = jax.lax.top_k(logits_BV, top_k)[0][:, -1:]
      logits_BV = jnp.where(logits_BV < kth, -jnp.inf, logits_BV)
    return jax.random.categorical(jax.random.fold_in(rng, t), logits_BV)

  return _decode_loop(model, src_BS, choose, max_length=max_length, bos_id=bos_id,
                      eos_id=eos_id)


def uncached_greedy_decode(model, src_BS, *, max_length: int, bos_id: int = BOS_ID,
                           eos_id: int = EOS_ID):
  """Greedy decoding that re-runs the whole decoder over the prefix at every step (the
  encoder still runs once): O(T^2) decoder work, the baseline the cache is measured
  against. Same tokens as `greedy_decode`."""
  batch = src_BS.shape[0]
  memory = model.encode(src_BS)

  def cond(state):
    t, _, _, done = state
    return (t < max_length) & ~jnp.all(done)

  def body(state):
    t, out_BT, tgt_in_BT, done_B = state
    logits_BTV = model.decode(memory, src_BS, tgt_in_BT)
    logits_BV = jax.lax.dynamic_index_in_dim(logits_BTV, t, 1, keepdims=False)
    nxt_B = jnp.argmax(_never_generated(logits_BV), -1)
    nxt_B = jnp.where(done_B, PAD_ID, nxt_B).astype(jnp.int32)
    out_BT = jax.lax.dynamic_update_slice_in_dim(out_BT, nxt_B[:, None], t, 1)
    # Output t is decoder input t + 1 (at the last step the index clamps; nothing reads it).
    tgt_in_BT = jax.lax.dynamic_update_slice_in_dim(tgt_in_BT, nxt_B[:, None], t + 1, 1)
    return t + 1, out_BT, tgt_in_BT, done_B | (nxt_B == eos_id)

  out = jnp.zeros((batch, max_length), jnp.int32)
  state = (jnp.int32(0), out, out.at[:, 0].set(bos_id), jnp.zeros((batch,), bool))
  return jax.lax.while_loop(cond, body, state)[1]


def beam_search(model, src_BS, *, beam_size: int, max_length: int, alpha: float = 0.6,
                bos_id: int = BOS_ID, eos_id: int = EOS_ID):
  """Batched beam search with the GNMT length penalty.

  Every step ranks, per row, the one-token extensions of the unfinished beams together
  with the finished beams, by log p / length_penalty(length) (length counts EOS), and
  keeps the best `beam_size`. A beam that emits EOS is finished and keeps its score and
  its slot; the search stops once every beam of every row has finished, or at max_length
  (unfinished beams are then scored at max_length). With beam_size 1 this is greedy
  decoding, whatever alpha.

  Returns (tokens [B, beam_size, max_length], scores [B, beam_size]), best first.
  """
  if beam_size < 1:
    raise ValueError(f'beam_size must be >= 1, got {beam_size}')
  batch, beams = src_BS.shape[0], beam_size
  cache = model.start_decoding(src_BS, max_length, beams=beams)
  neg_inf = jnp.float32(-jnp.inf)

  def cond(state):
    t, _, _, _, done, _, _ = state
    return (t < max_length) & ~jnp.all(done)

  def body(state):
    t, seq_BKT, logp_BK, score_BK, done_BK, last, cache = state
    logits, cache = model.decode_step(cache, last, t)
    vocab = logits.shape[-1]
    logp_BKV = _never_generated(jax.nn.log_softmax(logits)).reshape(batch, beams, vocab)
    ext_logp = logp_BK[:, :, None] + logp_BKV
    ext_score = jnp.where(done_BK[:, :, None], neg_inf, ext_logp / length_penalty(t + 1, alpha))
    kept_score = jnp.where(done_BK, score_BK, neg_inf)
    candidates = jnp.concatenate([ext_score.reshape(batch, -1), kept_score], axis=1)
    score_BK, pick = jax.lax.top_k(candidates, beams)
    extended = pick < beams * vocab
    parent = jnp.where(extended, pick // vocab, pick - beams * vocab)
    token = jnp.where(extended, pick % vocab, PAD_ID).astype(jnp.int32)
    ext_pick = jnp.minimum(pick, beams * vocab - 1)
    logp_BK = jnp.where(extended,
                        jnp.take_along_axis(ext_logp.reshape(batch, -1), ext_pick, axis=1),
                        jnp.take_along_axis(logp_BK, parent, axis=1))
    seq_BKT = jnp.take_along_axis(seq_BKT, parent[:, :, None], axis=1)
    seq_BKT = jax.lax.dynamic_update_slice_in_dim(seq_BKT, token[:, :, None], t, 2)
    done_BK = jnp.where(extended, token == eos_id, True)
    cache = model.reorder_cache(cache, parent)
    return t + 1, seq_BKT, logp_BK, score_BK, done_BK, token.reshape(-1), cache

  # Only beam 0 is live at the start, so the first step does not pick one token K times.
  logp = jnp.tile(jnp.array([0.0] + [-jnp.inf] * (beams - 1), jnp.float32), (batch, 1))
  state = (jnp.int32(0), jnp.zeros((batch, beams, max_length), jnp.int32), logp, logp,
           jnp.zeros((batch, beams), bool), jnp.full((batch * beams,), bos_id, jnp.int32),
           cache)
  _, tokens, _, scores, _, _, _ = jax.lax.while_loop(cond, body, state)
  return tokens, scores


def sequence_log_prob(model, src_BS, tokens_BT, *, bos_id: int = BOS_ID,
                      eos_id: int = EOS_ID):
  """Teacher-forced log p(tokens | src) [B], summed up to and including the first EOS
  (all tokens when there is none). The check that decoders report honest scores."""
  tgt_in = jnp.concatenate([jnp.full_like(tokens_BT[:, :1], bos_id), tokens_BT[:, :-1]], 1)
  logp = jax.nn.log_softmax(model(src_BS, tgt_in))
  token_logp = jnp.take_along_axis(logp, tokens_BT[..., None], axis=-1)[..., 0]
  ended_before = jnp.cumsum(tokens_BT == eos_id, axis=1) - (tokens_BT == eos_id)
  return jnp.sum(jnp.where(ended_before == 0, token_logp, 0.0), axis=1)


def output_lengths(tokens_BT, eos_id: int = EOS_ID):
  """Generated length counting EOS; max_length when a row never ends."""
  ended = tokens_BT == eos_id
  first = jnp.argmax(ended, axis=1)
  return jnp.where(jnp.any(ended, axis=1), first + 1, tokens_BT.shape[1])


@functools.lru_cache(maxsize=None)
def _jitted(fn, static):
  return nnx.jit(functools.partial(fn, **dict(static)))


def jit_decoder(fn, **static):
  """`fn` (one of the decoders above) compiled once per set of static options:
  jit_decoder(beam_search, beam_size=4, max_length=64, alpha=0.6)(model, src)."""
  return _jitted(fn, tuple(sorted(static.items())))
