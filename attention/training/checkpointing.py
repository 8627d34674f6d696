"""Orbax checkpoints of a run: the latest few, and the best by validation BLEU.

  DIR/checkpoints/<step>/        state (TrainState) + data (grain iterator position)
  DIR/checkpoints_best/<step>/   state only, with its validation metrics

A checkpoint holds arrays and JSON only (no pickled code). Saving is synchronous: the
step after a save cannot overwrite buffers that are still being written, and a checkpoint
directory exists under its final name only once it is complete (orbax writes to a
temporary name and renames).
"""

from __future__ import annotations

import os

import grain
import jax
import orbax.checkpoint as ocp

from attention.errors import UserError

LATEST_DIR, BEST_DIR = 'checkpoints', 'checkpoints_best'
BEST_METRIC = 'bleu'


def _manager(directory: str, create: bool, **options) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(create=create, enable_async_checkpointing=False,
                                           read_only=not create, **options))


class Checkpoints:
  """create=False opens a run read-only (eval.py): nothing in it is created or deleted."""

  def __init__(self, workdir: str, *, keep: int = 2, create: bool = True):
    self.latest = _manager(os.path.join(workdir, LATEST_DIR), create, max_to_keep=keep)
    self.best = _manager(os.path.join(workdir, BEST_DIR), create, max_to_keep=1,
                         best_fn=lambda m: m[BEST_METRIC], best_mode='max')

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def save(self, step: int, state, data_iterator=None) -> None:
    items = {'state': ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items['data'] = grain.checkpoint.CheckpointSave(data_iterator)
    self.latest.save(step, args=ocp.args.Composite(**items), force=True)

  def save_best(self, step: int, state, metrics: dict) -> None:
    self.best.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
                   metrics={k: float(v) for k, v in metrics.items()}, force=True)

  def restore(self, abstract_state, *, which='latest', data_iterator=None):
    """(state, step) from 'latest', 'best' or a step number; the data iterator (when
    given, and saved there) is moved to where that checkpoint left it."""
    manager, step = self._resolve(which)
    items = {'state': ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None and manager is self.latest:
      items['data'] = grain.checkpoint.CheckpointRestore(data_iterator)
    restored = manager.restore(step, args=ocp.args.Composite(**items))
    return restored['state'], step

  def _resolve(self, which):
    if which == 'best':
      step = self.best.best_step()
      if step is None:
        raise UserError(f'{self.best.directory}: no best checkpoint (no evaluation has run yet); '
                        'allowed: --checkpoint=latest or a step number')
      return self.best, step
    if which == 'latest':
      step = self.latest.latest_step()
      if step is None:
        raise UserError(f'{self.latest.directory}: no checkpoint in this workdir')
      return self.latest, step
    steps = {m: m.all_steps() for m in (self.latest, self.best)}
    for manager, have in steps.items():
      if int(which) in have:
        return manager, int(which)
    allowed = sorted(set(steps[self.latest]) | set(steps[self.best]))
    raise UserError(f'checkpoint {which}: no such step in the workdir; allowed: latest, best, '
                    f'{", ".join(map(str, allowed)) or "(none saved)"}')

  def close(self):
    self.latest.close()
    self.best.close()


def abstract(tree):
  """Shapes and dtypes of a pytree, the restore target orbax needs."""
  return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)
