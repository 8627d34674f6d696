"""SIGTERM / SIGINT: finish the current step, checkpoint, exit 0.

Schedulers (SLURM, Kubernetes, preemptible VMs) send SIGTERM some seconds before they
kill a job; a user presses Ctrl-C. Either one only sets a flag here; the training loop
reads it between steps, so a step is never cut in half and the checkpoint it writes is
the same one a planned save at that step would have written. A second Ctrl-C while the
checkpoint is being written interrupts at once (KeyboardInterrupt).
"""

from __future__ import annotations

import signal
import threading


class StopRequest:
  """Context manager: installs the handlers (main thread only) and restores the old ones."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signal_name: str | None = None
    self._previous = {}

  @property
  def requested(self) -> bool:
    return self.signal_name is not None

  def _handle(self, signum, frame):
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signal_name = signal.Signals(signum).name

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for s in self.SIGNALS:
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous.clear()
    return False
