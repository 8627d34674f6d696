"""The Python API: the README's example run as written from another directory, every
public name of `attention` reachable, presets and load_run refusing what they cannot do."""

import os
import re
import subprocess
import sys

import pytest

from attention import UserError
from tests import e2e
from tests.test_train_eval import tiny_run  # noqa: F401 - the trained run the example loads


def readme_python() -> str:
  text = open(os.path.join(e2e.ROOT, 'README.md')).read()
  blocks = re.findall(r'```python\n(.*?)```', text, flags=re.S)
  assert blocks
  return '\n'.join(blocks)


# What the example's comments promise, checked after it ran.
CHECKS = '''
assert out_BTNH.shape == (2, 128, 4, 32)
assert logits_BTV.shape == (2, 6, 1000)
assert tokens_BT.shape == (2, 12)
texts = run.translate(['the big cat sees a dog .'], beam_size=4)
assert isinstance(texts, list) and len(texts) == 1 and isinstance(texts[0], str), texts
cross = [name for name in maps if name.endswith('cross_attention')]
assert cross and all(maps[n].ndim == 3 for n in maps), sorted(maps)
assert maps[cross[0]].shape[-1] == 8   # 7 words and EOS
print(run.step)
'''


@pytest.mark.slow
def test_readme_python_runs_as_written_from_another_directory(tiny_run, tmp_path):  # noqa: F811
  straight = tiny_run[0]
  (tmp_path / 'runs').mkdir()
  os.symlink(straight, tmp_path / 'runs' / 'default')
  out = subprocess.run([sys.executable, '-c', readme_python() + CHECKS], cwd=tmp_path,
                       capture_output=True, text=True, env=e2e.environment(), timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  best = sorted(os.listdir(straight / 'checkpoints_best'))
  assert out.stdout.split()[-1] in best   # checkpoint='best' restored that step


def test_every_public_name_resolves_and_nothing_else_does():
  code = ('import attention, sys; assert sorted(m for m in sys.modules if m.startswith("attention")) '
          '== ["attention"]; [getattr(attention, n) for n in attention.__all__]; '
          'print(attention.load_run.__module__, attention.Transformer.__name__)\n'
          'try:\n  attention.trainer\nexcept AttributeError as e:\n  print("refused", e)')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       cwd='/', env=e2e.environment(), timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'attention.training.trained Transformer' in out.stdout
  assert "refused module 'attention' has no attribute 'trainer'" in out.stdout


def test_presets_refuse_unknown_fields_and_a_missing_vocabulary():
  import attention
  from flax import nnx
  with pytest.raises(ValueError, match="unknown model field 'd_modle'; allowed: .*d_model"):
    attention.Transformer.from_preset('tiny', vocab_size=10, d_modle=8, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='vocab_size must be given'):
    attention.Transformer.from_preset('tiny', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="preset 'lstm' is not a Transformer"):
    attention.Transformer.from_preset('lstm', vocab_size=10, rngs=nnx.Rngs(0))
  lstm = attention.models.from_preset('lstm', vocab_size=10, d_model=16, rngs=nnx.Rngs(0))
  assert type(lstm).__name__ == 'LSTMSeq2Seq'


def test_load_run_refuses_a_directory_without_a_run(tmp_path):
  import attention
  with pytest.raises(UserError, match='no run there'):
    attention.load_run(str(tmp_path))
