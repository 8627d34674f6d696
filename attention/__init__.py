"""Self-attention and the Transformer in JAX/Flax NNX.

The package reads bottom-up (docs/architecture.md): `kernels` (pure attention functions),
`models` and `data` beside each other above them, `evaluation`, then `training`; `cli`
serves the entry points and `bench` the benchmark scripts. This module holds the two
things every layer shares, and imports nothing; the public names below (kernels, models,
decoding, load_run, ...) are loaded from their layers on first use:

  import attention
  model = attention.Transformer.from_preset('mini', vocab_size=1000, rngs=nnx.Rngs(0))
  run = attention.load_run('runs/default', checkpoint='best')
  run.translate(['the big cat sees a dog .'], beam_size=4)
"""

# Special token ids of every vocabulary, the model and decoding.
PAD_ID = 0   # padding: invisible to attention, masked out of the loss
BOS_ID = 1   # starts every decoder input
EOS_ID = 2   # ends every target sequence
UNK_ID = 3   # a word the vocabulary does not have
NUM_SPECIAL = 4


class UserError(Exception):
  """Bad input from the person running a command: a config field, a flag, a file or a
  run directory. The message names what is wrong and what is allowed; the entry points
  (attention.cli) print it as one line and exit 2."""


# The public surface for notebooks and scripts, loaded on first use (PEP 562): a table of
# where each name lives, so that `import attention` still loads this module alone and the
# layers, which import the names above from here, never form a cycle with it.
_PUBLIC = {
    'kernels': ('attention.kernels', None),
    'models': ('attention.models', None),
    'decoding': ('attention.models.decoding', None),
    'positional': ('attention.models.positional', None),
    'presets': ('attention.models.presets', None),
    'Transformer': ('attention.models.transformer', 'Transformer'),
    'LSTMSeq2Seq': ('attention.models.rnn', 'LSTMSeq2Seq'),
    'attention_maps': ('attention.interpret.maps', 'attention_maps'),
    'interpret': ('attention.interpret', None),
    'load_run': ('attention.training.trained', 'load_run'),
    'Run': ('attention.training.trained', 'Run'),
}
__all__ = ['PAD_ID', 'BOS_ID', 'EOS_ID', 'UNK_ID', 'NUM_SPECIAL', 'UserError', *_PUBLIC]


def __getattr__(name):
  if name not in _PUBLIC:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  import importlib
  module_name, attribute = _PUBLIC[name]
  module = importlib.import_module(module_name)
  value = module if attribute is None else getattr(module, attribute)
  globals()[name] = value
  return value


def __dir__():
  return sorted(set(globals()) | set(_PUBLIC))
