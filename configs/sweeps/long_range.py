"""Study: long range. Each kernel of the Transformer, and the LSTM with and without
attention, on the long-range tasks against source length, at one parameter budget.

The models, about 0.66M parameters each (preset `long`: 2 + 2 layers, d_model 128): the
Transformer with the exact kernels `reference` and `flash`, `local` (each key within 32
positions: blind beyond them by construction) and `linear`; the LSTM encoder-decoder
with Luong attention (d_model 128) and without (d_model 144, the width that matches the
budget without the attention's parameters). A point's config string sets the task and
its length (the data, the batch rows of about 8192 source tokens, the padded shapes);
seeds are repeated where a point costs little. test_long is twice the training length.

scripts/long_range_report.py (REPORT) turns the sweep into the tables and plots against
length (report.md, accuracy.png, cost.png). 90 points of 1000 steps of about 8192 source
tokens: on 2 CPU cores a single point at 256 tokens takes about half an hour (two at
once), so the whole study is a job for an accelerator; docs/experiments.md, "Long range",
has the costs measured here and what the quick subset checks.
"""

from configs.sweeps import product, sweep

COMMAND = """python scripts/sweep.py --config=configs/default.py --parallel=2
  --workdir=runs/studies/long_range --sweep_file=configs/sweeps/long_range.py
  "--config.eval.extra_splits=('test_long',)" --config.eval.test_examples=500"""
REPORT = 'python scripts/long_range_report.py --study_dir=runs/studies/long_range'
# Its quick subset (reproduce.py --quick): two kernels on recall at 256 tokens, a few
# steps; it checks that the whole path runs and reproduces, not what the models learn.
QUICK_COMMAND = """python scripts/sweep.py --config=configs/default.py --parallel=2
  --workdir=runs/studies/long_range_quick
  --sweep="config=['task=recall,length=256'] model.kernel=[flash,linear]"
  --config.train.num_steps=20 --config.train.log_every_steps=10 --config.eval.every_steps=20
  --config.checkpoint.every_steps=20 --config.eval.num_examples=50
  --config.eval.test_examples=100 "--config.eval.extra_splits=('test_long',)"
"""

KERNELS = ('reference', 'flash', 'local', 'linear')
MODELS = [
    *({'model.name': 'transformer', 'model.kernel': kernel} for kernel in KERNELS),
    {'model.name': 'lstm', 'model.rnn_attention': 'luong', 'model.d_model': 128},
    {'model.name': 'lstm', 'model.rnn_attention': 'none', 'model.d_model': 144},
]
TASKS = ('recall', 'selective_copy', 'listops')
# (length, seeds): three seeds at the shortest length, one where a run costs 4x and 16x.
LENGTHS = ((256, (0, 1, 2)), (1024, (0,)), (4096, (0,)))
SETTINGS = [(task, length, seeds) for length, seeds in LENGTHS for task in TASKS]


def get_sweep():
  points = []
  for task, length, seeds in SETTINGS:
    config = {'config': f'task={task},length={length}'}
    points += product([config], MODELS, sweep('seed', seeds))
  return points
