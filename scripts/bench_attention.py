r"""Attention kernels against their peers: time, GFLOP/s, compiled memory, peak RSS.

  python scripts/bench_attention.py                       # full table -> runs/bench_attention/
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
import resource
import statistics
import subprocess
import sys
import time

from absl import flags

# PyTorch's OpenMP workers otherwise spin for a while after each call, holding a core
# while the next (JAX) candidate runs, which slows whatever is timed right after a torch call.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from attention import UserError, cli  # noqa: E402
from attention.bench import candidates, kernel_tables, machine, op_profile  # noqa: E402

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
flags.DEFINE_string('out_dir', 'runs/bench_attention', 'Where JSON, Markdown, PNG go '
                    '(results/ holds the recordings, which reproduce.py --record writes).')
flags.DEFINE_bool('tune', False, 'Sweep flash block sizes instead of comparing kernels.')
flags.DEFINE_list('tune_blocks', ['128x512', '256x256', '256x512', '512x256', '512x512',
                                  '512x1024', '1024x512', '1024x1024'], 'Blocks for --tune.')
flags.DEFINE_bool('profile', False, 'Split each JAX candidate\'s time over XLA operations '
                  '(a profiler trace of --repeats calls) instead of timing against peers.')
flags.DEFINE_integer('profile_top', 8, 'With --profile: how many of the slowest ops to list.')
flags.DEFINE_string('rss_probe', None, 'internal: name,length,causal,pass; prints peak RSS.')

BOOLEAN = ('true', 'false', '1', '0', 'yes', 'no')

cli.integers(FLAGS['lengths'])
cli.integers(FLAGS['rss_lengths'], allow_empty=True)
cli.validate(FLAGS['passes'], lambda v: None if v else 'empty; allowed: fwd, fwd_bwd')
cli.subset_of(FLAGS['passes'], ('fwd', 'fwd_bwd'))
cli.validate(FLAGS['causal'], lambda v: None if v and all(c.lower() in BOOLEAN for c in v)
             else f'one or more of {", ".join(BOOLEAN)}; got {",".join(v or ()) or "nothing"}')
cli.positive(*(FLAGS[n] for n in ('batch', 'heads', 'head_dim', 'repeats', 'max_seconds',
                                  'profile_top')))
cli.validate(FLAGS['memory_budget_gib'], lambda v: None if v >= 0 else f'must be >= 0, got {v}')


def check_flags() -> None:
  """What the flags' validators (above, run while absl parses) cannot see alone, checked
  before anything is compiled or written."""
  if FLAGS.profile and FLAGS.tune:
    raise UserError('--profile and --tune: pick one (each writes its own table)')
  if FLAGS.profile and not op_profile.available():
    raise UserError(f'--profile: jax {jax.__version__} cannot read its own traces '
                    '(no jax.profiler.ProfileData; jax 0.10 has it)')
  if not FLAGS.candidates and not FLAGS.tune:
    raise UserError('--candidates: empty; name one or more kernels or peers')
  for name in FLAGS.candidates:
    candidates.check_candidate(name)
  for block in FLAGS.tune_blocks:
    if not candidates.TILES.fullmatch(block):
      raise UserError(f'--tune_blocks: {block!r} is not BQxBK, e.g. 512x512')
  cli.writable_dir(FLAGS.out_dir, '--out_dir')


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
      runners[name] = candidates.torch_runner(causal, pass_, shape)
      row['temp_bytes'] = None
    else:
      compiled, temp = candidates.compile_jax(name, causal, pass_, shape)
      row['temp_bytes'] = temp
      if temp > FLAGS.memory_budget_gib * 2**30:
        row['skipped'] = f'compiled temporaries {temp / 2**30:.1f} GiB > budget'
        continue
      runners[name] = functools.partial(lambda c, a: jax.block_until_ready(c(*a)), compiled,
                                        candidates.placed(name, args))
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
    if candidates.is_exact(name):
      forced_causal = causal or name.endswith('+causal')
      row['gflops'] = candidates.dense_flops(shape, forced_causal, pass_) / row['seconds'] / 1e9
  for row in rows.values():
    for peer in ('jax.nn', 'flax.linen', 'torch'):
      if 'seconds' in row and 'seconds' in rows.get(peer, {}):
        row[f'speedup_vs_{peer}'] = rows[peer]['seconds'] / row['seconds']
  return list(rows.values())


def profile_point(length, causal, pass_, names):
  """Per-operation time of each JAX candidate of one point (op_profile.profile)."""
  shape = (FLAGS.batch, length, FLAGS.heads, FLAGS.head_dim)
  args = random_inputs(shape)
  rows = []
  for name in names:
    compiled, _ = candidates.compile_jax(name, causal, pass_, shape)
    report = op_profile.profile(compiled, candidates.placed(name, args), FLAGS.repeats)
    report['ops'] = report['ops'][:FLAGS.profile_top]
    rows.append({'candidate': name, 'length': length, 'causal': causal, 'pass': pass_, **report})
  return rows


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
    candidates.torch_runner(causal == '1', pass_, shape)()
  else:
    compiled, _ = candidates.compile_jax(name, causal == '1', pass_, shape)
    args = candidates.placed(name, [jnp.ones(shape, jnp.float32) for _ in range(3)])
    jax.block_until_ready(compiled(*args))
  # VmHWM, not getrusage: Linux carries ru_maxrss over from the parent across fork+exec.
  with open('/proc/self/status') as f:
    hwm_kib = next(int(line.split()[1]) for line in f if line.startswith('VmHWM:'))
  print(json.dumps({'peak_rss_bytes': hwm_kib * 1024}))


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
  if 'torch' in names and not candidates.have_torch():
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
  text = (kernel_tables.profile_markdown if FLAGS.profile
          else kernel_tables.markdown)(rows, header)
  with open(stem + '.md', 'w') as f:
    f.write(text)
  if not FLAGS.tune and not FLAGS.profile:
    kernel_tables.plot(rows, stem + '.png')
  print(text)


if __name__ == '__main__':
  cli.main(main, config_flag=None)
