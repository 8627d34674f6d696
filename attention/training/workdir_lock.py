"""One writer per run directory: an exclusive lock on WORKDIR/lock, held for the life of
the process that writes the run (train.py; scripts/sweep.py on its sweep directory).

The lock is flock(2) on an open file, so the kernel releases it when the process ends in
any way, SIGKILL and power loss included: a lock file left behind by a dead process is
stale by construction and never blocks a resume. The file's contents (pid, host, command,
start time) only describe the holder for the message a second writer gets. On a shared
file system, flock is as good as its locking: Linux's NFS client implements it with NFS
byte-range locks (NFSv4, or NFSv3 with lockd), Lustre and GPFS with their own; with
several processes of one run (jax.distributed), only process 0 takes it, since all of
them write the same directory together.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time

from attention import UserError

FILE = 'lock'


def hold(workdir: str, flag: str = '--workdir'):
  """Takes WORKDIR/lock (creating WORKDIR and the file if need be, writing nothing) or
  raises UserError naming the holder. Keep the returned file open for as long as the run
  writes; announce() it once the run starts changing the directory."""
  created = not os.path.exists(workdir)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, FILE)
  handle = open(path, 'a+')
  handle.created_dir = workdir if created else None
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    handle.seek(0)
    holder = _describe(handle.read())
    handle.close()
    raise UserError(f'{flag}={workdir} is in use by {holder}; wait for it to finish or '
                    'stop it (a run that is stopped resumes where it was)') from None
  return handle


def abandon(handle) -> None:
  """Releases a lock whose run refused to start: a directory that hold() made for it is
  removed again when it holds nothing but the lock, so that bad input changes nothing."""
  handle.close()
  directory = handle.created_dir
  if directory and os.listdir(directory) == [FILE]:
    os.remove(os.path.join(directory, FILE))
    os.rmdir(directory)


def announce(handle) -> None:
  """Writes who holds the lock, for the message a second writer gets."""
  handle.seek(0)
  handle.truncate()
  json.dump({'pid': os.getpid(), 'host': socket.gethostname(),
             'command': ' '.join(sys.argv), 'since': time.strftime('%Y-%m-%d %H:%M:%S')},
            handle)
  handle.flush()


def _describe(text: str) -> str:
  try:
    info = json.loads(text)
    return (f"process {info['pid']} on {info['host']} since {info['since']} "
            f"({info['command']})")
  except (ValueError, KeyError, TypeError):
    return 'another process'


def is_held(workdir: str) -> bool:
  """Whether a process holds WORKDIR/lock now (it is taken and let go again to find out)."""
  path = os.path.join(workdir, FILE)
  if not os.path.exists(path):
    return False
  with open(path) as handle:
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      return True
  return False
