"""The benchmark and training jobs of reproduce.py and the claims they check: what is
re-measured, where it is recorded, which number of README or BENCHMARKS it backs, and how
close a re-measurement must come. Data only; the machinery is runner.py and compare.py."""

from __future__ import annotations


from reproducing import interpret, studies
from reproducing.spec import PY, Claim, Job, field, length_row, load, ratio, recordings, row


def _bench(out_dir, *args):
  return (PY, 'scripts/bench_attention.py', *args, f'--out_dir={out_dir}')


JOBS = [
    # Its ratios are also rows of the full table, which its claims fall back on where this
    # job has no recording from the machine's kind (its own is from the Zen 3, AVX2, host).
    Job('kernels_quick', (_bench('{out}', '--lengths=1024', '--causal=false,true',
                                 '--candidates=flash,jax.nn', '--repeats=7', '--rss_lengths='),),
        {'bench.json': 'bench.json'}, minutes=1.5, quick=True),
    Job('kernels_memory', (_bench('{out}', '--lengths=16384', '--causal=false', '--passes=fwd_bwd',
                                  '--candidates=flash,reference,local,linear', '--rss_lengths=',
                                  '--memory_budget_gib=0'),),
        {'bench.json': 'bench.json'}, minutes=1.5, quick=True),
    Job('kernels_targets', (_bench('{out}', '--lengths=4096', '--causal=false',
                                   '--candidates=flash,flash+causal,jax.nn,torch', '--repeats=7',
                                   '--rss_lengths='),),
        {'bench.json': 'bench.json'}, minutes=4, needs=('torch',)),
    Job('kernels_rss', (_bench('{out}', '--lengths=16384', '--causal=false', '--passes=fwd_bwd',
                               '--candidates=flash,local,linear,torch', '--repeats=1',
                               '--max_seconds=120'),),
        {'bench.json': 'bench.json'}, minutes=8, needs=('torch',)),
    Job('kernels_growth', (_bench('{out}', '--lengths=4096,16384', '--candidates=local,linear',
                                  '--repeats=7', '--rss_lengths='),),
        {'bench.json': 'bench.json'}, minutes=3),
    # Heads split over two forced host devices (attention/kernels/head_parallel.py).
    Job('kernels_heads', (_bench('{out}', '--lengths=4096', '--causal=false,true',
                                 '--candidates=flash,flash@heads,flash:256x256@heads,jax.nn,'
                                 'jax.nn@heads,torch',
                                 '--repeats=5', '--rss_lengths='),),
        {'bench.json': 'bench.json'}, minutes=6, needs=('torch',),
        env=(('XLA_FLAGS', '--xla_force_host_platform_device_count=2'),)),
    # Flash's and jax.nn's time split over XLA's operations (bench_attention.py --profile).
    Job('kernels_profile', (_bench('{out}', '--profile', '--lengths=4096', '--causal=false,true',
                                   '--candidates=flash,jax.nn', '--repeats=3'),),
        {'profile.json': 'profile.json'}, minutes=3),
    Job('kernels_full', (_bench('{out}', '--repeats=5'),),
        {f'bench.{ext}': f'bench.{ext}' for ext in ('json', 'md', 'png')},
        minutes=20, needs=('torch',)),
    Job('kernels_tune', (_bench('{out}', '--tune', '--lengths=4096', '--causal=false,true',
                                '--repeats=5', '--passes=fwd,fwd_bwd'),),
        {'tune.json': 'tune.json'}, minutes=8),
    Job('model_meshes', ((PY, 'scripts/bench_model.py', '--config=configs/default.py:model=small',
                          '--config.model.positional=sinusoidal', '--meshes=1x1,8x1,4x2',
                          '--skip=greedy,uncached,beam', '--batch=64', '--length=32',
                          '--repeats=10', '--json'),),
        {'bench_model.json': 'bench_model.json'}, minutes=6,
        env=(('XLA_FLAGS', '--xla_force_host_platform_device_count=8'),),
        stdout='bench_model.json'),
    # The train step of the long preset against length, each kernel (bench_model --lengths).
    Job('model_lengths', ((PY, 'scripts/bench_model.py',
                           '--config=configs/default.py:task=recall,model=long',
                           '--lengths=256,1024,4096,16384',
                           '--kernels=reference,flash,local,linear', '--target_length=5',
                           '--repeats=5', '--out_dir={out}'),),
        {f'lengths.{ext}': f'lengths.{ext}' for ext in ('json', 'md', 'png')}, minutes=6.5),
    # Needs PyPI once: the Flax WMT example comes from the installed flax's sdist.
    Job('model_vs_flax_wmt', ((PY, 'scripts/bench_flax_wmt.py',
                               '--config=configs/default.py:model=small',
                               '--config.model.positional=sinusoidal', '--flax_wmt={out}/flax_wmt',
                               '--fetch', '--json={out}/bench.json'),),
        {'bench.json': 'bench.json'}, minutes=8),
    Job('sweep_use', ((PY, 'scripts/bench_sweep.py', '--workdir={out}/scratch',
                       '--json={out}/bench.json'),),
        {'bench.json': 'bench.json'}, minutes=9),
]

FULL, TARGETS = 'kernels_full/bench.json', 'kernels_targets/bench.json'
WALL_TIMES = 'wall_times.json'
GROWTH, HEADS = 'kernels_growth/bench.json', 'kernels_heads/bench.json'
RSS, MESHES = 'kernels_rss/bench.json', 'model_meshes/bench_model.json'
FLAX_WMT = 'model_vs_flax_wmt/bench.json'
SWEEP = 'sweep_use/bench.json'
LENGTHS = 'model_lengths/lengths.json'
PROFILE = 'kernels_profile/profile.json'
# Compiled temporaries only (nothing runs), deterministic for one jax version and kernel.
MEMORY = 'kernels_memory/bench.json'

CLAIMS = [
    # Flash against jax.nn at 1024 in one process: compared with this job's own recording
    # (the same command), else, on a kind of machine it was not recorded on, with the full
    # kernel table's 1024 rows (another command: eight candidates, every length).
    *[Claim(f"flash {pass_} 1024{' causal' if causal else ''}: x vs jax.nn", 'kernels_quick',
            'kernels_quick/bench.json', 'bench.json',
            field(row('flash', 1024, causal, pass_), 'speedup_vs_jax.nn'),
            rel=0.3, where='BENCHMARKS, Full table', same_machine=True, also=(FULL,))
      for causal in (False, True) for pass_ in ('fwd', 'fwd_bwd')],
    # Compiled temporaries at 16384: deterministic for one jax version.
    *[Claim(f'{name} fwd+bwd 16384: XLA temporaries (MiB)', 'kernels_memory', MEMORY, 'bench.json',
            lambda d, n=name: field(row(n, 16384, False, 'fwd_bwd'), 'temp_bytes')(d) / 2**20,
            rel=0.02, where='BENCHMARKS, Peak memory at 16384')
      for name in ('flash', 'reference', 'local', 'linear')],
    Claim('fwd+bwd 16384: reference / flash temporaries', 'kernels_memory', MEMORY, 'bench.json',
          ratio(row('flash', 16384, False, 'fwd_bwd'), row('reference', 16384, False, 'fwd_bwd'),
                'temp_bytes'), rel=0.02, where='BENCHMARKS, Targets'),
    # BENCHMARKS "Targets, side by side" (needs PyTorch).
    *[Claim(f'{name} {pass_} 4096: x vs {peer}', 'kernels_targets', TARGETS, 'bench.json',
            field(row(name, 4096, False, pass_), f'speedup_vs_{peer}'), rel=0.25,
            where='BENCHMARKS, Targets', same_machine=True)
      for name in ('flash', 'flash+causal') for pass_ in ('fwd', 'fwd_bwd')
      for peer in ('jax.nn', 'torch')],
    # BENCHMARKS "Heads over devices": flash@heads against flash, jax.nn and PyTorch.
    *[Claim(f"flash@heads {pass_} 4096{' causal' if causal else ''}: x vs {peer}",
            'kernels_heads', HEADS, 'bench.json',
            ratio(row('flash@heads', 4096, causal, pass_), row(peer, 4096, causal, pass_)),
            rel=0.25, where='BENCHMARKS, Heads over devices', same_machine=True)
      for causal in (False, True) for pass_ in ('fwd', 'fwd_bwd')
      for peer in ('flash', 'jax.nn', 'torch')],
    # BENCHMARKS "Local and linear growth": time at 16384 / time at 4096, one run.
    *[Claim(f"{name} {pass_}{' causal' if causal else ''}: time 16384 / 4096", 'kernels_growth',
            GROWTH, 'bench.json', ratio(row(name, 4096, causal, pass_),
                                        row(name, 16384, causal, pass_)),
            rel=0.3, where='BENCHMARKS, Targets', same_machine=True)
      for name in ('local', 'linear') for causal in (False, True) for pass_ in ('fwd', 'fwd_bwd')],
    # BENCHMARKS "Where flash's time goes": shares of one traced run, so ratios of one run.
    *[Claim(f"{name} {pass_} 4096{' causal' if causal else ''}: share of time in products",
            'kernels_profile', PROFILE, 'profile.json',
            lambda d, s=row(name, 4096, causal, pass_): s(d)['categories']['matmul']['share'],
            abs=0.08, where="BENCHMARKS, Where flash's time goes", same_machine=True)
      for name in ('flash', 'jax.nn') for causal in (False, True) for pass_ in ('fwd', 'fwd_bwd')],
    *[Claim(f'{name} fwd+bwd 16384: peak RSS (MiB)', 'kernels_rss', RSS, 'bench.json',
            lambda d, n=name: field(row(n, 16384, False, 'fwd_bwd'), 'peak_rss_bytes')(d) / 2**20,
            rel=0.15, where='BENCHMARKS, Peak memory at 16384')
      for name in ('flash', 'local', 'linear', 'torch')],
    *[Claim(f'model small {mesh} / 1x1 step time (8 forced devices)', 'model_meshes', MESHES,
            'bench_model.json', lambda d, m=mesh: d['meshes'][m] / d['meshes']['1x1'], rel=0.15,
            where='BENCHMARKS, Data parallelism', same_machine=True) for mesh in ('8x1', '4x2')],
    Claim('model small: parameters', 'model_meshes', MESHES, 'bench_model.json',
          lambda d: d['params'], where='BENCHMARKS, Model throughput'),
    *[Claim(f'model small, ours ({kernel}) / Flax WMT example: {what}', 'model_vs_flax_wmt',
            FLAX_WMT, 'bench.json', lambda d, k=kernel, key=key: d['x_vs_flax'][f'ours_{k}'][key],
            rel=0.3, where='BENCHMARKS, Model throughput', same_machine=True)
      for kernel in ('flash', 'xla')
      for what, key in (('train tokens/s', 'train_tokens_per_s'),
                        ('beam sentences/s', 'beam_sentences_per_s'))],
    *[Claim(f'model small, ours ({kernel}): cached / uncached greedy sentences/s',
            'model_vs_flax_wmt', FLAX_WMT, 'bench.json',
            lambda d, k=kernel: d['medians'][f'ours_{k}']['cached_over_uncached'], rel=0.25,
            where='BENCHMARKS, Model throughput', same_machine=True)
      for kernel in ('flash', 'xla')],
    *[Claim(f'model small: parameters, {who}', 'model_vs_flax_wmt', FLAX_WMT, 'bench.json',
            lambda d, w=who: d['params'][w], where='BENCHMARKS, Model throughput')
      for who in ('flax_wmt', 'ours_flash')],
    # BENCHMARKS "The model against length": ratios inside one run, and the growth exponents.
    Claim('long preset, 4096 tokens: reference / flash train step', 'model_lengths', LENGTHS,
          'lengths.json', ratio(length_row('flash', 4096), length_row('reference', 4096),
                                'train_step_s'),
          rel=0.25, where='BENCHMARKS, The model against length', same_machine=True),
    Claim('long preset, 4096 tokens: flash peak RSS (MiB)', 'model_lengths', LENGTHS,
          'lengths.json', lambda d: field(length_row('flash', 4096), 'peak_rss_bytes')(d) / 2**20,
          rel=0.15, where='BENCHMARKS, The model against length', same_machine=True),
    *[Claim(f'long preset, {kernel}: train step 4096 / 1024 tokens', 'model_lengths', LENGTHS,
            'lengths.json', ratio(length_row(kernel, 1024), length_row(kernel, 4096),
                                  'train_step_s'),
            rel=0.3, where='BENCHMARKS, The model against length', same_machine=True)
      for kernel in ('reference', 'flash', 'local', 'linear')],
    *[Claim(f'long preset, {kernel}: exponent of step time per row in length',
            'model_lengths', LENGTHS, 'lengths.json', lambda d, k=kernel: d['exponents'][k],
            abs=0.2, where='BENCHMARKS, The model against length', same_machine=True)
      for kernel in ('reference', 'flash', 'local', 'linear')],
    *[claim
      for launcher in ('local', 'ray')
      for claim in (
          Claim(f'sweep of 4 points, {launcher}: cores kept busy', 'sweep_use', SWEEP,
                'bench.json', lambda d, l=launcher: d['launchers'][l]['cores_busy'], rel=0.15,
                where='BENCHMARKS, Sweeps', same_machine=True),
          Claim(f'sweep of 4 points, {launcher}: re-run / first run wall time', 'sweep_use',
                SWEEP, 'bench.json', lambda d, l=launcher: d['launchers'][l]['rerun_fraction'],
                abs=0.04, where='BENCHMARKS, Sweeps', same_machine=True))],
]

def train_job(name: str, config: str, minutes: float, quick: bool = False, *extra) -> Job:
  """train.py into {out}/run (data prepared once into data/, as `make train` does), with
  the machine it ran on recorded beside its scores."""
  files = {f'run/eval/{split}.json': f'{split}.json'
           for split in ('test', *(['test_long'] if extra else []))}
  files.update({'run/metrics.jsonl': 'metrics.jsonl', 'run/machine.json': 'machine.json'})
  return Job(f'train_{name}', ((PY, 'train.py', f'--config={config}', '--workdir={out}/run',
                                '--record_machine', *extra),), files, minutes=minutes,
             quick=quick, resumes=True)


JOBS += [
    # `make train`: the same command.
    train_job('default', 'configs/default.py', 7, False, "--config.eval.extra_splits=('test_long',)"),
    train_job('copy_tiny', 'configs/default.py:task=copy,model=tiny', 2.5, True),
    train_job('reverse_tiny', 'configs/default.py:task=reverse,model=tiny', 3),
]
JOBS += studies.JOBS + interpret.JOBS


def _last(split, key):
  """The last logged value of a metric in metrics.jsonl."""
  return lambda records: float([r for r in records if r['split'] == split][-1][key])


def _train_claims(name: str, splits: tuple) -> list[Claim]:
  claims = [Claim(f'train {name}: {split} {key}', f'train_{name}', f'train_{name}/{split}.json',
                  f'run/eval/{split}.json', lambda d, k=key: d[k], abs=tol,
                  where='README, Results')
            for split in splits for key, tol in (('bleu', 1.0), ('exact_match', 1.0),
                                                 ('token_accuracy', 0.5))]
  claims.append(Claim(f'train {name}: last validation exact match', f'train_{name}',
                      f'train_{name}/metrics.jsonl', 'run/metrics.jsonl',
                      _last('validation', 'exact_match'), abs=2.0, where='README, Results'))
  claims.append(Claim(f'train {name}: padding fraction', f'train_{name}',
                      f'train_{name}/metrics.jsonl', 'run/metrics.jsonl',
                      _last('train', 'padding_fraction'), abs=0.01, where='BENCHMARKS, make train'))
  return claims


CLAIMS += interpret.CLAIMS
CLAIMS += (_train_claims('default', ('test', 'test_long')) + _train_claims('copy_tiny', ('test',))
           + _train_claims('reverse_tiny', ('test',)))


# Not checked: statements of README/BENCHMARKS that no job makes. Measurements that no job
# makes are not quoted there at all: they are kept, dated, in docs/development_log.md.
UNCHECKED = [
    ('README, Install: the suite on Python 3.10/3.11/3.12', 'a statement that the test suite '
     'passed in fresh venvs, not a measurement: re-run with make install PYTHON=pythonX.Y '
     'VENV=DIR, then DIR/bin/python -m pytest -n 2 tests'),
    ('docs/development_log.md', 'exploratory runs, superseded recordings and an estimate on '
     'paper, kept with their dates and commands; not quoted in README or BENCHMARKS'),
]


def _full_table_claims(results: str) -> list[Claim]:
  """One claim per timed row of the full kernel table: its speed against jax.nn."""
  rows = {(r['candidate'], r['pass'], r['length'], r['causal']): r
          for path in recordings(results, FULL)[::-1] for r in load(path)['rows']}.values()
  return [Claim(f"{r['candidate']} {r['pass']} {r['length']}{' causal' if r['causal'] else ''}"
                ': x vs jax.nn', 'kernels_full', FULL, 'bench.json',
                field(row(r['candidate'], r['length'], r['causal'], r['pass']),
                      'speedup_vs_jax.nn'), rel=0.3, where='BENCHMARKS, Full table', same_machine=True)
          for r in rows if 'speedup_vs_jax.nn' in r and r['candidate'] != 'jax.nn']


def _tune_claims(results: str) -> list[Claim]:
  """Each tile shape against 256x512 (the CPU default until 512x512), timed in one process.
  Rows that only the AVX2 recording has (its forward pass) are claimed from it."""
  default, claims, seen = 'flash:256x512', [], set()
  for path in recordings(results, 'kernels_tune/tune.json'):
    for r in load(path)['rows']:
      key = (r['candidate'], r['causal'], r['pass'])
      if r['candidate'] == default or 'seconds' not in r or key in seen:
        continue
      seen.add(key)
      claims.append(Claim(
          f"tune {r['candidate']} {r['pass']}{' causal' if r['causal'] else ''}: "
          'time / 256x512', 'kernels_tune', 'kernels_tune/tune.json', 'tune.json',
          ratio(row(default, 4096, r['causal'], r['pass']),
                row(r['candidate'], 4096, r['causal'], r['pass'])),
          rel=0.25, where='BENCHMARKS, CPU tile sizes', same_machine=True))
  return claims


def all_claims(results: str) -> list[Claim]:
  """Every claim, those read off the recorded tables in `results` included."""
  return (CLAIMS + _full_table_claims(results) + _tune_claims(results)
          + [c for name in studies.STUDIES for c in studies.claims(name, results)])
