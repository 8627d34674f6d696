"""Default experiment: a Transformer trained on the toy translation task `lang`.

  python train.py --config=configs/default.py --workdir=runs/default \
      "--config.eval.extra_splits=('test_long',)"          # = make train
  python train.py --config=configs/default.py:task=reverse,model=tiny --workdir=runs/reverse \
      --config.train.num_steps=1000     # any field, over the task's defaults (TASK_DEFAULTS)

The config string takes comma-separated key=value pairs (as big_vision does):
  task=lang|copy|reverse|sort|addition   the toy_translation builder config
  task=listops|recall|selective_copy     its long-range tasks, with
  length=L                               their source length in tokens (default 1024):
                                         config.task becomes TASK_L (listops_1024)
  model=tiny|mini|small|long|base|big|lstm   model preset (configs/models.py; default
                                         mini, and long for the long-range tasks)
Any field can then be overridden from the command line: --config.model.num_heads=8.

Results, as recorded by scripts/reproduce.py (results/train_<name>/; wall times and the
machine in README, "Results"; tests/test_configs.py holds these lines to the recording):
  make train (this config, extra split test_long): test BLEU 99.88, exact match 99.60%
      (2000 sentences, beam 4); test_long BLEU 36.54, exact match 0.30%
  task=copy,model=tiny: test BLEU 99.99, exact match 99.95%
  task=reverse,model=tiny: test BLEU 99.93, exact match 99.25%
"""

import ml_collections

from configs import models

LONG_RANGE = ('listops', 'recall', 'selective_copy')
TASKS = ('lang', 'copy', 'reverse', 'sort', 'addition', *LONG_RANGE)
ARG_KEYS = ('task', 'model', 'length')
DEFAULT_LENGTH = 1024
# Long-range batches hold about this many source tokens, whatever the length.
BATCH_TOKENS = 8192


def parse_arg(arg: str | None) -> dict:
  """'task=lang,model=small' -> {'task': 'lang', 'model': 'small'}; unknown keys rejected."""
  out = {}
  for item in filter(None, (arg or '').split(',')):
    key, sep, value = item.partition('=')
    if not sep or key not in ARG_KEYS:
      raise ValueError(f'config string item {item!r}: expected key=value with key in '
                       f'{", ".join(ARG_KEYS)}')
    out[key] = value
  if out.get('task', 'lang') not in TASKS:
    raise ValueError(f'config string task={out["task"]!r}: allowed: {", ".join(TASKS)}')
  if 'length' in out:
    if out.get('task') not in LONG_RANGE:
      raise ValueError(f'config string length={out["length"]}: only with task='
                       f'{"|".join(LONG_RANGE)}')
    if not out['length'].isdigit() or int(out['length']) < 32:
      raise ValueError(f'config string length={out["length"]!r}: an integer >= 32 (tokens)')
  return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_arg(arg)
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.task = args.get('task', 'lang')

  config.data = ml_collections.ConfigDict(dict(
      data_dir='data',             # where the TFDS builder prepares the dataset
      max_length=64,               # tokens per side (EOS included); longer pairs are dropped
      pack=True,                   # pack several examples per row (segment ids); not the LSTM
      bucket_boundaries=(16, 32, 64),  # padded lengths of unpacked batches
      shuffle_seed=0,
      num_workers=0,               # grain worker processes (0 = one background thread)
      num_shards=0,                # data shards read by the processes (0 = one per process)
      tokenizer='auto',            # auto (word for toy tasks, sentencepiece otherwise) | word | sentencepiece
      vocab_size=8000,             # sentencepiece only
  ))

  default_model = 'long' if config.task in LONG_RANGE else 'mini'
  config.model = models.get_model_config(args.get('model', default_model))
  config.data.pack = config.model.name != 'lstm'

  config.train = ml_collections.ConfigDict(dict(
      num_steps=300,
      batch_size=64,               # sequences (rows) per step, over all devices
      learning_rate=3e-3,
      schedule='rsqrt',            # rsqrt (paper) | cosine | constant
      warmup_steps=100,
      label_smoothing=0.1,         # the paper's epsilon_ls
      weight_decay=0.0,
      grad_clip=1.0,               # global norm; 0 = off
      b1=0.9, b2=0.98, eps=1e-9,   # the paper's Adam
      log_every_steps=50,
      skip_nonfinite=False,
  ))

  config.eval = ml_collections.ConfigDict(dict(
      every_steps=300,
      num_examples=200,            # validation examples decoded at each evaluation (0 = all)
      test_examples=0,             # test examples scored at the end of training (0 = all)
      batch_size=128,
      beam_size=4,
      alpha=0.6,                   # GNMT length penalty
      max_decode_length=0,         # 0 = data.max_length
      extra_splits=(),             # also scored at the end, e.g. ('test_long',)
  ))

  config.checkpoint = ml_collections.ConfigDict(dict(every_steps=300, keep=2))
  # Device mesh: batch rows over `data` (-1 = the devices `model` leaves), attention heads
  # and feed-forward units over `model`; fsdp also shards parameters over `data`.
  config.mesh = ml_collections.ConfigDict(dict(data=-1, model=1, fsdp=False))
  _apply_task_defaults(config)
  if config.task in LONG_RANGE:
    _apply_long_range_defaults(config, int(args.get('length', DEFAULT_LENGTH)))
  return config


# The algorithmic tasks are exact symbol manipulation: no dropout, a higher peak rate
# annealed to zero (cosine), greedy decoding (one right answer; beam search finds nothing
# better), one validation pass at the end, and the paper's absolute positions: output i
# is source word i (copy) or the word i places before EOS (reverse), and cross-attention
# sees no positions under RoPE, which then has to count. Measured with model=tiny on
# 2 CPU cores (README, "Results"; results/train_{copy,reverse}_tiny/).
TASK_DEFAULTS = {
    'copy': {'train.num_steps': 300},
    'reverse': {'train.num_steps': 550},
}
ALGORITHMIC = {'train.learning_rate': 1e-2, 'train.schedule': 'cosine',
               'model.dropout_rate': 0.0, 'eval.beam_size': 1,
               'model.positional': 'sinusoidal'}


def _apply_task_defaults(config):
  """Per-task defaults: applied when the config string names the task (task=reverse),
  not when --config.task changes it afterwards; flags override them as any field."""
  if config.task not in TASK_DEFAULTS:
    return
  config.update_from_flattened_dict({**ALGORITHMIC, **TASK_DEFAULTS[config.task]})
  config.eval.every_steps = config.checkpoint.every_steps = config.train.num_steps


def _apply_long_range_defaults(config, length: int):
  """A long-range task at `length` source tokens: config.task names its dataset (TASK_L);
  rows are unpacked, one sequence each, padded to length + 1 (test_long's to twice that),
  batches hold about BATCH_TOKENS source tokens, decoding is greedy and stops after the
  task's short target."""
  from attention.data import long_range
  task = config.task
  config.task = f'{task}_{length}'
  config.update_from_flattened_dict(ALGORITHMIC)
  config.data.pack = False
  config.data.max_length = length + 1
  config.data.bucket_boundaries = (length + 1, 2 * (length + 1))
  config.train.batch_size = max(1, BATCH_TOKENS // length)
  config.train.num_steps = 1000
  config.eval.batch_size = max(1, BATCH_TOKENS // length)
  config.eval.max_decode_length = long_range.TARGET_LENGTH[task] + 1
  config.eval.every_steps = config.checkpoint.every_steps = config.train.num_steps
