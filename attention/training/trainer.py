"""The training loop behind train.py: data, model, steps, evaluation, checkpoints, logs.

Resuming is exact: a checkpoint holds the TrainState (parameters, optimizer state, step,
and the RNG seed that dropout keys derive from by step) and the grain iterator position,
so a run that restarts from one replays the same batches through the same compiled step
and logs the same numbers as a run that never stopped.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import tempfile
import time

import jax
import numpy as np
import tqdm

from attention import UserError
from attention.data import pipeline, tasks
from attention.evaluation import evaluator as evaluator_lib
from attention.training import (checkpointing, config_check, distributed, metric_writer,
                                preemption, run_dir, sharding)
from attention.training import step as step_lib


class TrainingDiverged(UserError):
  """A non-finite loss or gradient (and train.skip_nonfinite is False)."""


@dataclasses.dataclass
class Setup:
  config: object          # resolved (model.vocab_size set)
  data: tasks.TaskData
  tokenizer: object
  new_tokenizer: bool


def prepare(config, workdir: str | None) -> Setup:
  """Validates the config, prepares the data and finds the tokenizer (the run's own when
  the workdir has one). Writes nothing into the workdir."""
  config_check.validate(config)
  config_check.mesh_shape(config.mesh, jax.device_count())
  data = tasks.load_for(config)
  if 'train' not in data.sources:
    raise UserError(f'config.task={config.task!r}: the dataset has no train split')
  for split in config.eval.extra_splits:
    if split not in data.sources:
      raise UserError(f'config.eval.extra_splits: task {config.task!r} has no split {split!r}; '
                      f'allowed: {", ".join(sorted(data.sources))}')
  tokenizer = tasks.load_tokenizer(workdir) if workdir else None
  new = tokenizer is None
  if new:
    # A SentencePiece model is trained into a scratch directory and held in memory;
    # it reaches the run directory only when training starts (_save_tokenizer).
    with tempfile.TemporaryDirectory(prefix='attention-tok-') as model_dir:
      tokenizer = tasks.build_tokenizer(data, model_dir, kind=config.data.tokenizer,
                                        vocab_size=config.data.vocab_size)
  return Setup(run_dir.resolve(config, tokenizer.vocab_size), data, tokenizer, new)


def _save_tokenizer(tokenizer, workdir):
  if getattr(tokenizer, 'model_path', None):   # SentencePiece: keep its model in the run
    target = os.path.join(workdir, os.path.basename(tokenizer.model_path))
    with open(target, 'wb') as f:
      f.write(tokenizer.sp.serialized_model_proto())
    tokenizer.model_path = target
  tasks.save_tokenizer(tokenizer, workdir)


def _mean(records, key):
  return float(np.mean([r[key] for r in records]))


def data_shards(config) -> tuple[list[int], int]:
  """(the data shards this process reads, how many there are): data.num_shards (0 =
  one per process) dealt out to the processes in contiguous runs."""
  pcount, pindex = jax.process_count(), jax.process_index()
  count = config.data.num_shards or pcount
  if count % pcount:
    raise UserError(f'config.data.num_shards={count} must be a multiple of the number of '
                    f'processes ({pcount}); allowed: 0 (one per process) or k * {pcount}')
  if config.train.batch_size % count:
    raise UserError(f'config.train.batch_size={config.train.batch_size} must be a multiple of '
                    f'data.num_shards ({count}, 0 = the number of processes)')
  per = count // pcount
  return list(range(pindex * per, (pindex + 1) * per)), count


def make_mesh(config):
  data, model = config_check.mesh_shape(config.mesh, jax.device_count())
  if config.train.batch_size % data:
    raise UserError(f'config.train.batch_size={config.train.batch_size} must be a multiple of '
                    f'mesh.data ({data}): every data-parallel device takes the same rows')
  return sharding.make_mesh(data, model)


def train_and_evaluate(config, workdir: str, *, log=print, on_start=None) -> dict | None:
  """Trains (or resumes) the run in `workdir`, then scores the final model on the test
  split. Returns the test metrics (None when a signal stopped the run early).

  on_start(workdir), if given, runs on process 0 once the run directory is set up and any
  resume has succeeded, before the first step (train.py's --record_machine writes the
  machine's description there, for tools that compare step times)."""
  setup = prepare(config, workdir)
  config, data, tokenizer = setup.config, setup.data, setup.tokenizer
  shards, shard_count = data_shards(config)
  mesh = make_mesh(config)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    run_dir.check_compatible(workdir, config)
    if setup.new_tokenizer:
      _save_tokenizer(tokenizer, workdir)
  distributed.barrier('workdir-ready')

  graphdef, rest, tx, schedule, state = run_dir.build(config)
  state_shardings = sharding.tree_shardings(state, mesh, fsdp=config.mesh.fsdp)
  state = sharding.put(state, state_shardings)
  split = sharding.describe(state.params, state_shardings.params)
  log(f'mesh data={mesh.shape[sharding.DATA]} x model={mesh.shape[sharding.MODEL]} over '
      f'{jax.device_count()} device(s), {jax.process_count()} process(es): {len(split)} of '
      f'{len(jax.tree_util.tree_leaves(state.params))} parameter arrays split')
  train_ds = pipeline.train_dataset(
      data.sources['train'], tokenizer, source_key=data.source_key, target_key=data.target_key,
      max_length=config.data.max_length,
      batch_size=config.train.batch_size // jax.process_count(), pack=config.data.pack,
      bucket_boundaries=config.data.bucket_boundaries, seed=config.data.shuffle_seed,
      shards=shards, shard_count=shard_count, num_workers=config.data.num_workers)
  train_iter = iter(train_ds)
  ckpts = checkpointing.Checkpoints(workdir, keep=config.checkpoint.keep)
  writer = None
  try:
    start = 0
    if ckpts.latest_step() is not None:
      state, start = ckpts.restore(checkpointing.abstract(state, state_shardings),
                                   data_iterator=train_iter, log=log)
      log(f'resumed from step {start} in {workdir}')
    if jax.process_index() == 0:   # only now: a failed resume leaves the run as it was
      run_dir.save_config(workdir, config)
      if on_start is not None:
        on_start(workdir)
    writer = metric_writer.MetricWriter(workdir, resume_step=start,
                                        enabled=jax.process_index() == 0)
    evaluator = evaluator_lib.Evaluator.from_config(config, graphdef, rest, tokenizer)
    loop = _TrainLoop(config, graphdef, rest, tx, schedule, ckpts, writer, evaluator, data,
                      mesh, state_shardings, log=log)
    if start:
      loop.window = ckpts.log_window(start) or loop.window
    with preemption.StopRequest() as stop:
      state = loop.run(state, train_iter, start=start, stop=stop)
    if stop.requested:
      log(f'{stop.signal_name}: stopped after step {int(state.step)} with a checkpoint in '
          f'{workdir}; run the same command again to resume')
      return None
    test_split = 'test' if 'test' in data.sources else 'validation'
    params, step = distributed.fetch(state.params), int(state.step)
    # The test split last: its eval/<split>.json marks a finished run (scripts/sweep.py).
    for split in (*config.eval.extra_splits, test_split):
      metrics, rows, signatures = evaluator.evaluate(
          params, data.texts(split, config.eval.test_examples))
      writer.write(step, split, metrics)
      if jax.process_index() == 0:
        evaluator_lib.write_results(workdir, split, step, metrics, rows, signatures,
                                    extra={'checkpoint': 'latest',
                                           'beam_size': config.eval.beam_size})
      log(evaluator_lib.summary_line(split, step, metrics))
    log(f'BLEU signature: {signatures.get("bleu", "")}')
    return metrics
  finally:
    train_iter.close()
    del train_iter
    gc.collect()   # stops grain's prefetch thread before the interpreter shuts down
    ckpts.close()
    if writer is not None:
      writer.close()


class _TrainLoop:
  """Steps, logs, evaluations and checkpoints from `start` to train.num_steps."""

  def __init__(self, config, graphdef, rest, tx, schedule, ckpts, writer, evaluator, data, mesh,
               state_shardings, *, log):
    self.config, self.schedule, self.ckpts, self.writer = config, schedule, ckpts, writer
    self.evaluator, self.mesh, self.log = evaluator, mesh, log
    tc = config.train
    self.train_step = step_lib.make_train_step(
        graphdef, rest, tx, label_smoothing=tc.label_smoothing, skip_nonfinite=tc.skip_nonfinite,
        state_sharding=state_shardings, batch_sharding=sharding.batch_sharding(mesh))
    self.val_split = 'validation' if 'validation' in data.sources else 'test'
    self.val_pairs = data.texts(self.val_split, config.eval.num_examples)
    # The log window: the steps since the last log line. It travels with a checkpoint
    # written between log steps, so a preempted run logs what an uninterrupted one does.
    self.window = {'steps': [], 'real_tokens': 0, 'slots': 0, 'skipped': 0}
    self.pending = []   # (step, device metrics) not yet fetched into the window
    self.restart_timer()

  def fetch_pending(self):
    """Moves the device metrics into the window; stops on a non-finite step."""
    if not self.pending:
      return
    host = jax.device_get([m for _, m in self.pending])
    for (s, _), m in zip(self.pending, host):
      m = {k: float(v) for k, v in m.items()}
      if not m['finite']:
        if not self.config.train.skip_nonfinite:
          what = 'loss' if not np.isfinite(m['loss']) else 'gradient norm'
          raise TrainingDiverged(f'step {s + 1}: the {what} is not finite (loss={m["loss"]}, '
                                 f'grad_norm={m["grad_norm"]}); the last checkpoint is intact. '
                                 'Lower train.learning_rate or set train.skip_nonfinite=True')
        self.window['skipped'] += 1
      self.window['steps'].append(m)
    self.pending = []

  def flush(self, step):
    """Logs the window (the steps since the last log line) and empties it."""
    self.fetch_pending()
    w = self.window
    if not w['steps']:
      return None
    elapsed = time.perf_counter() - self.timer
    good = [m for m in w['steps'] if m['finite']] or w['steps']
    record = {'loss': _mean(good, 'loss'), 'nll': _mean(good, 'nll'),
              'accuracy': 100.0 * _mean(good, 'accuracy'), 'grad_norm': _mean(good, 'grad_norm'),
              'learning_rate': float(self.schedule(step - 1)),
              # Only the steps this process ran and timed (a resumed window is partly older).
              'steps_per_s': self.timed_steps / elapsed,
              'tokens_per_s': self.timed_tokens / elapsed,   # non-padding source + target tokens
              'padding_fraction': 1.0 - w['real_tokens'] / max(w['slots'], 1),
              'skipped_steps': w['skipped']}
    self.writer.write(step, 'train', record)
    self.window.update(steps=[], real_tokens=0, slots=0)
    self.restart_timer()
    return record

  def restart_timer(self):
    self.timer, self.timed_steps, self.timed_tokens = time.perf_counter(), 0, 0

  def save(self, done, state, train_iter):
    self.fetch_pending()   # never checkpoint past a non-finite step that should stop the run
    self.ckpts.save(done, state, train_iter, log_window=self.window)
    self.restart_timer()

  def run(self, state, train_iter, *, start, stop):
    config, tc = self.config, self.config.train
    pcount = jax.process_count()
    bar = tqdm.tqdm(total=tc.num_steps, initial=start, unit='step', dynamic_ncols=True,
                    disable=jax.process_index() != 0, mininterval=1.0)
    with bar:
      for step in range(start, tc.num_steps):
        local = next(train_iter)
        # Every process counts its own rows; the totals are pcount times as many.
        real = pcount * int(np.count_nonzero(local['src']) + np.count_nonzero(local['tgt_out']))
        self.window['real_tokens'] += real
        self.window['slots'] += pcount * (local['src'].size + local['tgt_out'].size)
        self.timed_steps += 1
        self.timed_tokens += real
        state, metrics = self.train_step(state, sharding.global_batch(local, self.mesh))
        self.pending.append((step, metrics))
        done = step + 1
        bar.update(1)
        last = done == tc.num_steps
        if done % tc.log_every_steps == 0 or last:
          record = self.flush(done)
          bar.set_postfix(loss=f'{record["loss"]:.3f}', lr=f'{record["learning_rate"]:.2e}')
        if done % config.eval.every_steps == 0 or last:
          self.flush(done)
          metrics, _, _ = self.evaluator.evaluate(distributed.fetch(state.params), self.val_pairs)
          self.writer.write(done, self.val_split, metrics)
          self.ckpts.save_best(done, state, metrics)
          bar.write(evaluator_lib.summary_line(self.val_split, done, metrics))
          self.restart_timer()
        saved = done % config.checkpoint.every_steps == 0 or last
        if saved:
          self.save(done, state, train_iter)
        # Several processes agree on stopping only at log steps (a collective each time).
        if pcount == 1 or done % tc.log_every_steps == 0:
          if distributed.any_process(stop.requested):
            if not saved:
              self.save(done, state, train_iter)
            stop.signal_name = stop.signal_name or 'SIGTERM (another process)'
            break
    return state
