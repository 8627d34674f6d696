"""Study (a): the rows of Table 3 of Vaswani et al. 2017, scaled down to `lang`.

Base: `mini` (N=3, d_model=128, d_ff=512, h=4, d_k=d_v=32, P_drop=0.1, eps_ls=0.1,
sinusoidal positions). Each point changes what its row of Table 3 changes:
  (A) heads, d_k = d_v = d_model / h:  h = 1, 16
  (B) smaller d_k (d_v kept at 32):    d_k = 8
  (C) size:                            N = 1; d_model = 64; d_ff = 128
  (D) regularization:                  P_drop = 0.0; eps_ls = 0.0
  (E) learned positions instead of sinusoidal
reporting parameters, validation perplexity and BLEU (the paper's columns) and test
exact match. A tenth of the paper's rows, and short runs (300 steps of 32 rows, about
the third of `make train`'s tokens): each point takes about 4 minutes on one core, so
the 10 points fit in 25 minutes on 2 cores.

Results: docs/experiments.md, "Studies"; recorded in results/study_table3/.
"""

from configs.sweeps import sweep

COMMAND = """python scripts/sweep.py --config=configs/default.py:model=mini --parallel=2
  --workdir=runs/studies/table3 --sweep_file=configs/sweeps/table3.py
  --config.train.num_steps=300 --config.train.batch_size=32 --config.eval.every_steps=300
  --config.checkpoint.every_steps=300 --config.eval.beam_size=1 --config.eval.num_examples=500
  --config.eval.test_examples=500 --metric=val_perplexity"""

ROWS = {
    'base': [{}],
    'A': [{'model.num_heads': h} for h in (1, 16)],
    'B': [{'model.d_k': 8, 'model.d_v': 32}],
    'C': sweep('model.num_layers', [1]) + sweep('model.d_model', [64]) + sweep('model.d_ff', [128]),
    'D': sweep('model.dropout_rate', [0.0]) + sweep('train.label_smoothing', [0.0]),
    'E': [{'model.positional': 'learned'}],
}


# The paper's positions; every point names them, since the default is now RoPE.
PAPER = {'model.positional': 'sinusoidal'}


def get_sweep():
  return [{**PAPER, **point} for row in ROWS.values() for point in row]
