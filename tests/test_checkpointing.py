"""Checkpoint integrity: damaged steps are detected, skipped with a warning and moved
aside (never deleted); with none intact, one clear error and nothing changed."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from attention import UserError
from attention.training import checkpointing
from tests import e2e


def state(value):
  return {'w': jnp.full((64, 64), value, jnp.float32), 'step': jnp.int32(value)}


@pytest.fixture
def run(tmp_path):
  """A workdir with checkpoints at steps 1, 2 and 3."""
  ckpts = checkpointing.Checkpoints(str(tmp_path), keep=3)
  for step in (1, 2, 3):
    ckpts.save(step, state(step))
  ckpts.close()
  return tmp_path


def largest_file(step_dir):
  files = [os.path.join(b, f) for b, _, fs in os.walk(step_dir) for f in fs]
  return max(files, key=os.path.getsize)


def truncate(path):
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)


def flip_byte(path):
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))


def restore(workdir, create=True):
  messages = []
  ckpts = checkpointing.Checkpoints(str(workdir), keep=3, create=create)
  try:
    restored, step = ckpts.restore(checkpointing.abstract(state(0)), log=messages.append)
  finally:
    ckpts.close()
  return restored, step, messages


@pytest.mark.parametrize('damage', [truncate, flip_byte, os.remove])
def test_a_damaged_latest_falls_back_to_the_one_before(run, damage):
  damage(largest_file(run / 'checkpoints' / '3'))
  restored, step, messages = restore(run)
  assert step == 2 and int(restored['step']) == 2
  np.testing.assert_array_equal(restored['w'], np.full((64, 64), 2.0))
  assert any('checkpoints/3 is damaged' in m for m in messages), messages
  # Moved aside, not deleted, and no longer in the way of a new step 3.
  assert sorted(os.listdir(run / 'checkpoints')) == ['1', '2']
  assert sorted(os.listdir(run / 'checkpoints_corrupt')) == ['3', '3.manifest.json']
  ckpts = checkpointing.Checkpoints(str(run), keep=3)
  ckpts.save(3, state(30))
  ckpts.close()
  assert int(restore(run)[0]['step']) == 30


def test_read_only_runs_fall_back_without_moving_anything(run):
  truncate(largest_file(run / 'checkpoints' / '3'))
  before = e2e.snapshot(run)
  _, step, _ = restore(run, create=False)
  assert step == 2
  assert e2e.snapshot(run) == before


def test_no_intact_checkpoint_is_one_error_and_changes_nothing(run):
  for step in (1, 2, 3):
    flip_byte(largest_file(run / 'checkpoints' / str(step)))
  before = e2e.snapshot(run)
  with pytest.raises(UserError, match='every checkpoint is damaged'):
    restore(run)
  assert e2e.snapshot(run) == before


def test_a_checkpoint_without_its_manifest_still_restores(run):
  """Killed between orbax's final rename and the manifest: the files are complete."""
  os.remove(run / 'checkpoints_manifests' / '3.json')
  _, step, messages = restore(run)
  assert step == 3 and not messages


def test_manifests_follow_the_kept_steps(tmp_path):
  ckpts = checkpointing.Checkpoints(str(tmp_path), keep=2)
  for step in (1, 2, 3):
    ckpts.save(step, state(step))
  ckpts.close()
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '3']
  assert sorted(os.listdir(tmp_path / 'checkpoints_manifests')) == ['2.json', '3.json']


def test_the_log_window_travels_with_its_step(tmp_path):
  """The train steps not yet logged are saved as JSON beside the state (none: None)."""
  window = {'steps': [{'loss': 3.5, 'finite': 1.0}, {'loss': float('nan'), 'finite': 0.0}],
            'real_tokens': 70, 'slots': 96, 'skipped': 1}
  ckpts = checkpointing.Checkpoints(str(tmp_path), keep=3)
  ckpts.save(1, state(1))
  ckpts.save(2, state(2), log_window=window)
  ckpts.close()
  ckpts = checkpointing.Checkpoints(str(tmp_path), keep=3, create=False)
  try:
    assert ckpts.log_window(1) is None
    got = ckpts.log_window(2)
  finally:
    ckpts.close()
  assert got['steps'][0] == window['steps'][0] and np.isnan(got['steps'][1]['loss'])
  assert {k: got[k] for k in ('real_tokens', 'slots', 'skipped')} == {
      'real_tokens': 70, 'slots': 96, 'skipped': 1}
  assert restore(tmp_path)[1] == 2   # the manifest covers the log item too
