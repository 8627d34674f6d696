"""What train.py, eval.py and the scripts share: flag parsing that reports bad input in
one line, and the persistent compilation cache."""

from __future__ import annotations

import importlib.util
import os
import sys

from attention import UserError

DEFAULT_CACHE = os.path.join(os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache')),
                             'attention', 'jax')
DEFAULT_CONFIG = 'configs/default.py'


def enable_compilation_cache(path: str | None = None) -> None:
  """JAX's persistent compilation cache: a second run of the same shapes skips XLA
  compilation (most of a short CPU run's start-up)."""
  import jax
  path = path or os.environ.get('ATTENTION_COMPILATION_CACHE', DEFAULT_CACHE)
  if path.lower() in ('', 'none', 'off'):
    return
  os.makedirs(path, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def _flag_value(argv, name):
  for i, arg in enumerate(argv):
    if arg.startswith(f'--{name}='):
      return arg.split('=', 1)[1]
    if arg == f'--{name}' and i + 1 < len(argv):
      return argv[i + 1]
  return None


def explain_config_error(argv, error: Exception) -> str:
  """One line for a failure while ml_collections loads the config and applies overrides."""
  spec = _flag_value(argv, 'config') or DEFAULT_CONFIG
  path, _, arg = spec.partition(':')
  if not os.path.isfile(path):
    return f'--config={spec}: no such config file {path!r}'
  try:
    module_spec = importlib.util.spec_from_file_location('_config_for_errors', path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
  except Exception as e:  # noqa: BLE001 - whatever the config file raises is the user's error
    return f'--config={spec}: {e}'
  for item in argv:
    if not item.startswith('--config.'):
      continue
    field = item[len('--config.'):].split('=', 1)[0]
    node, walked = config, []
    for part in field.split('.'):
      if not hasattr(node, 'keys') or part not in node.keys():
        where = 'config' + ''.join(f'.{w}' for w in walked)
        allowed = ', '.join(sorted(node.keys())) if hasattr(node, 'keys') else '(not a group)'
        return f'--config.{field}: {where} has no field {part!r}; allowed: {allowed}'
      node = node[part]
      walked.append(part)
  return f'{error}'.splitlines()[0]


def define_config_flag(help_string: str = 'Config file, with an optional :key=value,... string.',
                       default: str = DEFAULT_CONFIG):
  """The --config flag (ml_collections). config_flags reads sys.argv as soon as the flag
  is defined, so a bad --config or --config.x fails here; it gets one line too."""
  from ml_collections import config_flags
  try:
    return config_flags.DEFINE_config_file('config', default, help_string)
  except Exception as e:  # noqa: BLE001 - config files and overrides raise anything
    _fail(explain_config_error(sys.argv, e))


def parse_flags(argv, *, config_flag: str | None = 'config'):
  """Parses absl flags (and loads the config); bad input exits 2 with one line. --help
  prints the command's docstring and its flags (absl's own --help exists only under
  app.run)."""
  from absl import flags
  if any(a in ('--help', '-h', '--helpshort', '--helpfull') for a in argv[1:]):
    doc = sys.modules['__main__'].__doc__ or ''
    print(doc.strip() + '\n\n' + (flags.FLAGS.get_help() if '--helpfull' in argv
                                   else flags.FLAGS.main_module_help()))
    sys.exit(0)
  try:
    rest = flags.FLAGS(argv)
    if config_flag:
      # config_flags defers a loading failure to the first use of the config: use it here.
      flags.FLAGS[config_flag].value.keys()
  except flags.Error as e:
    if config_flag and any(a.startswith(f'--{config_flag}') for a in argv):
      message = explain_config_error(argv, e)
    else:
      message = str(e).splitlines()[0]
    _fail(message)
  except Exception as e:  # noqa: BLE001 - config files and overrides raise anything
    _fail(explain_config_error(argv, e) if config_flag else str(e))
  if len(rest) > 1:
    _fail(f'unexpected arguments {rest[1:]}; flags look like --name=value')
  return rest


def require_positive(*holders) -> None:
  """UserError naming the first integer or float flag (absl FlagHolder) that is not > 0."""
  for holder in holders:
    if holder.value is None or holder.value <= 0:
      raise UserError(f'--{holder.name}: must be positive, got {holder.value}')


def require_subset(holder, allowed) -> None:
  """UserError naming a list flag's first value outside `allowed`."""
  bad = [v for v in holder.value if v not in allowed]
  if bad:
    raise UserError(f'--{holder.name}: {bad[0]!r} is not one of {", ".join(allowed)}')


def int_list(holder, minimum: int = 1) -> list[int]:
  """A list flag's values as integers >= minimum, or UserError naming the flag."""
  try:
    values = [int(v) for v in holder.value]
  except ValueError:
    values = []
  if not values or min(values) < minimum:
    raise UserError(f'--{holder.name}: integers >= {minimum}, comma-separated; got '
                    f'{",".join(holder.value) or "nothing"}')
  return values


def check_creatable(path: str, name: str) -> None:
  """UserError naming `name` unless `path` is a directory, or could be made as one, that
  this process can write in. Creates nothing."""
  probe = os.path.abspath(path)
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe):
    raise UserError(f'{name}={path}: cannot be a directory ({probe} is a file)')
  if not os.access(probe, os.W_OK):
    raise UserError(f'{name}={path}: cannot write in {probe}')


def writable_dir(path: str, name: str) -> str:
  """Creates directory `path` (named by flag `name` in errors) unless it exists, or raises
  UserError saying why it cannot be written in."""
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    why = 'not a directory' if os.path.exists(path) else e.strerror
    raise UserError(f'{name}: cannot create {path} ({why})') from None
  if not os.access(path, os.W_OK):
    raise UserError(f'{name}: cannot write in {path}')
  return path


def _fail(message: str):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def main(fn, *, config_flag: str | None = 'config'):
  """The entry point of a command: parse flags, run fn(), report UserError in one line."""
  from absl import logging
  parse_flags(sys.argv, config_flag=config_flag)
  # Orbax and TFDS log every file they touch at INFO; keep the console to the run itself.
  logging.set_verbosity(logging.WARNING)
  try:
    fn()
  except UserError as e:
    _fail(str(e))
  except KeyboardInterrupt:
    print('interrupted', file=sys.stderr)
    sys.exit(130)
