"""Study (d): attention kernels inside training.

The `mini` Transformer on `lang` with each kernel of attention.kernels: the exact ones
(reference, flash, xla) should give the same training curve up to float rounding; local
(keys within 8 positions each side, of rows up to 64 tokens) and linear (elu + 1
feature maps) are approximations whose cost in quality this measures. At these lengths
(64) the step times say little about long sequences; BENCHMARKS has the kernels at 256
to 16384.

Positions are the paper's sinusoidal ones (the default when this study was run).

Results: docs/experiments.md, "Studies"; recorded in results/study_kernels/.
"""

from configs.sweeps import sweep

COMMAND = """python scripts/sweep.py --config=configs/default.py:model=mini --parallel=2
  --workdir=runs/studies/kernels --sweep_file=configs/sweeps/kernels.py
  --config.model.positional=sinusoidal --config.model.local_window=8
  --config.train.num_steps=400 --config.train.batch_size=32 --config.train.log_every_steps=25 --config.eval.every_steps=400
  --config.checkpoint.every_steps=400 --config.eval.beam_size=1 --config.eval.test_examples=1000"""


def get_sweep():
  # linear has no segment ids, so it reads unpacked rows (the same sentences, more padding).
  return sweep('model.kernel', ['reference', 'flash', 'xla', 'local']) + [
      {'model.kernel': 'linear', 'data.pack': False}]
