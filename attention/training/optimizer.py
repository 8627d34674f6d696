"""Learning-rate schedules and the AdamW optimizer, from `config.train`, with optax.

Schedules (train.schedule):
  rsqrt     the paper's (5.3): linear warmup to learning_rate over warmup_steps, then
            learning_rate * sqrt(warmup_steps / step). (The paper writes the peak as
            d_model^-0.5 * warmup_steps^-0.5; here the peak is learning_rate itself.)
  cosine    linear warmup, then cosine decay to 0 at num_steps.
  constant  linear warmup, then constant.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ('rsqrt', 'cosine', 'constant')


def make_schedule(train_cfg) -> optax.Schedule:
  lr, warmup = train_cfg.learning_rate, train_cfg.warmup_steps
  name = train_cfg.schedule
  if name not in SCHEDULES:
    raise ValueError(f'train.schedule must be one of {SCHEDULES}, got {name!r}')
  if name == 'constant':
    after = optax.constant_schedule(lr)
  elif name == 'cosine':
    after = optax.cosine_decay_schedule(lr, max(train_cfg.num_steps - warmup, 1))
  else:
    # join_schedules also evaluates this branch (and discards it) before the boundary,
    # where count is negative: clamp it so that the discarded value stays finite.
    w = max(warmup, 1)
    after = lambda count: lr * jnp.sqrt(w / (jnp.maximum(count, 0) + w))
  if warmup <= 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), after], [warmup])


def make_optimizer(train_cfg) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW (b1, b2, eps from config; the paper's 0.9, 0.98, 1e-9 by default), with global
  gradient-norm clipping when train.grad_clip > 0. Weight decay skips biases and norms."""
  schedule = make_schedule(train_cfg)
  # Decay matrices only: biases, norm scales (1-d) are left alone.
  decay_mask = lambda params: jax.tree_util.tree_map(lambda x: x.ndim > 1, params)
  adamw = optax.adamw(schedule, b1=train_cfg.b1, b2=train_cfg.b2, eps=train_cfg.eps,
                      weight_decay=train_cfg.weight_decay, mask=decay_mask)
  if train_cfg.grad_clip > 0:
    return optax.chain(optax.clip_by_global_norm(train_cfg.grad_clip), adamw), schedule
  return adamw, schedule

