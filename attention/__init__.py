"""Self-attention and the Transformer in JAX/Flax NNX.

The package reads bottom-up (docs/architecture.md): `kernels` (pure attention functions),
`models` and `data` beside each other above them, `evaluation`, then `training`; `cli`
serves the entry points and `bench` the benchmark scripts. This module holds the two
things every layer shares, and imports nothing.
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
