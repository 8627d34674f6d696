"""Attention kernels against their peers: time, GFLOP/s, compiled memory, peak RSS.

  python scripts/bench_attention.py                       # full table -> results/bench_attention/
  python scripts/bench_attention.py --lengths=4096 --repeats=9
  python scripts/bench_attention.py --tune                # flash block sizes at --lengths
  python scripts/bench_attention.py --profile --lengths=4096 --candidates=flash  # per XLA op
  XLA_FLAGS=--xla_force_host_platform_device_count=2 python scripts/bench_attention.py \
      --candidates=flash,flash@heads,jax.nn,jax.nn@heads,torch   # heads over 2 devices

Every candidate is compiled and warmed up first; then the candidates of one
(length, causal, pass) point are timed in turn, `--repeats` rounds, and the median
is reported, so that all of them see the same machine load. Peers: jax.nn's and
flax.linen's dot_product_attention, and PyTorch's scaled_dot_product_attention when
torch is installed (`pip install -e '.[bench]'`). Peak RSS comes from a fresh
subprocess per point (--rss_lengths), since a process's peak never goes down. `cores`
is the process's CPU time over the wall time of a call (median): how many cores it kept
busy. --profile traces each JAX candidate instead and splits its time over XLA's
operations (attention/bench/op_profile.py): matrix products, exp, reductions, data movement.
"""

from __future__ import annotations

import functools
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

from absl import flags

# PyTorch's OpenMP workers otherwise spin for a while after each call, holding a core
# while the next (JAX) candidate runs; measured here: flash forward at 4096 took 20%
# longer right after a torch call with the default (active) policy.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from attention import cli, kernels  # noqa: E402
from attention import UserError  # noqa: E402
from attention.kernels import head_parallel  # noqa: E402
from attention.bench import machine  # noqa: E402
from attention.bench import op_profile  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list('lengths', ['256', '1024', '4096', '16384'], 'Sequence lengths (q = kv).')
flags.DEFINE_list('candidates', ['flash', 'reference', 'xla', 'local', 'linear', 'jax.nn',
                                 'flax.linen', 'torch'], 'Kernels and peers to run.')
flags.DEFINE_list('passes', ['fwd', 'fwd_bwd'], 'fwd and/or fwd_bwd (gradient of sum(out)).')
flags.DEFINE_list('causal', ['false', 'true'], 'Causal settings to run.')
flags.DEFINE_integer('batch', 1, 'Batch size.')
flags.DEFINE_integer('heads', 8, 'Heads.')
flags.DEFINE_integer('head_dim', 64, 'Head size.')
flags.DEFINE_integer('repeats', 5, 'Timed rounds per point (median reported).')
flags.DEFINE_float('max_seconds', 20.0, 'Skip a candidate whose warm-up call took longer.')
flags.DEFINE_float('memory_budget_gib', 6.0,
                   'Do not run a candidate whose compiled temporaries exceed this.')
flags.DEFINE_list('rss_lengths', ['16384'], 'Lengths at which peak RSS is measured.')
flags.DEFINE_string('out_dir', 'results/bench_attention', 'Where JSON, Markdown, PNG go.')
flags.DEFINE_bool('tune', False, 'Sweep flash block sizes instead of comparing kernels.')
flags.DEFINE_list('tune_blocks', ['128x512', '256x256', '256x512', '512x256', '512x512',
                                  '512x1024', '1024x512', '1024x1024'], 'Blocks for --tune.')
flags.DEFINE_bool('profile', False, 'Split each JAX candidate\'s time over XLA operations '
                  '(a profiler trace of --repeats calls) instead of timing against peers.')
flags.DEFINE_integer('profile_top', 8, 'With --profile: how many of the slowest ops to list.')
flags.DEFINE_string('rss_probe', None, 'internal: name,length,causal,pass; prints peak RSS.')

JAX_PEERS = ('jax.nn', 'flax.linen')
EXACT = ('flash', 'reference', 'xla', 'jax.nn', 'flax.linen', 'torch')


def jax_fn(name: str, causal: bool):
  """A function (q, k, v) -> out in [B, T, N, H] for a project kernel or JAX peer.

  A '+causal' suffix forces causal attention, so that a non-causal point can time the
  causal variant side by side (e.g. --candidates=flash,flash+causal --causal=false).
  'flash:BQxBK' sets flash's tiles, 'flash:BQxBK/BQxBK' those of the forward and of the
  backward pass (e.g. --candidates=flash:512x512,flash:512x512/1024x1024).
  An '@heads' suffix runs the candidate with its heads split over the local devices, one
  head at a time on each (attention/kernels/head_parallel.py); its inputs are placed with
  input_sharding(name).
  """
  if name.endswith('@heads'):
    return head_parallel.split_heads(jax_fn(name[:-len('@heads')], causal))[0]
  if name.endswith('+causal'):
    return jax_fn(name[:-len('+causal')], True)
  if name.startswith('flash:'):
    tiles = [[int(x) for x in t.split('x')] for t in name.split(':')[1].split('/')]
    bwd = dict(zip(('bwd_block_q', 'bwd_block_kv'), tiles[1])) if len(tiles) > 1 else {}
    return functools.partial(kernels.get('flash'), is_causal=causal, block_q=tiles[0][0],
                             block_kv=tiles[0][1], **bwd)
  if name in kernels.names():
    return functools.partial(kernels.get(name), is_causal=causal)
  if name == 'jax.nn':
    return functools.partial(jax.nn.dot_product_attention, is_causal=causal)
  if name == 'flax.linen':
    import flax.linen as nn

    def flax_attention(q, k, v):
      mask = nn.make_causal_mask(jnp.ones(q.shape[:2]), dtype=bool) if causal else None
      return nn.dot_product_attention(q, k, v, mask=mask)
    return flax_attention
  raise ValueError(f'unknown candidate {name!r}')


PEERS = ('jax.nn', 'flax.linen', 'torch')
TILES = re.compile(r'[1-9][0-9]*x[1-9][0-9]*')
BOOLEAN = ('true', 'false', '1', '0', 'yes', 'no')


def check_candidate(name: str) -> None:
  """UserError unless jax_fn (or the torch peer) can run `name`."""
  base = name
  for suffix in ('@heads', '+causal'):
    base = base[:-len(suffix)] if base.endswith(suffix) else base
  if base.startswith('flash:'):
    tiles = base[len('flash:'):].split('/')
    if len(tiles) > 2 or not all(TILES.fullmatch(t) for t in tiles):
      raise UserError(f'--candidates: {name!r}: tiles are written flash:BQxBK or '
                      'flash:BQxBK/BQxBK (forward/backward), e.g. flash:512x512')
  elif base not in (*kernels.names(), *PEERS) or (base == 'torch' and name != 'torch'):
    raise UserError(f'--candidates: unknown {name!r}; allowed: {", ".join(kernels.names())}, '
                    f'{", ".join(PEERS)}, flash:BQxBK[/BQxBK], optionally followed by '
                    '+causal, then @heads (not on torch)')


def check_flags() -> None:
  """Every flag a user can mistype, checked before anything is compiled or written."""
  if FLAGS.profile and FLAGS.tune:
    raise UserError('--profile and --tune: pick one (each writes its own table)')
  if FLAGS.profile and not op_profile.available():
    raise UserError(f'--profile: jax {jax.__version__} cannot read its own traces '
                    '(no jax.profiler.ProfileData; jax 0.10 has it)')
  if not FLAGS.candidates and not FLAGS.tune:
    raise UserError('--candidates: empty; name one or more kernels or peers')
  for name in FLAGS.candidates:
    check_candidate(name)
  for block in FLAGS.tune_blocks:
    if not TILES.fullmatch(block):
      raise UserError(f'--tune_blocks: {block!r} is not BQxBK, e.g. 512x512')
  cli.int_list(FLAGS['lengths'])
  if FLAGS.rss_lengths:
    cli.int_list(FLAGS['rss_lengths'])
  if not FLAGS.passes:
    raise UserError('--passes: empty; allowed: fwd, fwd_bwd')
  cli.require_subset(FLAGS['passes'], ('fwd', 'fwd_bwd'))
  if not FLAGS.causal or any(c.lower() not in BOOLEAN for c in FLAGS.causal):
    raise UserError(f'--causal: one or more of {", ".join(BOOLEAN)}; got '
                    f'{",".join(FLAGS.causal) or "nothing"}')
  cli.require_positive(*(FLAGS[n] for n in ('batch', 'heads', 'head_dim', 'repeats',
                                            'max_seconds', 'profile_top')))
  if FLAGS.memory_budget_gib < 0:
    raise UserError(f'--memory_budget_gib: must be >= 0, got {FLAGS.memory_budget_gib}')
  cli.writable_dir(FLAGS.out_dir, '--out_dir')


def input_sharding(name):
  """Where a candidate's q, k, v live: split by head for '@heads', else the default device."""
  return head_parallel.input_sharding() if name.endswith('@heads') else None


def placed(name, arrays):
  sharding = input_sharding(name)
  return arrays if sharding is None else [jax.device_put(x, sharding) for x in arrays]


def compile_jax(name, causal, pass_, shape):
  fn = attention_fn = jax_fn(name, causal)
  if pass_ == 'fwd_bwd':
    fn = jax.grad(lambda q, k, v: jnp.sum(attention_fn(q, k, v)), argnums=(0, 1, 2))
  spec = jax.ShapeDtypeStruct(shape, jnp.float32, sharding=input_sharding(name))
  compiled = jax.jit(fn).lower(spec, spec, spec).compile()
  mem = compiled.memory_analysis()
  return compiled, int(mem.temp_size_in_bytes)


def torch_runner(causal, pass_, shape):
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(os.cpu_count() or 1)
  b, t, n, h = shape
  gen = torch.Generator().manual_seed(0)
  q, k, v = (torch.randn(b, n, t, h, generator=gen) for _ in range(3))
  sdpa = torch.nn.functional.scaled_dot_product_attention
  if pass_ == 'fwd':
    def run():
      with torch.no_grad():
        return sdpa(q, k, v, is_causal=causal)
    return run
  qg, kg, vg = (x.clone().requires_grad_() for x in (q, k, v))

  def run_grad():
    for x in (qg, kg, vg):
      x.grad = None
    sdpa(qg, kg, vg, is_causal=causal).sum().backward()
    return qg.grad
  return run_grad


def have_torch() -> bool:
  try:
    import torch  # noqa: F401
    return True
  except ImportError:
    return False


def dense_flops(shape, causal, pass_):
  """FLOPs of exact attention: 4 B N T^2 H forward (QK^T and PV), 2.5x that backward."""
  b, t, n, h = shape
  f = 4.0 * b * n * t * t * h * (0.5 if causal else 1.0)
  return f * (3.5 if pass_ == 'fwd_bwd' else 1.0)


def process_cpu_seconds() -> float:
  """User + system CPU time of this process, all its threads (XLA's and PyTorch's pools)."""
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def random_inputs(shape):
  """q, k, v of one point: the same seeded normal draws for every candidate and mode."""
  rng = np.random.default_rng(0)
  return [jnp.asarray(rng.normal(size=shape), jnp.float32) for _ in range(3)]


def time_point(length, causal, pass_, names):
  """Compile all candidates of one point, then time them in alternation."""
  shape = (FLAGS.batch, length, FLAGS.heads, FLAGS.head_dim)
  args = random_inputs(shape)
  runners, rows = {}, {}
  for name in names:
    row = {'candidate': name, 'length': length, 'causal': causal, 'pass': pass_}
    rows[name] = row
    if name == 'torch':
      runners[name] = torch_runner(causal, pass_, shape)
      row['temp_bytes'] = None
    else:
      compiled, temp = compile_jax(name, causal, pass_, shape)
      row['temp_bytes'] = temp
      if temp > FLAGS.memory_budget_gib * 2**30:
        row['skipped'] = f'compiled temporaries {temp / 2**30:.1f} GiB > budget'
        continue
      runners[name] = functools.partial(lambda c, a: jax.block_until_ready(c(*a)), compiled,
                                        placed(name, args))
    start = time.perf_counter()
    runners[name]()
    if time.perf_counter() - start > FLAGS.max_seconds:
      row['skipped'] = f'warm-up call took {time.perf_counter() - start:.0f} s'
      del runners[name]
  times = {name: [] for name in runners}
  cores = {name: [] for name in runners}
  for _ in range(FLAGS.repeats):
    for name, run in runners.items():
      cpu, start = process_cpu_seconds(), time.perf_counter()
      run()
      wall = time.perf_counter() - start
      times[name].append(wall)
      cores[name].append((process_cpu_seconds() - cpu) / wall)
  for name, ts in times.items():
    row = rows[name]
    row['seconds'] = statistics.median(ts)
    row['cores_busy'] = statistics.median(cores[name])
    if name.split('@')[0].split('+')[0] in EXACT or name.startswith('flash'):
      forced_causal = causal or name.endswith('+causal')
      row['gflops'] = dense_flops(shape, forced_causal, pass_) / row['seconds'] / 1e9
  for row in rows.values():
    for peer in ('jax.nn', 'flax.linen', 'torch'):
      if 'seconds' in row and 'seconds' in rows.get(peer, {}):
        row[f'speedup_vs_{peer}'] = rows[peer]['seconds'] / row['seconds']
  return list(rows.values())


PROFILE_CATEGORIES = ('matmul', 'exp', 'reduce', 'elementwise', 'data movement', 'control',
                      'other')


def profile_point(length, causal, pass_, names):
  """Per-operation time of each JAX candidate of one point (op_profile.profile)."""
  shape = (FLAGS.batch, length, FLAGS.heads, FLAGS.head_dim)
  args = random_inputs(shape)
  rows = []
  for name in names:
    compiled, _ = compile_jax(name, causal, pass_, shape)
    report = op_profile.profile(compiled, placed(name, args), FLAGS.repeats)
    report['ops'] = report['ops'][:FLAGS.profile_top]
    rows.append({'candidate': name, 'length': length, 'causal': causal, 'pass': pass_, **report})
  return rows


def profile_markdown(rows, header):
  cols = (['pass', 'causal', 'length', 'candidate', 'ms', 'overlap']
          + [f'{c} %' for c in PROFILE_CATEGORIES] + ['matmul GFLOP/s'])
  lines = [header, '', '| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
  for r in rows:
    cats = r['categories']
    cells = [r['pass'], 'yes' if r['causal'] else 'no', str(r['length']), r['candidate'],
             f"{r['wall_ms']:.1f}", f"{r['overlap']:.2f}"]
    cells += [f"{100 * cats[c]['share']:.1f}" if c in cats else '-' for c in PROFILE_CATEGORIES]
    rate = cats.get('matmul', {}).get('gflops')
    cells.append(f'{rate:.1f}' if rate else '-')
    lines.append('| ' + ' | '.join(cells) + ' |')
  lines += ['', '| candidate | pass | causal | op | category | calls | ms | GFLOP/s |',
            '|---|---|---|---|---|---|---|---|']
  for r in rows:
    for o in r['ops']:
      rate = f"{o['gflops']:.1f}" if o.get('gflops') else '-'
      lines.append(f"| {r['candidate']} | {r['pass']} | {'yes' if r['causal'] else 'no'} | "
                   f"{o['op']} | {o['category']} | {o['calls']} | {o['ms']:.1f} | {rate} |")
  return '\n'.join(lines) + '\n'


def peak_rss_bytes(name, length, causal, pass_):
  """Peak RSS of a fresh process that builds inputs, compiles and runs one point once."""
  cmd = [sys.executable, os.path.abspath(__file__),
         f'--rss_probe={name},{length},{int(causal)},{pass_}',
         f'--batch={FLAGS.batch}', f'--heads={FLAGS.heads}', f'--head_dim={FLAGS.head_dim}']
  out = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if out.returncode != 0:
    return None
  return json.loads(out.stdout.strip().splitlines()[-1])['peak_rss_bytes']


def rss_probe(spec):
  name, length, causal, pass_ = spec.split(',')
  shape = (FLAGS.batch, int(length), FLAGS.heads, FLAGS.head_dim)
  if name == 'torch':
    torch_runner(causal == '1', pass_, shape)()
  else:
    compiled, _ = compile_jax(name, causal == '1', pass_, shape)
    args = placed(name, [jnp.ones(shape, jnp.float32) for _ in range(3)])
    jax.block_until_ready(compiled(*args))
  # VmHWM, not getrusage: Linux carries ru_maxrss over from the parent across fork+exec.
  with open('/proc/self/status') as f:
    hwm_kib = next(int(line.split()[1]) for line in f if line.startswith('VmHWM:'))
  print(json.dumps({'peak_rss_bytes': hwm_kib * 1024}))


def fmt_bytes(n):
  if n is None:
    return '-'
  for unit in ('B', 'KiB', 'MiB', 'GiB'):
    if n < 1024 or unit == 'GiB':
      return f'{n:.0f} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
    n /= 1024


def markdown(rows, header):
  peers = [p for p in ('jax.nn', 'flax.linen', 'torch') if any(r['candidate'] == p for r in rows)]
  cols = (['pass', 'causal', 'length', 'candidate', 'ms', 'GFLOP/s', 'cores']
          + [f'x vs {p}' for p in peers] + ['XLA temp', 'peak RSS'])
  lines = [header, '', '| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
  for r in rows:
    ms = f"{r['seconds'] * 1e3:.1f}" if 'seconds' in r else f"({r.get('skipped', '-')})"
    cells = [r['pass'], 'yes' if r['causal'] else 'no', str(r['length']), r['candidate'], ms,
             f"{r['gflops']:.1f}" if 'gflops' in r else '-',
             f"{r['cores_busy']:.2f}" if 'cores_busy' in r else '-']
    cells += [f"{r[f'speedup_vs_{p}']:.2f}" if f'speedup_vs_{p}' in r else '-' for p in peers]
    cells += [fmt_bytes(r.get('temp_bytes')), fmt_bytes(r.get('peak_rss_bytes'))]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def plot(rows, path):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  names = sorted({r['candidate'] for r in rows})
  for name in names:
    for causal, style in ((False, '-'), (True, '--')):
      pts = [r for r in rows if r['candidate'] == name and r['causal'] == causal
             and r['pass'] == 'fwd_bwd']
      timed = [(r['length'], r['seconds']) for r in pts if 'seconds' in r]
      if timed:
        axes[0].plot(*zip(*timed), style, marker='o', label=f"{name}{' causal' if causal else ''}")
      mem = [(r['length'], r['temp_bytes']) for r in pts if r.get('temp_bytes')]
      if mem and not causal:
        axes[1].plot(*zip(*mem), marker='o', label=name)
  for ax, title, ylabel in ((axes[0], 'forward+backward time', 'seconds'),
                            (axes[1], 'compiled temporary memory, forward+backward', 'bytes')):
    ax.set_xscale('log', base=2)
    ax.set_yscale('log')
    ax.set_xlabel('sequence length')
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which='both', alpha=0.3)
  axes[0].legend(fontsize=7, ncol=2)
  axes[1].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main():
  if FLAGS.rss_probe:
    rss_probe(FLAGS.rss_probe)
    return
  check_flags()
  names = list(FLAGS.candidates)
  if FLAGS.tune:
    names = [f'flash:{b}' for b in FLAGS.tune_blocks]
  if FLAGS.profile and 'torch' in names:
    print('--profile: no torch (the trace sees XLA operations only)')
    names.remove('torch')
  if 'torch' in names and not have_torch():
    print('torch not installed: no PyTorch column (pip install -e ".[bench]")')
    names.remove('torch')
  rows = []
  for pass_ in FLAGS.passes:
    for causal in (c.lower() in ('1', 'true', 'yes') for c in FLAGS.causal):
      for length in (int(x) for x in FLAGS.lengths):
        if FLAGS.profile:
          point = profile_point(length, causal, pass_, names)
        else:
          point = time_point(length, causal, pass_, names)
        if str(length) in FLAGS.rss_lengths and not FLAGS.tune and not FLAGS.profile:
          for row in point:
            if 'seconds' in row:
              row['peak_rss_bytes'] = peak_rss_bytes(row['candidate'], length, causal, pass_)
        rows += point
        for r in point:
          print(json.dumps(r), flush=True)
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  stem = os.path.join(FLAGS.out_dir, 'tune' if FLAGS.tune else
                      'profile' if FLAGS.profile else 'bench')
  info = machine.describe()
  command = 'python ' + ' '.join([os.path.relpath(__file__)] + sys.argv[1:])
  with open(stem + '.json', 'w') as f:
    json.dump({'machine': info, 'command': command, 'rows': rows}, f, indent=1)
  header = (f"`{command}`  \n{info['cpu']} ({info['cpu_id']}, {info['isa']}), "
            f"{info['cores']} cores, {info['backend']}, "
            f"jax {info['jax']}; fp32, batch {FLAGS.batch}, {FLAGS.heads} heads, "
            f"head_dim {FLAGS.head_dim}; "
            f"{'mean of' if FLAGS.profile else 'median of'} {FLAGS.repeats}")
  text = (profile_markdown if FLAGS.profile else markdown)(rows, header)
  with open(stem + '.md', 'w') as f:
    f.write(text)
  if not FLAGS.tune and not FLAGS.profile:
    plot(rows, stem + '.png')
  print(text)


if __name__ == '__main__':
  cli.main(main, config_flag=None)
