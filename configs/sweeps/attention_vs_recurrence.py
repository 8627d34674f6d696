"""Study (b): self-attention against recurrence, by source length, at one parameter budget.

The Transformer (`mini`: 3 + 3 layers, d_model 128; the paper's sinusoidal positions,
and RoPE) against a 2-layer LSTM
encoder-decoder with Luong attention and one without attention, their widths chosen for
about the same number of parameters (~1.45M on `lang`), on `lang` (reordering, agreement
across the sentence) and `reverse` (every output depends on the far end of the input).
All read unpacked rows (the LSTM cannot read packed ones), so a step sees the same
tokens for each model. Exact match is tabulated by source length over test and
test_long (longer than any training sentence); step time is the median train step of
each run, on its own CPU.

Three seeds of each, 24 points: about 50 minutes on 2 CPU cores. Reaches (mean test exact
match over the seeds, lang / reverse): Transformer sinusoidal 7.6% / 8.8%, RoPE 19.2% /
53.7%; LSTM with attention 0.0% / 90.8% (40.7% on reverse's longer test_long); LSTM
without attention 0.0% / 13.3%.
Results: docs/experiments.md, "Studies"; recorded in results/study_attention_vs_recurrence/
(summary.md: mean and range over the seeds).
"""

from configs.sweeps import product, sweep

# Three seeds per model and task (config.seed: initialization and dropout; the data order is
# fixed): one 400-step run moves by several points of exact match with nothing but a change
# of rounding (README, "Studies").
SEEDS = (0, 1, 2)

COMMAND = """python scripts/sweep.py --config=configs/default.py:model=mini --parallel=2
  --workdir=runs/studies/attention_vs_recurrence
  --sweep_file=configs/sweeps/attention_vs_recurrence.py --config.data.pack=False
  --config.train.num_steps=400 --config.train.batch_size=32 --config.eval.every_steps=400
  --config.checkpoint.every_steps=400 --config.eval.beam_size=1 --config.eval.test_examples=1000
  "--config.eval.extra_splits=('test_long',)" --length_bins=1-10,11-20,21-30,31-40,41-60"""

MODELS = [
    {'model.name': 'transformer', 'model.positional': 'sinusoidal'},
    {'model.name': 'transformer', 'model.positional': 'rope'},
    {'model.name': 'lstm', 'model.rnn_attention': 'luong', 'model.num_layers': 2,
     'model.d_model': 192},
    {'model.name': 'lstm', 'model.rnn_attention': 'none', 'model.num_layers': 2,
     'model.d_model': 208},
]


def get_sweep():
  return product(sweep('task', ['lang', 'reverse']), MODELS, sweep('seed', SEEDS))
