"""A kernel at another git revision against the working tree's, timed in one process.

  python scripts/ab_kernel.py --rev=faee08f --kernel=flash --lengths=4096 --repeats=5
  python scripts/ab_kernel.py --rev=81839eb~1 --against=81839eb   # one commit's effect

Before an optimization, write down what should move and by how much; after it, this
measures it. The kernel's module at REV (`git show REV:attention/kernels/<module>.py`) is
loaded beside today's, both are compiled, and they are timed in alternation (old then
new, then new then old, ...), so that both see the same machine load; the median of
--repeats rounds is reported, with the speed-up old time / new time. --against=REV2 takes the new side from REV2
instead of the working tree. Loaded modules import today's attention.kernels.common, so a
change there is on both sides.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from attention import cli, kernels  # noqa: E402
from attention import UserError  # noqa: E402
from attention.bench import machine  # noqa: E402

_REV = flags.DEFINE_string('rev', None, 'The git revision to compare with (a commit, tag, HEAD~1).')
_AGAINST = flags.DEFINE_string('against', None,
                               'The new side: this revision (default: the working tree).')
_KERNEL = flags.DEFINE_string('kernel', 'flash', 'A name from attention.kernels.names().')
_LENGTHS = flags.DEFINE_list('lengths', ['4096'], 'Sequence lengths (q = kv).')
_CAUSAL = flags.DEFINE_list('causal', ['false', 'true'], 'Causal settings: false, true.')
_PASSES = flags.DEFINE_list('passes', ['fwd', 'fwd_bwd'], 'fwd and/or fwd_bwd.')
_BATCH = flags.DEFINE_integer('batch', 1, 'Batch size.')
_HEADS = flags.DEFINE_integer('heads', 8, 'Heads.')
_HEAD_DIM = flags.DEFINE_integer('head_dim', 64, 'Head size.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed rounds per point (median reported).')
_JSON = flags.DEFINE_string('json', None, 'Also write the rows here.')
flags.mark_flag_as_required('rev')


cli.subset_of(_CAUSAL, ('false', 'true'))
cli.subset_of(_PASSES, ('fwd', 'fwd_bwd'))
cli.integers(_LENGTHS)
cli.positive(_REPEATS)


def load_at_revision(rev: str, kernel: str):
  """The public function of `kernel` as its module was at `rev`."""
  fn = kernels.get(kernel)
  path = fn.__module__.replace('.', '/') + '.py'
  show = subprocess.run(['git', 'show', f'{rev}:{path}'], cwd=ROOT, capture_output=True,
                        text=True, check=False)
  if show.returncode:
    raise UserError(f'--rev/--against: git show {rev}:{path} failed: '
                         f'{show.stderr.strip().splitlines()[-1] if show.stderr else "no output"}')
  name = f'{fn.__module__}_at_{rev}'.replace('~', '_').replace('^', '_').replace('.', '_')
  spec = importlib.util.spec_from_loader(name, loader=None)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module   # dataclasses look their module up while the code runs
  exec(compile(show.stdout, f'{rev}:{path}', 'exec'), module.__dict__)  # pylint: disable=exec-used
  if not hasattr(module, fn.__name__):
    raise UserError(f'--rev/--against: {path} at {rev} has no {fn.__name__}')
  return getattr(module, fn.__name__)


def resolve(rev: str) -> str:
  out = subprocess.run(['git', 'rev-parse', rev], cwd=ROOT, capture_output=True, text=True,
                       check=False)
  return out.stdout.strip() or rev


def working_tree() -> str:
  """HEAD's commit, marked when the kernels differ from it in the working tree."""
  dirty = subprocess.run(['git', 'status', '--porcelain', '--', 'attention/kernels'], cwd=ROOT,
                         capture_output=True, text=True, check=False).stdout.strip()
  return resolve('HEAD') + (' + uncommitted changes to attention/kernels' if dirty else '')


def compiled_call(fn, causal, pass_, args):
  attention_fn = functools.partial(fn, is_causal=causal)
  if pass_ == 'fwd_bwd':
    target = jax.grad(lambda q, k, v: jnp.sum(attention_fn(q, k, v)), argnums=(0, 1, 2))
  else:
    target = attention_fn
  compiled = jax.jit(target).lower(*args).compile()
  return lambda: jax.block_until_ready(compiled(*args))


def main():
  if _KERNEL.value not in kernels.names():
    raise UserError(f'--kernel: unknown {_KERNEL.value!r}; allowed: '
                         f'{", ".join(kernels.names())}')
  lengths = cli.int_values(_LENGTHS)
  old_fn = load_at_revision(_REV.value, _KERNEL.value)
  new_fn = (load_at_revision(_AGAINST.value, _KERNEL.value) if _AGAINST.value
            else kernels.get(_KERNEL.value))
  new_name = _AGAINST.value or 'working tree'
  commits = {'rev_commit': resolve(_REV.value),
             'against_commit': resolve(_AGAINST.value) if _AGAINST.value else working_tree()}
  rows = []
  for pass_ in _PASSES.value:
    for causal in (c == 'true' for c in _CAUSAL.value):
      for length in lengths:
        shape = (_BATCH.value, length, _HEADS.value, _HEAD_DIM.value)
        rng = np.random.default_rng(0)
        args = [jnp.asarray(rng.normal(size=shape), jnp.float32) for _ in range(3)]
        runs = {'old': compiled_call(old_fn, causal, pass_, args),
                'new': compiled_call(new_fn, causal, pass_, args)}
        times = {side: [] for side in runs}
        for run in runs.values():   # warm-up
          run()
        for round_ in range(_REPEATS.value):
          for side in ('old', 'new') if round_ % 2 == 0 else ('new', 'old'):
            start = time.perf_counter()
            runs[side]()
            times[side].append(time.perf_counter() - start)
        row = {'kernel': _KERNEL.value, 'rev': _REV.value, 'against': new_name, **commits,
               'pass': pass_, 'causal': causal,
               'length': length, **{f'{side}_ms': statistics.median(t) * 1e3
                                    for side, t in times.items()}}
        row['speedup'] = row['old_ms'] / row['new_ms']
        rows.append(row)
        print(f"{pass_:7s} {'causal' if causal else 'full':6s} {length:6d}: "
              f"{_REV.value} {row['old_ms']:9.1f} ms, {new_name} {row['new_ms']:9.1f} ms, "
              f"speed-up (old time / new time) {row['speedup']:.2f}x", flush=True)
  if _JSON.value:
    command = 'python ' + ' '.join([os.path.relpath(__file__, ROOT)] + sys.argv[1:])
    with open(_JSON.value, 'w') as f:
      json.dump({'machine': machine.describe(), 'command': command, 'rows': rows}, f, indent=1)


if __name__ == '__main__':
  cli.main(main, config_flag=None)
