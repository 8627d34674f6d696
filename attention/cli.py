"""What train.py, eval.py and the scripts share: absl.app.run with a flags parser that
reports bad input in one line (exit 2), validators that name the flag and what it allows,
and the persistent compilation cache."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
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
  from absl import flags
  from ml_collections import config_flags
  try:
    holder = config_flags.DEFINE_config_file('config', default, help_string)
  except Exception as e:  # noqa: BLE001 - config files and overrides raise anything
    _fail(explain_config_error(sys.argv, e))
  # Defined here, it would count as this module's flag: --help lists the command's own.
  flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[holder.name])
  return holder


def _absl_message(error: Exception) -> str:
  """The one line of a flag error raised by absl: a validator's own message (they start
  with the flag's name, after absl's 'flag --x=value: ' prefix), a required flag's help."""
  from absl import flags
  line = str(error).splitlines()[0]
  required = re.fullmatch(r'flag --(\w+)=None: Flag --\w+ must have a value other than None\.',
                          line)
  if required:
    name = required.group(1)
    what = flags.FLAGS[name].help.rstrip('.')
    return f'--{name} is required ({what[:1].lower()}{what[1:]})'
  ours = re.fullmatch(r'flags? .*?: (--.*)', line)
  return ours.group(1) if ours else line


def parse_flags(argv, *, config_flag: str | None = 'config'):
  """absl.app.run's flags_parser: parses the flags (and loads the config), running their
  validators; bad input exits 2 with one line instead of absl's usage text."""
  from absl import flags
  try:
    rest = flags.FLAGS(argv)
    if config_flag:
      # config_flags defers a loading failure to the first use of the config: use it here.
      flags.FLAGS[config_flag].value.keys()
  except flags.IllegalFlagValueError as e:
    if config_flag and any(a.startswith(f'--{config_flag}') for a in argv) and (
        not re.match(r'flags? .*?: --', str(e))):
      _fail(explain_config_error(argv, e))
    _fail(_absl_message(e))
  except flags.Error as e:
    if config_flag and any(a.startswith(f'--{config_flag}') for a in argv):
      _fail(explain_config_error(argv, e))
    _fail(str(e).splitlines()[0])
  except Exception as e:  # noqa: BLE001 - config files and overrides raise anything
    _fail(explain_config_error(argv, e) if config_flag else str(e))
  if len(rest) > 1:
    _fail(f'unexpected arguments {rest[1:]}; flags look like --name=value')
  return rest


def validate(holder, check) -> None:
  """Registers absl validator `check(value)`, which returns the error's text (after the
  flag's name) or None; absl runs it while parsing, before anything is run or written."""
  from absl import flags

  def validator(value):
    why = check(value)
    if why:
      raise flags.ValidationError(f'--{holder.name}: {why}')
    return True
  flags.register_validator(holder.name, validator)


def positive(*holders) -> None:
  """Each integer or float flag (absl FlagHolder) must be > 0."""
  for holder in holders:
    validate(holder, lambda v: None if v is not None and v > 0 else f'must be positive, got {v}')


def subset_of(holder, allowed) -> None:
  """Every value of a list flag must be one of `allowed`."""
  def check(values):
    bad = [v for v in values or () if v not in allowed]
    return f'{bad[0]!r} is not one of {", ".join(allowed)}' if bad else None
  validate(holder, check)


def integers(holder, minimum: int = 1, allow_empty: bool = False) -> None:
  """A list flag's values must be integers >= minimum (read them with int_values)."""
  def check(values):
    if allow_empty and not values:
      return None
    try:
      ok = bool(values) and min(int(v) for v in values) >= minimum
    except ValueError:
      ok = False
    return None if ok else (f'integers >= {minimum}, comma-separated; got '
                            f'{",".join(values or ()) or "nothing"}')
  validate(holder, check)


def int_values(holder) -> list[int]:
  return [int(v) for v in holder.value]


def validate_together(holders, check) -> None:
  """absl multi-flag validator: `check({name: value})` returns the error's whole text (it
  names the flags) or None."""
  from absl import flags

  def validator(values):
    why = check(values)
    if why:
      raise flags.ValidationError(why)
    return True
  flags.register_multi_flags_validator([h.name for h in holders], validator)


def require_one_of(holders, why: str) -> None:
  """At least one of the flags must be set (not None, not False), else error `why`, e.g.
  '--workdir is required (...)'."""
  validate_together(holders, lambda values: None if any(
      v not in (None, False) for v in values.values()) else why)


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
  """The entry point of a command: absl.app.run with parse_flags, then fn() with UserError
  reported in one line (exit 2) and Ctrl-C as exit 130."""
  import signal

  from absl import app

  # SIGINT is Ctrl-C even where the command was started with it ignored (a script's
  # background job, whose children inherit SIG_IGN and Python then installs no handler):
  # a sweep must stop with its runs, which handle SIGINT themselves (preemption.py).
  signal.signal(signal.SIGINT, signal.default_int_handler)

  def run(argv):
    del argv   # parse_flags refused any argument that is not a flag
    from absl import logging
    # Orbax and TFDS log every file they touch at INFO; keep the console to the run itself.
    logging.set_verbosity(logging.WARNING)
    try:
      fn()
    except UserError as e:
      _fail(str(e))
    except KeyboardInterrupt:
      print('interrupted', file=sys.stderr)
      sys.exit(130)

  app.run(run, flags_parser=functools.partial(parse_flags, config_flag=config_flag))
