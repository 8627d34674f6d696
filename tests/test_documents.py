"""The documents agree with the code: every command they show parses, every import in
their Python resolves, every link leads somewhere, and they speak to users (no issue
numbers or commit hashes as explanations), with a README short enough to read."""

import ast
import os
import re
import shlex
import subprocess
import sys

import pytest

from tests import e2e

TOPIC_PAGES = sorted(f'docs/{p}' for p in os.listdir(os.path.join(e2e.ROOT, 'docs'))
                     if p.endswith('.md') and p != 'development_log.md')
DOCUMENTS = ['README.md', 'BENCHMARKS.md', *TOPIC_PAGES]


def read(name):
  with open(os.path.join(e2e.ROOT, name)) as f:
    return f.read()


def shell_commands(text):
  """`python ...` commands: the lines of ```sh blocks (continuations joined, comments
  cut) and inline code spans."""
  found = []
  for block in re.findall(r'```(?:sh|bash)?\n(.*?)```', text, flags=re.S):
    for line in block.replace('\\\n', ' ').splitlines():
      line = line.split('  #')[0].strip()
      if re.match(r'([A-Z_]+=\S+ )*python ', line):
        found.append(line)
  found += re.findall(r'`((?:[A-Z_]+=\S+ )*python [^`]+)`', text)
  # Placeholders and elisions are for reading, not running.
  return [c for c in dict.fromkeys(found) if not re.search(r'\.\.\.|\[|\$', c)]


COMMANDS = [(doc, c) for doc in DOCUMENTS for c in shell_commands(read(doc))]


def test_the_documents_show_commands():
  assert {doc for doc, _ in COMMANDS} >= {'README.md', 'BENCHMARKS.md', 'docs/training.md'}
  assert len(COMMANDS) > 30


@pytest.mark.parametrize('doc,command', COMMANDS, ids=[f'{d}: {c[:70]}' for d, c in COMMANDS])
def test_every_command_parses(doc, command):
  """absl's --only_check_args: the flags parsed, validated and the config loaded with
  its overrides, then exit 0 before anything runs."""
  argv = shlex.split(command)
  env = e2e.environment()
  while '=' in argv[0]:
    name, value = argv.pop(0).split('=', 1)
    env[name] = value
  assert argv[0] == 'python'
  out = subprocess.run([sys.executable, *argv[1:], '--only_check_args'], cwd=e2e.ROOT,
                       capture_output=True, text=True, env=env, timeout=300)
  assert out.returncode == 0, (doc, command, out.stderr[-2000:])


@pytest.mark.parametrize('doc', DOCUMENTS)
def test_python_in_the_documents_imports_what_exists(doc):
  """Every ```python block compiles, and its imports run (a renamed module or function
  fails here); the README's block is run whole by test_python_api.py."""
  code = [b for b in re.findall(r'```python\n(.*?)```', read(doc), flags=re.S)]
  for block in code:
    tree = ast.parse(block)
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    source = '\n'.join(ast.unparse(n) for n in imports)
    out = subprocess.run([sys.executable, '-c', source], cwd='/', capture_output=True,
                         text=True, env=e2e.environment(), timeout=300)
    assert out.returncode == 0, (doc, source, out.stderr[-2000:])


@pytest.mark.parametrize('doc', DOCUMENTS)
def test_every_link_leads_somewhere(doc):
  base = os.path.dirname(os.path.join(e2e.ROOT, doc))
  missing = []
  for target in re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', read(doc)):
    if not target.startswith(('http://', 'https://')) and not os.path.exists(
        os.path.join(base, target)):
      missing.append(target)
  assert not missing, (doc, missing)


@pytest.mark.parametrize('doc', DOCUMENTS)
def test_the_documents_speak_to_users(doc):
  """No issue numbers or targets, and no commit hashes standing in for a reason; the
  development log, their archive, is linked from the README once."""
  text = read(doc)
  assert not re.search(r'\bissues?\b', text, flags=re.I), re.search(
      r'.{0,60}\bissues?\b.{0,60}', text, flags=re.I).group(0)
  hashes = [h for h in re.findall(r'\b[0-9a-f]{7,40}\b', text) if re.search('[a-f]', h)
            and re.search('[0-9]', h)]
  assert not hashes, (doc, hashes)
  if doc == 'README.md':
    assert text.count('](docs/development_log.md)') == 1


def test_the_readme_is_a_front_page():
  text = read('README.md')
  assert len(text.splitlines()) <= 250
  first_screen = '\n'.join(text.splitlines()[:40])
  assert 'make train' in first_screen and 'make test' in first_screen
  assert '## Results' in text and '## Map' in text and '## From Python' in text
