"""Metrics to `DIR/metrics.jsonl` (one JSON object per line) and TensorBoard events.

Each record has `step` and `split` ('train', 'validation', 'test', ...) plus the metric
values. The TensorBoard files are written by tensorboardX (no TensorFlow) under
`DIR/tensorboard`, tagged `<split>/<metric>`. A resumed run first drops the records past
the step it resumes from, so the log reads as if the run had never stopped.
"""

from __future__ import annotations

import json
import math
import os

METRICS_FILE = 'metrics.jsonl'


def read_metrics(workdir: str, split: str | None = None) -> list[dict]:
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  return [r for r in records if split is None or r.get('split') == split]


class MetricWriter:
  """Writes only when `enabled` (process 0 of a multi-process run)."""

  def __init__(self, workdir: str, *, resume_step: int = 0, enabled: bool = True):
    self.enabled = enabled
    if not enabled:
      return
    self.path = os.path.join(workdir, METRICS_FILE)
    kept = [r for r in read_metrics(workdir) if r['step'] <= resume_step]
    tmp = self.path + '.tmp'
    with open(tmp, 'w') as f:
      f.writelines(json.dumps(r) + '\n' for r in kept)
    os.replace(tmp, self.path)
    self.file = open(self.path, 'a')
    from tensorboardX import SummaryWriter
    # purge_step hides events a killed run wrote past the checkpoint we resume from.
    self.tb = SummaryWriter(os.path.join(workdir, 'tensorboard'),
                            purge_step=resume_step + 1 if resume_step else None)

  def write(self, step: int, split: str, metrics: dict) -> None:
    if not self.enabled:
      return
    values = {k: float(v) for k, v in metrics.items()}
    record = {'step': int(step), 'split': split}
    record.update({k: (v if math.isfinite(v) else str(v)) for k, v in values.items()})
    self.file.write(json.dumps(record) + '\n')
    self.file.flush()
    for k, v in values.items():
      self.tb.add_scalar(f'{split}/{k}', v, int(step))
    self.tb.flush()

  def close(self) -> None:
    if self.enabled:
      self.file.close()
      self.tb.close()
