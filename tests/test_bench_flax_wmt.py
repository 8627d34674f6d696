"""scripts/bench_flax_wmt.py's bad input: one line naming the flag, a non-zero exit, no
traceback, nothing fetched. (Its timing run needs the Flax example from PyPI, so it runs
in `reproduce.py --only=model_vs_flax_wmt`, not here.)"""

import pytest

from tests import e2e

CASES = [
    ([], '--flax_wmt: required'),
    (['--flax_wmt={empty}', '--config.model.positional=sinusoidal'],
     '--flax_wmt: {empty} has no models.py; pass --fetch'),
    (['--flax_wmt={empty}', '--kernels=flash,nope'], "--kernels: unknown 'nope'; allowed: "),
    (['--flax_wmt={empty}', '--rounds=0'], '--rounds: must be at least 1, got 0'),
    (['--flax_wmt={empty}', '--config.model.positional=rope'],
     "config.model.positional: the Flax example adds sinusoidal positions; got 'rope'"),
    (['--flax_wmt={empty}', '--config.model.positional=sinusoidal', '--config.model.name=lstm'],
     "config.model.name: the Flax example is a Transformer; got 'lstm'"),
]


@pytest.mark.parametrize('args,words', CASES, ids=[' '.join(a) for a, _ in CASES])
def test_bad_flags_get_one_line(tmp_path, args, words):
  empty = tmp_path / 'example'
  empty.mkdir()
  out = e2e.run('scripts/bench_flax_wmt.py', *(a.format(empty=empty) for a in args))
  assert out.returncode != 0
  assert words.format(empty=empty) in out.stderr, out.stderr
  assert 'Traceback' not in out.stderr, out.stderr
  assert list(empty.iterdir()) == []
