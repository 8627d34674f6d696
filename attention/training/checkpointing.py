"""Orbax checkpoints of a run: the latest few, and the best by validation BLEU.

  DIR/checkpoints/<step>/             state (TrainState), data (grain iterator position) and
                                      log (JSON: the train steps not yet in metrics.jsonl)
  DIR/checkpoints_best/<step>/        state only, with its validation metrics
  DIR/checkpoints{,_best}_manifests/  <step>.json: size and SHA-256 of every file
  DIR/checkpoints_corrupt/<step>/     checkpoints found damaged, moved aside (never deleted)

A checkpoint holds arrays and JSON only (no pickled code). Saving is synchronous, and
orbax writes a step under a temporary name and renames it only once it is complete, then
deletes the oldest of `keep`: a good checkpoint is never removed before a newer one
exists in full. After the rename the manifest is written; restoring checks it (and
orbax's own reading), so a truncated or overwritten file is caught: training falls back
to the newest intact checkpoint with a warning, and stops with one line when none is left.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil

import grain
import jax
import orbax.checkpoint as ocp

from attention import UserError
from attention.training import distributed

LATEST_DIR, BEST_DIR, CORRUPT_DIR = 'checkpoints', 'checkpoints_best', 'checkpoints_corrupt'
BEST_METRIC = 'bleu'


class CorruptCheckpoint(Exception):
  pass


def _read_only_notice(record: logging.LogRecord) -> bool:
  """False for orbax's warning that a manager opened read-only is read-only (eval.py and
  load_run open every run that way, and a user is owed nothing by it)."""
  return not str(record.msg).startswith('Given directory is read only')


logging.getLogger('absl').addFilter(_read_only_notice)


def _manager(directory: str, create: bool, **options) -> ocp.CheckpointManager:
  if not create:   # what orbax would reset, with a warning each, for a read-only manager
    options = dict(options, max_to_keep=None, save_interval_steps=0)
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(create=create, enable_async_checkpointing=False,
                                           read_only=not create, **options))


def _file_digests(directory: str) -> dict[str, list]:
  out = {}
  for base, _, files in os.walk(directory):
    for name in sorted(files):
      path = os.path.join(base, name)
      digest = hashlib.sha256()
      with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
          digest.update(block)
      out[os.path.relpath(path, directory)] = [os.path.getsize(path), digest.hexdigest()]
  return out


class _Store:
  """One orbax manager and the manifests of its steps."""

  def __init__(self, directory: str, create: bool, **options):
    self.directory, self.create, self.options = directory, create, options
    self.manifests = directory + '_manifests'
    self.manager = _manager(directory, create, **options)

  def reopen(self):
    self.manager.close()
    self.manager = _manager(self.directory, self.create, **self.options)

  def step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def manifest_path(self, step: int) -> str:
    return os.path.join(self.manifests, f'{step}.json')

  def write_manifest(self, step: int) -> None:
    if jax.process_index() != 0:
      return
    os.makedirs(self.manifests, exist_ok=True)
    path = self.manifest_path(step)
    with open(path + '.tmp', 'w') as f:
      json.dump(_file_digests(self.step_dir(step)), f)
    os.replace(path + '.tmp', path)
    kept = {str(s) for s in self.manager.all_steps()}
    for name in os.listdir(self.manifests):   # manifests of steps orbax has rotated out
      if name.endswith('.json') and name[:-5] not in kept:
        os.remove(os.path.join(self.manifests, name))

  def verify(self, step: int) -> None:
    """Raises CorruptCheckpoint when the files differ from the manifest. A step without
    one (killed between orbax's rename and the manifest) is left to orbax's reading."""
    path = self.manifest_path(step)
    if not os.path.exists(path):
      return
    with open(path) as f:
      expected = json.load(f)
    actual = _file_digests(self.step_dir(step))
    for name, (size, digest) in expected.items():
      if name not in actual:
        raise CorruptCheckpoint(f'{name} is missing')
      if actual[name][0] != size:
        raise CorruptCheckpoint(f'{name} has {actual[name][0]} bytes, {size} were written')
      if actual[name][1] != digest:
        raise CorruptCheckpoint(f'{name} differs from what was written (SHA-256)')

  def restore(self, step: int, items: dict):
    self.verify(step)
    try:
      return self.manager.restore(step, args=ocp.args.Composite(**items))
    except (KeyboardInterrupt, SystemExit):
      raise
    except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many kinds on bad files
      raise CorruptCheckpoint(f'{type(e).__name__}: {str(e).splitlines()[0][:300]}') from e


class Checkpoints:
  """create=False opens a run read-only (eval.py): nothing in it is created, moved or deleted."""

  def __init__(self, workdir: str, *, keep: int = 2, create: bool = True):
    self.workdir, self.create = workdir, create
    self.latest = _Store(os.path.join(workdir, LATEST_DIR), create, max_to_keep=keep)
    self.best = _Store(os.path.join(workdir, BEST_DIR), create, max_to_keep=1,
                       best_fn=lambda m: m[BEST_METRIC], best_mode='max')

  def latest_step(self) -> int | None:
    return self.latest.manager.latest_step()

  def steps(self) -> list[int]:
    """The steps of the kept checkpoints, oldest first (config.checkpoint.keep of them)."""
    return sorted(self.latest.manager.all_steps())

  def save(self, step: int, state, data_iterator=None, log_window: dict | None = None) -> None:
    items = {'state': ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items['data'] = grain.checkpoint.CheckpointSave(data_iterator)
    if log_window is not None:
      items['log'] = ocp.args.JsonSave(log_window)
    self.latest.manager.save(step, args=ocp.args.Composite(**items), force=True)
    self.latest.write_manifest(step)

  def save_best(self, step: int, state, metrics: dict) -> None:
    self.best.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
                           metrics={k: float(v) for k, v in metrics.items()}, force=True)
    if self.best.manager.best_step() == step:
      self.best.write_manifest(step)

  def log_window(self, step: int) -> dict | None:
    """The JSON `log_window` saved with a latest step (None if it was saved without)."""
    if not os.path.isdir(os.path.join(self.latest.step_dir(step), 'log')):
      return None
    restored = self.latest.manager.restore(
        step, args=ocp.args.Composite(log=ocp.args.JsonRestore()))
    return restored['log']

  def _items(self, abstract_state, data_iterator):
    items = {'state': ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      items['data'] = grain.checkpoint.CheckpointRestore(data_iterator)
    return items

  def restore(self, abstract_state, *, which='latest', data_iterator=None, log=print):
    """(state, step) from 'latest', 'best' or a step number; the data iterator (when
    given) is moved to where that checkpoint left it.

    'latest' falls back to older steps past damaged ones (with a warning; a writable
    run moves them to checkpoints_corrupt/); the others fail on damage."""
    if which != 'latest':
      store, step = self._resolve(which)
      try:
        restored = store.restore(step, self._items(abstract_state,
                                                   data_iterator if store is self.latest else None))
      except CorruptCheckpoint as e:
        raise UserError(f'{store.step_dir(step)}: damaged checkpoint ({e})') from None
      return restored['state'], step

    steps = sorted(self.latest.manager.all_steps(), reverse=True)
    if not steps:
      raise UserError(f'{self.latest.directory}: no checkpoint in this workdir')
    damaged = []
    for step in steps:
      try:
        restored = self.latest.restore(step, self._items(abstract_state, data_iterator))
      except CorruptCheckpoint as e:
        damaged.append((step, str(e)))
        log(f'warning: checkpoint {self.latest.step_dir(step)} is damaged ({e}); '
            'trying the one before')
        continue
      if damaged:
        self._set_aside([s for s, _ in damaged])
        log(f'warning: resumed from step {step}: the newer checkpoint(s) '
            f'{", ".join(str(s) for s, _ in damaged)} were damaged'
            + (f' and moved to {os.path.join(self.workdir, CORRUPT_DIR)}' if self.create else ''))
      return restored['state'], step
    details = '; '.join(f'step {s}: {why}' for s, why in damaged)
    raise UserError(f'{self.latest.directory}: every checkpoint is damaged ({details}); '
                    'nothing was changed: remove the workdir (or the damaged steps) to start over')

  def _set_aside(self, steps) -> None:
    """Moves damaged steps out of orbax's way, so that training can write them anew."""
    if not self.create:
      return
    if jax.process_index() == 0:
      target = os.path.join(self.workdir, CORRUPT_DIR)
      os.makedirs(target, exist_ok=True)
      for step in steps:
        destination = os.path.join(target, str(step))
        if os.path.exists(destination):
          destination += f'.{len(os.listdir(target))}'
        shutil.move(self.latest.step_dir(step), destination)
        if os.path.exists(self.latest.manifest_path(step)):
          shutil.move(self.latest.manifest_path(step), destination + '.manifest.json')
    distributed.barrier('checkpoints-set-aside')
    self.latest.reopen()

  def _resolve(self, which):
    if which == 'best':
      step = self.best.manager.best_step()
      if step is None:
        raise UserError(f'{self.best.directory}: no best checkpoint (no evaluation has run yet); '
                        'allowed: --checkpoint=latest or a step number')
      return self.best, step
    steps = {store: store.manager.all_steps() for store in (self.latest, self.best)}
    for store, have in steps.items():
      if int(which) in have:
        return store, int(which)
    allowed = sorted(set(steps[self.latest]) | set(steps[self.best]))
    raise UserError(f'checkpoint {which}: no such step in the workdir; allowed: latest, best, '
                    f'{", ".join(map(str, allowed)) or "(none saved)"}')

  def close(self):
    self.latest.manager.close()
    self.best.manager.close()


def abstract(tree, shardings=None):
  """Shapes and dtypes (and, when given, the shardings to restore onto) of a pytree: the
  restore target orbax needs. Restoring onto other shardings than were saved reshards,
  so a checkpoint from 8 devices restores on 1."""
  if shardings is None:
    return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)
  return jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
