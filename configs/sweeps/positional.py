"""Study (c): positional encodings and length generalization.

The `mini` Transformer trained on `lang` (3-30 words) with each positional scheme,
then scored on test (as long as training) and test_long (31-45 words, longer than any
training sentence): sinusoidal (the paper), learned (a table: positions past the
training lengths were never trained), rotary (RoPE), ALiBi, and none (the decoder's
causal mask is then the only source of order).

Three seeds of each, 15 points: about 50 minutes on 2 CPU cores. Reaches (mean test exact
match over the seeds): RoPE 99.5%, sinusoidal 69.4%, ALiBi 57.3%, learned 21.2%, none 1.6%;
on test_long every scheme stays at or below 0.3%.
Results: docs/experiments.md, "Studies"; recorded in results/study_positional/ (summary.md: mean and
range over the seeds).
"""

from configs.sweeps import product, sweep

# Three seeds per scheme (config.seed: initialization and dropout; the data order is fixed):
# one 400-step run moves by several points of exact match with nothing but a change of
# rounding (README, "Studies").
SEEDS = (0, 1, 2)

COMMAND = """python scripts/sweep.py --config=configs/default.py:model=mini --parallel=2
  --workdir=runs/studies/positional --sweep_file=configs/sweeps/positional.py
  --config.train.num_steps=400 --config.train.batch_size=32 --config.eval.every_steps=400
  --config.checkpoint.every_steps=400 --config.eval.beam_size=1 --config.eval.test_examples=1000
  "--config.eval.extra_splits=('test_long',)" --length_bins=1-10,11-20,21-30,31-38,39-45
  --metric=test_long_exact_match"""


def get_sweep():
  return product(sweep('model.positional', ['sinusoidal', 'learned', 'rope', 'alibi', 'none']),
                 sweep('seed', SEEDS))
