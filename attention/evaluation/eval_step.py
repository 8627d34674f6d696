"""Token metrics and the eval step: teacher-forced loss and accuracy of a batch.

Shared by evaluation (scoring a split) and training (the train step optimizes the same
loss), so it sits in evaluation, below training. Batches are as in
attention.training.step: src, tgt_in, tgt_out, and for packed rows segment ids and
positions; PAD (0) in tgt_out carries no loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from attention.models import merge_model

MODEL_INPUTS = ('src_segment_ids', 'tgt_segment_ids', 'src_positions', 'tgt_positions')


def model_kwargs(batch) -> dict:
  return {k: batch[k] for k in MODEL_INPUTS if k in batch}


def token_metrics(logits_BTV, tgt_out_BT, *, label_smoothing: float = 0.0) -> dict:
  """Sums over non-PAD target tokens: `loss` (smoothed cross-entropy, what is optimized),
  `nll` (plain cross-entropy, for perplexity), `correct` (argmax hits), `tokens`."""
  weights = (tgt_out_BT != 0).astype(jnp.float32)
  vocab = logits_BTV.shape[-1]
  one_hot = jax.nn.one_hot(tgt_out_BT, vocab, dtype=jnp.float32)
  nll = optax.softmax_cross_entropy(logits_BTV, one_hot)
  if label_smoothing > 0:
    loss = optax.softmax_cross_entropy(logits_BTV, optax.smooth_labels(one_hot, label_smoothing))
  else:
    loss = nll
  correct = (jnp.argmax(logits_BTV, -1) == tgt_out_BT).astype(jnp.float32)
  return {'loss': jnp.sum(loss * weights), 'nll': jnp.sum(nll * weights),
          'correct': jnp.sum(correct * weights), 'tokens': jnp.sum(weights)}


def make_eval_step(graphdef, rest, *, jit: bool = True):
  """eval_step(params, batch) -> token_metrics sums (deterministic, no smoothing)."""

  def eval_fn(params, batch):
    model = merge_model(graphdef, params, rest)
    logits = model(batch['src'], batch['tgt_in'], deterministic=True, **model_kwargs(batch))
    return token_metrics(logits, batch['tgt_out'])

  return jax.jit(eval_fn) if jit else eval_fn
