"""The one train step used by training, benchmarks and tests (its eval twin:
attention.evaluation.eval_step).

A batch is a dict of int32 arrays:
  src [B, S], tgt_in [B, T] (BOS + target[:-1], per example), tgt_out [B, T] (target + EOS),
  and, for packed batches, src_segment_ids / tgt_segment_ids / src_positions / tgt_positions.
PAD (0) in tgt_out marks positions that carry no loss.

The model is split once into (graphdef, params, rest); `rest` holds its RNG-stream
variables, which the step reseeds from (state.rng, state.step), so dropout depends on
nothing but the step number and a checkpoint needs no RNG counters.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx

# Re-exported: the model split and the token metrics live below training (models and
# evaluation), where the evaluator uses them too.
from attention.evaluation.eval_step import MODEL_INPUTS, model_kwargs, token_metrics  # noqa: F401
from attention.models import merge_model, split_model  # noqa: F401

@flax.struct.dataclass
class TrainState:
  step: jax.Array          # int32 scalar: optimizer steps taken
  params: Any              # nnx.State of nnx.Param
  opt_state: Any
  rng: jax.Array           # uint32[2]: dropout keys are fold_in(rng, step)


def create_train_state(params, tx: optax.GradientTransformation, seed: int) -> TrainState:
  return TrainState(step=jnp.int32(0), params=params, opt_state=tx.init(params),
                    rng=jax.random.key_data(jax.random.key(seed)).astype(jnp.uint32))


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
