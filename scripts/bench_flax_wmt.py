r"""Our Transformer against Flax's WMT example, the same model size, timed in one process.

  python scripts/bench_flax_wmt.py --config.model.positional=sinusoidal --flax_wmt=DIR \
      --fetch --json=OUT.json

Flax's `examples/wmt` is not part of the installed package; its source distribution on
PyPI carries it. DIR must hold the example's `models.py` and `decode.py`, which are used
unchanged (imported from DIR, never copied here); with --fetch they are taken from the
sdist of the installed flax version (`pip download --no-binary`) when DIR lacks them.

What is timed, for the Flax example and for our model with each of --kernels:
- a training step: forward, backward and the AdamW update of one batch of --batch random
  full-length pairs of --length source and --length target tokens (tokens/s counts both),
  with dropout and label smoothing on; both sides use our optimizer (optax AdamW with the
  paper's betas and the config's schedule), and the Flax side the example's own model;
- beam search (--beam, alpha 0.6) of --decode_batch random sources, --decode_length tokens
  each, through each side's own beam search and cache: the Flax example's
  `decode.beam_search` with its decode-mode cache, and ours `attention.models.decoding.beam_search`.
  EOS is an id neither model can emit, so every call does the same work;
- ours also: cached and uncached greedy decoding of the same sources (the example has no
  greedy decoder).
The sizes are config's (default `small`: 3 + 3 layers, d_model 256, 4 heads, d_ff 1024,
shared 64-token vocabulary); the Flax model is built to match, and the JSON records both
parameter counts. --rounds rounds run the candidates in alternation (flax, ours flash,
ours xla, flax, ...), so that all see the same machine load; each round's time is a
median of --repeats steps (--decode_repeats decoder calls) after a compiling call, and the
reported figure is the median over rounds.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import flax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from absl import flags  # noqa: E402
from flax import nnx  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from attention import cli, kernels, models  # noqa: E402
from attention.bench import machine  # noqa: E402
from attention.models import decoding  # noqa: E402
from attention import UserError  # noqa: E402
from attention.bench.inputs import median_seconds, random_pairs, random_tokens  # noqa: E402
from attention.training import optimizer, step as step_lib  # noqa: E402

_CONFIG = cli.define_config_flag(
    'Experiment config: model sizes, dropout, label smoothing and optimizer of both sides.',
    default='configs/default.py:model=small')
_FLAX_WMT = flags.DEFINE_string('flax_wmt', None, "Directory with the Flax WMT example's "
                                'models.py and decode.py.')
_FETCH = flags.DEFINE_bool('fetch', False, 'Extract them from the sdist of the installed flax '
                           'version (from PyPI) when --flax_wmt lacks them.')
_KERNELS = flags.DEFINE_list('kernels', ['flash', 'xla'], 'Our attention kernels to time.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Rounds of all candidates in alternation.')
_REPEATS = flags.DEFINE_integer('repeats', 10, 'Timed training steps per round (median).')
_DECODE_REPEATS = flags.DEFINE_integer('decode_repeats', 3, 'Timed calls of each decoder per '
                                       'round (median).')
_BATCH = flags.DEFINE_integer('batch', 64, 'Training batch (rows).')
_LENGTH = flags.DEFINE_integer('length', 32, 'Source and target length.')
_BEAM = flags.DEFINE_integer('beam', 4, 'Beam size.')
_DECODE_BATCH = flags.DEFINE_integer('decode_batch', 32, 'Sentences per beam call.')
_DECODE_LENGTH = flags.DEFINE_integer('decode_length', 64, 'Tokens generated per sentence.')
_VOCAB = flags.DEFINE_integer('vocab', 64, 'Vocabulary size when config.model.vocab_size is 0.')
_JSON = flags.DEFINE_string('json', None, 'Write the results here as JSON.')

FLAX = 'flax_wmt'
EXAMPLE_FILES = ('models.py', 'decode.py')


def fetch_example(directory: str) -> None:
  """Extracts examples/wmt/{models,decode}.py of the installed flax's sdist into directory."""
  with tempfile.TemporaryDirectory() as tmp:
    cmd = [sys.executable, '-m', 'pip', 'download', f'flax=={flax.__version__}', '--no-deps',
           '--no-binary', ':all:', '--quiet', '-d', tmp]
    if subprocess.run(cmd, capture_output=True, text=True).returncode:
      raise UserError(f'--fetch: could not download the flax {flax.__version__} sdist '
                           'from PyPI; pass --flax_wmt=DIR holding the example instead')
    (sdist,) = glob.glob(os.path.join(tmp, 'flax-*.tar.gz'))
    os.makedirs(directory, exist_ok=True)
    with tarfile.open(sdist) as tar:
      for name in EXAMPLE_FILES:
        member = tar.getmember(f'flax-{flax.__version__}/examples/wmt/{name}')
        with tar.extractfile(member) as src, open(os.path.join(directory, name), 'wb') as dst:
          dst.write(src.read())


def load_example(directory: str):
  """The example's models and decode modules, imported from directory."""
  loaded = []
  for name in EXAMPLE_FILES:
    spec = importlib.util.spec_from_file_location(f'flax_wmt_{name[:-3]}',
                                                  os.path.join(directory, name))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    loaded.append(module)
  return loaded


class Ours:
  """Our train step and beam search for one attention kernel."""

  def __init__(self, config, kernel, batch, src):
    cfg = config.model.copy_and_resolve_references()
    cfg.kernel = kernel
    model = models.build(cfg, rngs=nnx.Rngs(params=config.seed, dropout=config.seed + 1))
    self.graphdef, params, self.rest = step_lib.split_model(model)
    self.params_count = int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
    tx, _ = optimizer.make_optimizer(config.train)
    self.step = step_lib.make_train_step(self.graphdef, self.rest, tx,
                                         label_smoothing=config.train.label_smoothing)
    self.state = step_lib.create_train_state(params, tx, config.seed)
    self.batch, self.src = batch, src
    length = _DECODE_LENGTH.value
    self.decoders = {
        'beam': decoding.jit_decoder(decoding.beam_search, beam_size=_BEAM.value,
                                     max_length=length, eos_id=-1),
        'greedy': decoding.jit_decoder(decoding.greedy_decode, max_length=length, eos_id=-1),
        'uncached_greedy': decoding.jit_decoder(decoding.uncached_greedy_decode,
                                                max_length=length, eos_id=-1)}

  def train_step(self):
    self.state, metrics = self.step(self.state, self.batch)
    return metrics['loss']

  def decode(self, name):
    model = step_lib.merge_model(self.graphdef, self.state.params, self.rest)
    return self.decoders[name](model, self.src)


class FlaxExample:
  """The Flax WMT example's model (its models.py, decode.py) in a train step and beam
  search written here, as its train.py uses them (single device, no pmap)."""

  def __init__(self, config, wmt_models, wmt_decode, batch, src):
    m = config.model
    base = dict(vocab_size=m.vocab_size, output_vocab_size=m.vocab_size,
                share_embeddings=m.share_embeddings, logits_via_embedding=m.share_embeddings,
                emb_dim=m.d_model, num_heads=m.num_heads, num_layers=m.num_layers,
                qkv_dim=m.d_model, mlp_dim=m.d_ff, max_len=max(m.max_length, _DECODE_LENGTH.value),
                dropout_rate=m.dropout_rate, attention_dropout_rate=m.attention_dropout_rate)
    train_cfg = wmt_models.TransformerConfig(**base, deterministic=False)
    eval_cfg = wmt_models.TransformerConfig(**base, deterministic=True)
    decode_cfg = wmt_models.TransformerConfig(**base, deterministic=True, decode=True)
    Transformer = wmt_models.Transformer
    src_tr, tgt = batch['src'], batch['tgt_out']
    params = Transformer(eval_cfg).init(jax.random.key(config.seed), src_tr, tgt)['params']
    self.params_count = int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
    tx, _ = optimizer.make_optimizer(config.train)
    smoothing = config.train.label_smoothing

    def train_step(state, dropout_rng):
      params, opt_state, step = state

      def loss_fn(params):
        logits = Transformer(train_cfg).apply(
            {'params': params}, src_tr, tgt,
            rngs={'dropout': jax.random.fold_in(dropout_rng, step)})
        labels = optax.smooth_labels(jax.nn.one_hot(tgt, logits.shape[-1]), smoothing)
        weights = (tgt > 0).astype(jnp.float32)
        loss = optax.softmax_cross_entropy(logits, labels) * weights
        return jnp.sum(loss) / jnp.sum(weights)

      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state, step + 1), loss

    def beam_search(params, inputs):
      # The decode-mode cache for the batch (beam_search expands it to batch * beam rows).
      cache = Transformer(decode_cfg).init(
          jax.random.key(0), jnp.ones(inputs.shape, jnp.float32),
          jnp.ones((inputs.shape[0], _DECODE_LENGTH.value), jnp.float32))['cache']
      encoded = wmt_decode.flat_batch_beam_expand(
          Transformer(eval_cfg).apply({'params': params}, inputs, method=Transformer.encode),
          _BEAM.value)
      raw_inputs = wmt_decode.flat_batch_beam_expand(inputs, _BEAM.value)

      def tokens_to_logits(flat_ids, flat_cache):
        logits, new_vars = Transformer(decode_cfg).apply(
            {'params': params, 'cache': flat_cache}, encoded, raw_inputs, flat_ids,
            mutable=['cache'], method=Transformer.decode)
        return logits.squeeze(axis=1), new_vars['cache']

      seqs, _ = wmt_decode.beam_search(inputs, cache, tokens_to_logits, beam_size=_BEAM.value,
                                       alpha=0.6, eos_id=-1,
                                       max_decode_len=_DECODE_LENGTH.value)
      return seqs

    self.state = (params, tx.init(params), jnp.int32(0))
    self.rng = jax.random.key(config.seed + 1)
    self.step = jax.jit(train_step, donate_argnums=0)
    self.beam = jax.jit(beam_search)
    self.src = src

  decoders = ('beam',)

  def train_step(self):
    self.state, loss = self.step(self.state, self.rng)
    return loss

  def decode(self, name):
    assert name == 'beam', name
    return self.beam(self.state[0], self.src)


def table(medians: dict, x_vs_flax: dict) -> str:
  """The BENCHMARKS table: medians over rounds, and ours against the Flax example."""
  cell = lambda name, key, fmt: ('–' if key not in medians[name] else format(
      medians[name][key], fmt) + (f' ({x_vs_flax[name][key]:.2f}x)'
                                  if key in x_vs_flax.get(name, {}) else ''))
  lines = ['| | train tokens/s | beam sentences/s | greedy sentences/s | uncached greedy | '
           'cached / uncached |', '|---|---|---|---|---|---|']
  for name in medians:
    lines.append(f"| {name} | {cell(name, 'train_tokens_per_s', ',.0f')} | "
                 f"{cell(name, 'beam_sentences_per_s', '.1f')} | "
                 f"{cell(name, 'greedy_sentences_per_s', '.1f')} | "
                 f"{cell(name, 'uncached_greedy_sentences_per_s', '.1f')} | "
                 f"{cell(name, 'cached_over_uncached', '.1f')} |")
  return '\n'.join(lines)


def main():
  if not _FLAX_WMT.value:
    raise UserError("--flax_wmt: required, a directory with the Flax WMT example's "
                         'models.py and decode.py (with --fetch, where to put them)')
  unknown = [k for k in _KERNELS.value if k not in kernels.names()]
  if unknown:
    raise UserError(f'--kernels: unknown {unknown[0]!r}; '
                         f'allowed: {", ".join(kernels.names())}')
  for name, flag in (('rounds', _ROUNDS), ('repeats', _REPEATS),
                     ('decode_repeats', _DECODE_REPEATS)):
    if flag.value < 1:
      raise UserError(f'--{name}: must be at least 1, got {flag.value}')
  config = _CONFIG.value
  if not config.model.vocab_size:
    config.model.vocab_size = _VOCAB.value
  if config.model.name != 'transformer':
    raise UserError(f'config.model.name: the Flax example is a Transformer; got '
                         f'{config.model.name!r}')
  if config.model.positional != 'sinusoidal':
    raise UserError('config.model.positional: the Flax example adds sinusoidal positions; '
                         f'got {config.model.positional!r} (pass '
                         '--config.model.positional=sinusoidal)')
  missing = [f for f in EXAMPLE_FILES if not os.path.exists(os.path.join(_FLAX_WMT.value, f))]
  if missing and _FETCH.value:
    fetch_example(_FLAX_WMT.value)
  elif missing:
    raise UserError(f'--flax_wmt: {_FLAX_WMT.value} has no {missing[0]}; pass --fetch to '
                         f'take it from the flax {flax.__version__} sdist')
  wmt_models, wmt_decode = load_example(_FLAX_WMT.value)

  rng = np.random.default_rng(0)
  b, t, vocab = _BATCH.value, _LENGTH.value, config.model.vocab_size
  batch = random_pairs(rng, b, t, vocab)
  src = random_tokens(rng, (_DECODE_BATCH.value, t), vocab)
  candidates = {FLAX: FlaxExample(config, wmt_models, wmt_decode, batch, src)}
  for kernel in _KERNELS.value:
    candidates[f'ours_{kernel}'] = Ours(config, kernel, batch, src)

  rounds = []
  for round_ in range(_ROUNDS.value):
    for name, c in candidates.items():
      row = {'round': round_, 'candidate': name,
             'train_tokens_per_s': 2 * b * t / median_seconds(c.train_step, _REPEATS.value)}
      for decoder in c.decoders:
        seconds = median_seconds(lambda: c.decode(decoder), _DECODE_REPEATS.value)
        row[f'{decoder}_sentences_per_s'] = _DECODE_BATCH.value / seconds
      rounds.append(row)
      print(f'round {round_} {name:>12}: ' + ', '.join(
          f'{k} {v:,.1f}' for k, v in row.items() if k.endswith('_per_s')), flush=True)

  medians = {}
  for name in candidates:
    own = [r for r in rounds if r['candidate'] == name]
    medians[name] = {key: statistics.median(r[key] for r in own)
                     for key in own[0] if key.endswith('_per_s')}
  for m in medians.values():
    if 'uncached_greedy_sentences_per_s' in m:
      m['cached_over_uncached'] = m['greedy_sentences_per_s'] / m['uncached_greedy_sentences_per_s']
  result = {
      'machine': machine.describe(), 'flax': flax.__version__, 'model': config.model.to_dict(),
      'batch': b, 'length': t, 'beam': _BEAM.value, 'decode_batch': _DECODE_BATCH.value,
      'decode_length': _DECODE_LENGTH.value, 'repeats': _REPEATS.value,
      'decode_repeats': _DECODE_REPEATS.value,
      'params': {name: c.params_count for name, c in candidates.items()},
      'rounds': rounds, 'medians': medians,
      'x_vs_flax': {name: {key: m[key] / medians[FLAX][key] for key in medians[FLAX]}
                    for name, m in medians.items() if name != FLAX},
  }
  print(table(medians, result['x_vs_flax']))
  if _JSON.value:
    os.makedirs(os.path.dirname(os.path.abspath(_JSON.value)), exist_ok=True)
    with open(_JSON.value, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  cli.main(main, config_flag='config')
