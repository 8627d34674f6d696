"""Depth against learning rate on `copy`, each learning rate with its own warm-up.

  python scripts/sweep.py --config=configs/default.py:task=copy,model=tiny \
      --workdir=runs/copy_lr_layers --sweep_file=configs/sweeps/copy_lr_layers.py \
      --config.train.num_steps=450 --config.train.batch_size=32 --config.eval.beam_size=1

6 points: model.num_layers in (1, 2) times (learning_rate, warmup_steps) in
(1e-3, 25), (3e-3, 50), (1e-2, 100); a higher peak learning rate gets a longer warm-up.
"""

from configs.sweeps import product, sweep, zip_


def get_sweep():
  return product(sweep('model.num_layers', [1, 2]),
                 zip_(sweep('train.learning_rate', [1e-3, 3e-3, 1e-2]),
                      sweep('train.warmup_steps', [25, 50, 100])))
