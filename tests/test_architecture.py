"""The import graph of `attention/` against the layers docs/architecture.md writes down."""

import ast
import pathlib
import re
import subprocess
import sys

from tests import e2e

PACKAGE = pathlib.Path(e2e.ROOT) / 'attention'


def allowed_imports() -> dict[str, set[str]]:
  """{package: packages it may import}, from the table at the end of architecture.md."""
  text = (pathlib.Path(e2e.ROOT) / 'docs' / 'architecture.md').read_text()
  table = {}
  for name, deps in re.findall(r'^\| (attention[\w.]*) \| (.*) \|$', text, flags=re.M):
    table[name] = {d.strip() for d in deps.split(',') if d.strip().startswith('attention')}
  return table


def layer_of(module: str, layers) -> str:
  """The longest layer name that `module` is or lies inside."""
  parts = module.split('.')
  for n in range(len(parts), 0, -1):
    if '.'.join(parts[:n]) in layers:
      return '.'.join(parts[:n])
  raise AssertionError(f'{module} belongs to no layer of docs/architecture.md')


def imports_of(path: pathlib.Path) -> set[str]:
  """Every attention.* module a file imports, at the top or inside a function."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names if a.name.split('.')[0] == 'attention'}
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
        node.module.split('.')[0] == 'attention'):
      # `from attention import kernels` imports the subpackage kernels, not attention.
      for alias in node.names:
        sub = f'{node.module}.{alias.name}'
        is_module = (PACKAGE.parent / (sub.replace('.', '/') + '.py')).exists() or (
            PACKAGE.parent / sub.replace('.', '/')).is_dir()
        found.add(sub if is_module else node.module)
  return found


def module_name(path: pathlib.Path) -> str:
  rel = path.relative_to(PACKAGE.parent).with_suffix('')
  parts = rel.parts[:-1] if rel.name == '__init__' else rel.parts
  return '.'.join(parts)


def test_no_module_imports_a_layer_it_may_not():
  layers = allowed_imports()
  assert {'attention', 'attention.kernels', 'attention.models', 'attention.data',
          'attention.evaluation', 'attention.training', 'attention.cli',
          'attention.bench'} <= set(layers)
  wrong = []
  for path in sorted(PACKAGE.rglob('*.py')):
    here = layer_of(module_name(path), layers)
    for imported in imports_of(path):
      there = layer_of(imported, layers)
      if there != here and there not in layers[here]:
        wrong.append(f'{module_name(path)} ({here}) imports {imported} ({there})')
  assert not wrong, '\n'.join(wrong)


def test_the_layers_have_no_cycle():
  layers = allowed_imports()
  def reaches(start, target, seen=()):
    return any(d == target or (d not in seen and reaches(d, target, (*seen, d)))
               for d in layers[start] if d != start)
  assert not [name for name in layers if reaches(name, name)]


def test_the_checker_sees_a_wrong_import(tmp_path):
  """The test above can fail: a kernel importing the models is a violation it names."""
  layers = allowed_imports()
  bad = tmp_path / 'bad.py'
  bad.write_text('def f():\n  from attention.models import layers\n')
  imported = imports_of(bad)
  assert imported == {'attention.models.layers'}
  assert layer_of('attention.models.layers', layers) not in layers['attention.kernels']


def test_import_attention_loads_no_tooling():
  """`import attention` loads the package alone; the library below the entry points
  (training, evaluation) never loads the benchmark tooling or the CLI helpers."""
  code = ('import sys, attention; base = sorted(m for m in sys.modules if m.startswith("attention"));'
          'import attention.training.trainer, attention.evaluation.evaluator, attention.interpret.maps;'
          'print(base); print(sorted(m for m in sys.modules if m.startswith("attention.")))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       cwd=e2e.ROOT, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  base, loaded = (ast.literal_eval(line) for line in out.stdout.strip().splitlines()[-2:])
  assert base == ['attention']
  assert 'attention.training.trainer' in loaded
  assert not [m for m in loaded if m.startswith(('attention.bench', 'attention.cli'))], loaded
  assert 'attention.kernels.head_parallel' not in loaded
