"""The one train step (and its eval twin) used by training, benchmarks and tests.

A batch is a dict of int32 arrays:
  src [B, S], tgt_in [B, T] (BOS + target[:-1], per example), tgt_out [B, T] (target + EOS),
  and, for packed batches, src_segment_ids / tgt_segment_ids / src_positions / tgt_positions.
PAD (0) in tgt_out marks positions that carry no loss.

The model is split once into (graphdef, params, rest); `rest` holds its RNG-stream
variables, which the step reseeds from (state.rng, state.step), so dropout depends on
nothing but the step number and a checkpoint needs no RNG counters.
"""

from __future__ import annotations

import inspect
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx

MODEL_INPUTS = ('src_segment_ids', 'tgt_segment_ids', 'src_positions', 'tgt_positions')


@flax.struct.dataclass
class TrainState:
  step: jax.Array          # int32 scalar: optimizer steps taken
  params: Any              # nnx.State of nnx.Param
  opt_state: Any
  rng: jax.Array           # uint32[2]: dropout keys are fold_in(rng, step)


def split_model(model):
  """(graphdef, params, rest): rest = everything that is not a parameter (RNG streams)."""
  return nnx.split(model, nnx.Param, ...)


_MERGE_COPIES = 'copy' in inspect.signature(nnx.merge).parameters


def merge_model(graphdef, *states):
  """A model from its parts, owning fresh Variables (so a jitted step may reseed and count
  its RNG streams: flax >= 0.11 otherwise reuses the caller's Variable objects)."""
  return nnx.merge(graphdef, *states, copy=True) if _MERGE_COPIES else nnx.merge(graphdef, *states)


def create_train_state(params, tx: optax.GradientTransformation, seed: int) -> TrainState:
  return TrainState(step=jnp.int32(0), params=params, opt_state=tx.init(params),
                    rng=jax.random.key_data(jax.random.key(seed)).astype(jnp.uint32))


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


def make_train_step(graphdef, rest, tx: optax.GradientTransformation, *,
                    label_smoothing: float = 0.0, skip_nonfinite: bool = False, jit: bool = True,
                    state_sharding=None, batch_sharding=None):
  """train_step(state, batch) -> (state, metrics); metrics are floats for logging:
  loss (per token), nll, accuracy, tokens, grad_norm, finite (1.0 or 0.0).

  With shardings (attention.training.sharding) the step is compiled for the mesh they
  name: the state keeps its layout from step to step, the batch is split over `data`,
  and the metrics come back replicated. Without, it runs where its inputs live.

  A step whose loss or gradient is not finite leaves params and optimizer state
  untouched when skip_nonfinite (and still advances the step); otherwise it applies
  as usual and the caller stops on finite == 0."""

  def step_fn(state: TrainState, batch):
    def loss_fn(params):
      model = merge_model(graphdef, params, rest)
      nnx.reseed(model, dropout=jax.random.fold_in(jax.random.wrap_key_data(state.rng),
                                                   state.step))
      logits = model(batch['src'], batch['tgt_in'], deterministic=False, **model_kwargs(batch))
      sums = token_metrics(logits, batch['tgt_out'], label_smoothing=label_smoothing)
      return sums['loss'] / jnp.maximum(sums['tokens'], 1.0), sums

    (loss, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if skip_nonfinite:
      keep_old = lambda new, old: jax.tree_util.tree_map(
          lambda n, o: jnp.where(finite, n, o), new, old)
      params, opt_state = keep_old(params, state.params), keep_old(opt_state, state.opt_state)
    tokens = jnp.maximum(sums['tokens'], 1.0)
    metrics = {'loss': loss, 'nll': sums['nll'] / tokens, 'accuracy': sums['correct'] / tokens,
               'tokens': sums['tokens'], 'grad_norm': grad_norm,
               'finite': finite.astype(jnp.float32)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  if not jit:
    return step_fn
  if state_sharding is None:
    return jax.jit(step_fn, donate_argnums=0)
  replicated = jax.sharding.NamedSharding(batch_sharding.mesh, jax.sharding.PartitionSpec())
  return jax.jit(step_fn, donate_argnums=0, in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, replicated))


def make_eval_step(graphdef, rest, *, jit: bool = True):
  """eval_step(params, batch) -> token_metrics sums (deterministic, no smoothing)."""

  def eval_fn(params, batch):
    model = merge_model(graphdef, params, rest)
    logits = model(batch['src'], batch['tgt_in'], deterministic=True, **model_kwargs(batch))
    return token_metrics(logits, batch['tgt_out'])

  return jax.jit(eval_fn) if jit else eval_fn
