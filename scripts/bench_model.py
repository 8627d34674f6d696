r"""Model throughput: one training step, cached and uncached greedy decoding, beam search.

  python scripts/bench_model.py --config=configs/default.py:model=small --batch=64 \
      --length=32 --beam=4 --decode_batch=32 --decode_length=64 --json

Training tokens/s counts source plus target tokens of full-length random pairs through
the train step that training uses (forward, backward, AdamW update). Decoders run
`decode_length` steps on random sources of `length` tokens: the EOS id is set to one the
model cannot emit, so every run does the same work whatever the (random) weights.
Times are medians over --repeats calls after a warm-up call (compilation excluded).

Data parallelism on one machine: with forced CPU devices, --meshes times the same train
step on several device meshes in alternation, in one process (1x1 is one device):

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python scripts/bench_model.py \
      --config=configs/default.py:model=small --meshes=1x1,8x1,4x2 --skip=greedy,uncached,beam

Against length (attention/bench/length_scan.py): the train step of each kernel at each
length, one process each (time, compiled temporary memory, peak RSS), batches of
--batch_tokens source tokens, written as JSON, a Markdown table and a log-log plot:

  python scripts/bench_model.py --config=configs/default.py:task=recall,model=long \
      --lengths=256,1024,4096,16384 --kernels=reference,flash,local,linear \
      --target_length=5 --out_dir=runs/bench_lengths
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402
from flax import nnx  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from attention import cli, kernels, models  # noqa: E402
from attention.bench import length_scan, machine  # noqa: E402
from attention.models import decoding  # noqa: E402
from attention import UserError  # noqa: E402
from attention.bench.inputs import median_seconds, random_pairs, random_tokens  # noqa: E402
from attention.training import config_check, optimizer, sharding, step as step_lib  # noqa: E402

_CONFIG = cli.define_config_flag('Experiment config (only model and train are used).',
                                 default='configs/default.py:model=small')
_BATCH = flags.DEFINE_integer('batch', 64, 'Training batch (rows).')
_LENGTH = flags.DEFINE_integer('length', 32, 'Source and target length, training and decoding.')
_TARGET_LENGTH = flags.DEFINE_integer('target_length', 0, 'Target length of the train step '
                                      '(0: --length); the long-range tasks have short targets.')
_BEAM = flags.DEFINE_integer('beam', 4, 'Beam size.')
_DECODE_BATCH = flags.DEFINE_integer('decode_batch', 32, 'Sentences per decoding call.')
_DECODE_LENGTH = flags.DEFINE_integer('decode_length', 64, 'Tokens generated per sentence.')
_VOCAB = flags.DEFINE_integer('vocab', 64, 'Vocabulary size when config.model.vocab_size is 0.')
_REPEATS = flags.DEFINE_integer('repeats', 10, 'Timed calls per measurement (median).')
_DECODE_REPEATS = flags.DEFINE_integer('decode_repeats', 3, 'Timed calls per decoder.')
_SKIP = flags.DEFINE_list('skip', [], 'Measurements to skip: train, greedy, uncached, beam.')
_MESHES = flags.DEFINE_list('meshes', [], 'Device meshes DATAxMODEL to time the train step '
                            'on, alternated (e.g. 1x1,8x1,4x2); empty: the default device.')
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object (else a readable summary).')
_MEMORY_LIMIT = flags.DEFINE_float('memory_limit_gib', 8.0, 'A train step whose compiled '
                                   'temporaries exceed this is reported, not run.')
_LENGTHS = flags.DEFINE_list('lengths', [], 'Time the train step at each of these source '
                             'lengths, one process each (see the module docstring).')
_KERNELS = flags.DEFINE_list('kernels', ['reference', 'flash', 'local', 'linear'],
                             'With --lengths: the kernels to time.')
_BATCH_TOKENS = flags.DEFINE_integer('batch_tokens', 8192, 'With --lengths: source tokens '
                                     'per batch (rows = batch_tokens / length, at least 1).')
_TIMEOUT = flags.DEFINE_integer('timeout_s', 1800, 'With --lengths: the most one '
                                'measurement may take.')
_OUT_DIR = flags.DEFINE_string('out_dir', 'runs/bench_lengths', 'With --lengths: where '
                               'lengths.json, lengths.md and lengths.png go.')


def time_meshes(meshes, graphdef, rest, tx, config, params, batch) -> dict:
  """{mesh: median train-step seconds}, the meshes timed round-robin in one process."""
  steps, states, batches = {}, {}, {}
  host_params = jax.device_get(params)
  for name, (data, model) in meshes.items():
    mesh = sharding.make_mesh(data, model, jax.devices()[:data * model])
    state = step_lib.create_train_state(host_params, tx, config.seed)
    shardings = sharding.tree_shardings(state, mesh, fsdp=config.mesh.fsdp)
    states[name] = sharding.put(state, shardings)
    batches[name] = sharding.global_batch(jax.device_get(batch), mesh)
    steps[name] = step_lib.make_train_step(
        graphdef, rest, tx, label_smoothing=config.train.label_smoothing,
        state_sharding=shardings, batch_sharding=sharding.batch_sharding(mesh))
  times = {name: [] for name in steps}
  for round_ in range(_REPEATS.value + 1):   # round 0 compiles
    for name, step in steps.items():
      start = time.perf_counter()
      states[name], metrics = step(states[name], batches[name])
      jax.block_until_ready(metrics)
      if round_:
        times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


MEASUREMENTS = ('train', 'greedy', 'uncached', 'beam')
cli.positive(_BATCH, _LENGTH, _BEAM, _DECODE_BATCH, _DECODE_LENGTH, _VOCAB, _REPEATS,
             _DECODE_REPEATS, _BATCH_TOKENS, _TIMEOUT)
cli.validate(_TARGET_LENGTH, lambda v: None if v >= 0 else f'must be >= 1, or 0; got {v}')
cli.validate(_MEMORY_LIMIT, lambda v: None if v > 0 else f'must be > 0 (GiB); got {v}')
cli.validate(_LENGTHS, lambda v: None if all(x.isdigit() and int(x) > 0 for x in v) else
             f'{",".join(v)!r}: positive integers (tokens), e.g. 256,1024,4096')
cli.subset_of(_SKIP, MEASUREMENTS)


def check_flags(config) -> dict[str, tuple[int, int]]:
  """Every flag a user can mistype, checked before anything compiles; returns the meshes
  parsed, {'4x2': (4, 2), ...}."""
  # The model and optimizer fields as train.py checks them, for the data this script feeds:
  # unpacked rows of random tokens, up to the longest of its lengths.
  fed = config.copy_and_resolve_references()
  fed.data.pack = False
  fed.data.max_length = max(_LENGTH.value, _DECODE_LENGTH.value, _TARGET_LENGTH.value,
                           *map(int, _LENGTHS.value))
  config_check.validate(fed)
  if _LENGTHS.value:
    cli.check_creatable(_OUT_DIR.value, '--out_dir')
  unknown = [k for k in _KERNELS.value if k not in kernels.names()]
  if unknown:
    raise UserError(f'--kernels: unknown kernel {unknown[0]!r}; allowed: '
                    f'{", ".join(kernels.names())}')
  meshes = {}
  for name in _MESHES.value:
    parts = name.split('x')
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
      raise UserError(f'--meshes: {name!r} is not DATAxMODEL, e.g. 4x2')
    data, model = int(parts[0]), int(parts[1])
    if data * model > jax.device_count():
      raise UserError(f'--meshes: {name} needs {data * model} devices, {jax.device_count()} '
                      'here (XLA_FLAGS=--xla_force_host_platform_device_count=N on a CPU)')
    meshes[name] = (data, model)
  return meshes


def temporaries(compiled) -> int:
  """Bytes of temporary buffers XLA allocates for one call (activations kept for the
  backward pass, attention scores): what grows with length, parameters aside."""
  analysis = compiled.memory_analysis()
  return int(analysis.temp_size_in_bytes) if analysis is not None else 0


def scan_lengths(config_args: list[str]) -> None:
  """--lengths: every kernel at every length, each in a child process of this script."""
  os.makedirs(_OUT_DIR.value, exist_ok=True)
  rows = []
  for kernel in _KERNELS.value:
    for length in map(int, _LENGTHS.value):
      command = length_scan.child_command(
          os.path.abspath(__file__), config_args, kernel, length, _BATCH_TOKENS.value,
          _TARGET_LENGTH.value or length, _REPEATS.value, _MEMORY_LIMIT.value)
      row = {'kernel': kernel, 'length': length,
             'rows': length_scan.rows_for(length, _BATCH_TOKENS.value),
             **length_scan.measure(command, _TIMEOUT.value)}
      rows.append(row)
      why = length_scan.cell(row)
      print(f'{kernel:>10} {length:>6}: ' + (why or f'{row["train_step_s"] * 1e3:,.1f} ms, '
            f'temporaries {row["temp_bytes"] / 2**20:,.0f} MiB, '
            f'peak RSS {row["peak_rss_bytes"] / 2**20:,.0f} MiB'), flush=True)
  summary = {'command': ' '.join(sys.argv), 'machine': machine.describe(),
             'batch_tokens': _BATCH_TOKENS.value, 'exponents': length_scan.exponents(rows),
             'rows': rows}
  with open(os.path.join(_OUT_DIR.value, 'lengths.json'), 'w') as f:
    json.dump(summary, f, indent=1)
  with open(os.path.join(_OUT_DIR.value, 'lengths.md'), 'w') as f:
    f.write(length_scan.markdown(rows))
  png = length_scan.plot(rows, os.path.join(_OUT_DIR.value, 'lengths.png'))
  for kernel, slope in summary['exponents'].items():
    print(f'{kernel}: step time per row grows as length^{slope:.2f}')
  print(f'results: {_OUT_DIR.value}/lengths.{{json,md{",png" if png else ""}}}')


def main():
  config = _CONFIG.value
  meshes = check_flags(config)
  if _LENGTHS.value:
    scan_lengths([a for a in sys.argv[1:] if a.startswith('--config')])
    return
  cfg = config.model
  if not cfg.vocab_size:
    cfg.vocab_size = _VOCAB.value
  rng = np.random.default_rng(0)
  model = models.build(cfg, rngs=nnx.Rngs(params=config.seed, dropout=config.seed + 1))
  graphdef, params, rest = step_lib.split_model(model)
  result = {
      'model': cfg.to_dict(), 'batch': _BATCH.value, 'length': _LENGTH.value,
      'beam': _BEAM.value, 'decode_batch': _DECODE_BATCH.value,
      'decode_length': _DECODE_LENGTH.value, 'device': jax.devices()[0].device_kind,
      'machine': machine.describe(),
      'params': int(sum(x.size for x in jax.tree_util.tree_leaves(params))),
  }

  if 'train' not in _SKIP.value:
    tx, _ = optimizer.make_optimizer(config.train)
    train_step = step_lib.make_train_step(graphdef, rest, tx,
                                          label_smoothing=config.train.label_smoothing)
    b, t = _BATCH.value, _LENGTH.value
    batch = random_pairs(rng, b, t, cfg.vocab_size, _TARGET_LENGTH.value or t)
    holder = [step_lib.create_train_state(params, tx, config.seed)]
    compiled = train_step.lower(holder[0], batch).compile()
    result['temp_bytes'] = temporaries(compiled)
    if result['temp_bytes'] > _MEMORY_LIMIT.value * 2**30:
      result[length_scan.SKIPPED] = (f'needs {result["temp_bytes"] / 2**30:.1f} GiB of '
                                     f'temporaries, above --memory_limit_gib={_MEMORY_LIMIT.value:g}')
      print(json.dumps(result))
      return

    def one_step():
      holder[0], metrics = compiled(holder[0], batch)
      return metrics['loss']

    if meshes:
      result['meshes'] = time_meshes(meshes, graphdef, rest, tx, config, params, batch)
      holder[0] = step_lib.create_train_state(params, tx, config.seed)
    seconds = median_seconds(one_step, _REPEATS.value)
    result['train_step_s'] = seconds
    result['train_tokens_per_s'] = b * (t + (_TARGET_LENGTH.value or t)) / seconds
    # The step donated the arrays the model was built on: decode with the trained ones.
    model = step_lib.merge_model(graphdef, holder[0].params, rest)

  src = random_tokens(rng, (_DECODE_BATCH.value, _LENGTH.value), cfg.vocab_size)
  # eos_id=-1: no token ends a sentence, so every decoder generates decode_length tokens.
  decoders = {
      'greedy': decoding.jit_decoder(decoding.greedy_decode, max_length=_DECODE_LENGTH.value,
                                     eos_id=-1),
      'uncached': decoding.jit_decoder(decoding.uncached_greedy_decode,
                                       max_length=_DECODE_LENGTH.value, eos_id=-1),
      'beam': decoding.jit_decoder(decoding.beam_search, beam_size=_BEAM.value,
                                   max_length=_DECODE_LENGTH.value, eos_id=-1),
  }
  names = {'greedy': 'greedy_sentences_per_s', 'uncached': 'uncached_greedy_sentences_per_s',
           'beam': 'beam_sentences_per_s'}
  for name, fn in decoders.items():
    if name in _SKIP.value:
      continue
    seconds = median_seconds(lambda: fn(model, src), _DECODE_REPEATS.value)
    result[names[name]] = _DECODE_BATCH.value / seconds
  if 'greedy_sentences_per_s' in result and 'uncached_greedy_sentences_per_s' in result:
    result['cached_over_uncached'] = (result['greedy_sentences_per_s']
                                      / result['uncached_greedy_sentences_per_s'])

  # ru_maxrss is in KiB on Linux: the process's peak, compilation and every call included.
  result['peak_rss_bytes'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  if _JSON.value:
    print(json.dumps(result))
  else:
    for name, seconds in result.get('meshes', {}).items():
      print(f'{"train step on mesh " + name:>34}: {seconds * 1e3:,.1f} ms '
            f'({result["meshes"][_MESHES.value[0]] / seconds:.2f}x {_MESHES.value[0]})')
    for key, value in result.items():
      if key not in ('model', 'meshes'):
        print(f'{key:>34}: {value:,.1f}' if isinstance(value, float) else f'{key:>34}: {value}')


if __name__ == '__main__':
  cli.main(main)
