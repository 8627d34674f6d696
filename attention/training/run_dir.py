"""A run directory (`--workdir`): what it holds and how a run is rebuilt from it.

  config.json        the resolved config (model.vocab_size filled in)
  vocab.json         the tokenizer (+ spm.model for SentencePiece)
  checkpoints/       orbax, the latest `checkpoint.keep` steps
  checkpoints_best/  orbax, the best step by validation BLEU
  metrics.jsonl      one JSON object per logged step and evaluation
  machine.json       with --record_machine: the CPU/ISA and devices of the last start
  tensorboard/       event files
  eval/<split>.json  final scores; eval/<split>.tsv predictions
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections
from absl import logging
from flax import nnx

from attention import models
from attention import UserError
from attention.training import config_check, optimizer, step as step_lib

CONFIG_FILE = 'config.json'


def config_dict(config) -> dict:
  """Plain JSON-ready dict (tuples become lists, as they will after a round trip)."""
  return json.loads(config.to_json())


def resolve(config, vocab_size: int) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(config_dict(config))
  if not config.data.num_shards:   # fixed at the start, so a resume reads the same order
    config.data.num_shards = jax.process_count()
  if not config.model.vocab_size:
    config.model.vocab_size = vocab_size
  elif config.model.vocab_size < vocab_size:
    raise UserError(f'config.model.vocab_size={config.model.vocab_size} is smaller than the '
                    f'tokenizer ({vocab_size}); allowed: 0 (from the data) or >= {vocab_size}')
  return config


def load_config(workdir: str) -> ml_collections.ConfigDict | None:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    try:
      return ml_collections.ConfigDict(json.load(f))
    except json.JSONDecodeError as e:
      raise UserError(f'{path}: not a JSON config ({e.msg} at line {e.lineno})') from None


def check_compatible(workdir: str, config) -> None:
  saved = load_config(workdir)
  if saved is None:
    return
  diff = config_check.incompatible_fields(config_dict(saved), config_dict(config))
  if diff:
    raise UserError(f'--workdir={workdir} holds a run with a different config ({"; ".join(diff)}); '
                    'use a new workdir, or change only train.num_steps, eval.*, checkpoint.*')
  old_steps, new_steps = saved.train.num_steps, config.train.num_steps
  if old_steps != new_steps and config.train.schedule == 'cosine':
    # Allowed (it is how a run is extended), but the decay is stretched from here on: the
    # learning rate jumps at the resume step, and the result is neither the old run nor a
    # fresh run of new_steps.
    logging.warning('train.num_steps changed from %d to %d on resuming a cosine schedule: the '
                    'learning rate now follows the %d-step decay from the resumed step on (a '
                    'jump); a fresh %d-step run would differ', old_steps, new_steps, new_steps,
                    new_steps)


def save_config(workdir: str, config) -> None:
  """Writes config.json unless it already holds exactly this config."""
  path = os.path.join(workdir, CONFIG_FILE)
  text = config.to_json(indent=1)
  if os.path.exists(path):
    with open(path) as f:
      if f.read() == text:
        return
  with open(path + '.tmp', 'w') as f:
    f.write(text)
  os.replace(path + '.tmp', path)


def build(config):
  """(graphdef, rest, tx, schedule, state) of a fresh run from a resolved config."""
  model = models.build(config.model, rngs=nnx.Rngs(params=config.seed, dropout=config.seed))
  graphdef, params, rest = step_lib.split_model(model)
  tx, schedule = optimizer.make_optimizer(config.train)
  state = step_lib.create_train_state(params, tx, config.seed)
  return graphdef, rest, tx, schedule, state


def abstract_state(config):
  """The TrainState's shapes and dtypes without allocating it (the restore target)."""
  return jax.eval_shape(lambda: build(config)[-1])


def param_counts(config) -> dict[str, int]:
  """Parameters per top-level module of the model, and 'total'; nothing is allocated."""
  model = nnx.eval_shape(lambda: models.build(config.model, rngs=nnx.Rngs(0)))
  counts = {}
  for name, value in sorted(vars(model).items()):
    is_stack = isinstance(value, (list, tuple)) and value and all(
        isinstance(v, nnx.Module) for v in value)
    if isinstance(value, nnx.Module) or is_stack:
      leaves = jax.tree_util.tree_leaves(nnx.state(value, nnx.Param))
      if leaves:
        counts[name] = sum(int(x.size) for x in leaves)
  counts['total'] = sum(int(x.size) for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
  return counts
