"""What a cluster launcher runs on the node it was given (a Ray task, a SLURM job): one
point's train.py command, to its end, and what it did (exit status, wall time, resource
usage, host). It travels to the node by value (cloudpickle), so it imports nothing of this
checkout: the node imports what the command it runs imports.

A run is stopped the way a preemption stops it, with SIGTERM: train.py checkpoints and
exits, and stop() waits for that, so that whoever stopped it finds the run directory let
go and the process reaped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

POLL_S = 0.2


def _stop_with_parent() -> None:
  """In the run's process, before it starts: SIGTERM it (a preemption: it checkpoints)
  when the process that started it dies, so that a lost worker leaves no run behind; and
  ignore SIGUSR2, SLURM's warning before a time limit, which is for the job (it stops the
  run itself) and would otherwise kill the run without a checkpoint."""
  import ctypes
  PR_SET_PDEATHSIG = 1
  ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
  signal.signal(signal.SIGUSR2, signal.SIG_IGN)


class Run:
  """The point's command, run in `cwd` with its output in `log_path` (appended to with
  `append`, as a requeued job does) and its thread pools sized to `cpus`."""

  def __init__(self, command: list[str], cwd: str, log_path: str, cpus: int,
               append: bool = False):
    self.began = time.time()
    # OMP_NUM_THREADS: OpenMP and BLAS pools to the point's CPUs (a cluster counts CPUs, it
    # does not pin them). PYTHONUNBUFFERED: the log's last line is then train.py's error.
    env = dict(os.environ, OMP_NUM_THREADS=str(cpus), PYTHONUNBUFFERED='1')
    with open(log_path, 'a' if append else 'w') as log:
      self.proc = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                   env=env, preexec_fn=_stop_with_parent)
    self.outcome = None

  def wait(self) -> dict:
    """Waits for the run to end and returns what it did. Polls rather than blocks: Ray
    cancels a task by raising KeyboardInterrupt from another thread, which only lands
    between Python bytecodes; the run is then stopped first."""
    try:
      while self.outcome is None:
        self._reap(os.WNOHANG)
        time.sleep(POLL_S)
    except KeyboardInterrupt:
      self.stop()
      raise
    return self.outcome

  def stop(self) -> None:
    """SIGTERM, as a preemption: the run checkpoints and exits; returns once it has."""
    if self.outcome is None:
      self.signal(signal.SIGTERM)
      self._reap(0)

  def signal(self, signum: int) -> None:
    """Signals the run while it is not reaped (os.kill: Popen.send_signal may reap it
    behind wait4's back)."""
    if self.outcome is None:
      os.kill(self.proc.pid, signum)

  def _reap(self, options: int) -> None:
    # wait4: the run's own CPU time and memory, whatever else the node runs.
    pid, status, usage = os.wait4(self.proc.pid, options)
    if pid:
      self.proc.returncode = os.waitstatus_to_exitcode(status)
      self.outcome = dict(returncode=self.proc.returncode, wall_s=time.time() - self.began,
                          usage=usage, host=socket.gethostname())
