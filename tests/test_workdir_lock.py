"""One writer per run directory (attention.training.workdir_lock), in one process: a
second hold is refused naming the holder, a released or stale lock is taken, and a sweep
on a busy directory is refused before it runs anything."""

import os
import socket

import pytest

from attention import UserError
from attention.training import workdir_lock
from tests import e2e


def test_a_held_lock_refuses_a_second_holder_and_is_released_with_its_file(tmp_path):
  first = workdir_lock.hold(str(tmp_path / 'run'))
  workdir_lock.announce(first)
  with pytest.raises(UserError, match=rf'--workdir=.*run is in use by process {os.getpid()} '
                                      rf'on {socket.gethostname()} since '):
    workdir_lock.hold(str(tmp_path / 'run'))
  first.close()   # what the kernel does when the holder exits, however it exits
  workdir_lock.hold(str(tmp_path / 'run')).close()


def test_a_stale_lock_file_never_blocks(tmp_path):
  """A lock file whose holder is gone (killed, the machine restarted) is only a file."""
  (tmp_path / 'lock').write_text('{"pid": 999999, "host": "gone", "since": "x", "command": "y"}')
  handle = workdir_lock.hold(str(tmp_path))
  handle.close()
  assert 'gone' in (tmp_path / 'lock').read_text()   # hold() alone writes nothing


def test_a_sweep_on_a_busy_directory_is_refused(tmp_path):
  holder = workdir_lock.hold(str(tmp_path / 'sweep'))
  workdir_lock.announce(holder)
  try:
    out = e2e.run('scripts/sweep.py', '--config=configs/default.py:task=copy,model=tiny',
                  f'--workdir={tmp_path / "sweep"}', '--sweep=model.num_layers=[1,2]')
  finally:
    holder.close()
  assert out.returncode == 2, out.stdout + out.stderr
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and f'is in use by process {os.getpid()}' in lines[0], out.stderr
  assert sorted(os.listdir(tmp_path / 'sweep')) == ['lock']   # no point was started


def test_a_run_that_refuses_to_start_leaves_no_directory_it_made(tmp_path):
  """Bad input found after the lock was taken (a mesh that does not fit) changes nothing:
  a workdir made for the lock goes again; one that existed keeps its files."""
  new = workdir_lock.hold(str(tmp_path / 'new'))
  workdir_lock.abandon(new)
  assert not (tmp_path / 'new').exists()
  (tmp_path / 'old').mkdir()
  old = workdir_lock.hold(str(tmp_path / 'old'))
  workdir_lock.abandon(old)
  assert sorted(os.listdir(tmp_path / 'old')) == ['lock']
  workdir_lock.hold(str(tmp_path / 'old')).close()   # released
