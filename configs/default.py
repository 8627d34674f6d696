"""Default experiment configuration.

  python train.py --config=configs/default.py:model=small --workdir=runs/default

The config string takes comma-separated key=value pairs (as big_vision does):
  model=tiny|small|base|big     model preset (configs/models.py)
Any field can then be overridden: --config.model.num_heads=8.
"""

import ml_collections

from configs import models

ARG_KEYS = ('model',)


def parse_arg(arg: str | None) -> dict:
  """'model=small,task=lang' -> {'model': 'small', 'task': 'lang'}; unknown keys rejected."""
  out = {}
  for item in filter(None, (arg or '').split(',')):
    key, sep, value = item.partition('=')
    if not sep or key not in ARG_KEYS:
      raise ValueError(f'config string item {item!r}: expected key=value with key in {ARG_KEYS}')
    out[key] = value
  return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_arg(arg)
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.model = models.get_model_config(args.get('model', 'small'))
  return config
