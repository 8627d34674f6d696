"""The points of a sweep: --sweep/--zip lists and sweep files parsed into override dicts,
each point named, checked as train.py will parse it, and given its train.py command."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.util
import os
import re
import sys

from absl import flags
from ml_collections import config_flags

from attention import UserError, cli
from configs import sweeps

TRAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), 'train.py')


@dataclasses.dataclass
class Point:
  overrides: dict     # swept key -> value
  name: str           # its directory under --workdir
  workdir: str
  command: list[str]


def is_done(point: Point) -> bool:
  return os.path.exists(os.path.join(point.workdir, 'eval', 'test.json'))


def parse_value(text: str):
  """A Python literal, else the text itself (a bare word), as ml_collections reads --config.x."""
  if text in ('true', 'false'):
    return text == 'true'
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def _scan_list(text: str, start: int, flag: str) -> tuple[list[str], int]:
  """The items of the list whose '[' is text[start], split at its top-level commas (not
  those inside tuples or quotes), and the index just past its ']'."""
  items, depth, quote, item_start = [], 0, None, start + 1
  for i in range(start, len(text)):
    c = text[i]
    if quote:
      quote = None if c == quote else quote
    elif c in '\'"':
      quote = c
    elif c in '([{':
      depth += 1
    elif c in ')]}':
      depth -= 1
      if depth == 0:
        items.append(text[item_start:i])
        return [item.strip() for item in items if item.strip()], i + 1
    elif c == ',' and depth == 1:
      items.append(text[item_start:i])
      item_start = i + 1
  raise UserError(f'--{flag}: unclosed list in {text[start:]!r}')


def parse_lists(text: str, flag: str) -> dict[str, list]:
  """'train.learning_rate=[1e-3,3e-3] model.num_layers=[1,2]' -> {key: [values]}."""
  lists, pos = {}, 0
  key_re = re.compile(r'\s*([A-Za-z_][\w.]*)=\[')
  while text[pos:].strip():
    match = key_re.match(text, pos)
    if not match:
      raise UserError(f'--{flag}: expected KEY=[V1,V2,...] at {text[pos:].strip()!r}')
    key = match.group(1)
    items, pos = _scan_list(text, match.end() - 1, flag)
    if key in lists:
      raise UserError(f'--{flag}: {key} is listed twice')
    if not items:
      raise UserError(f'--{flag}: {key} has an empty list')
    lists[key] = [parse_value(item) for item in items]
  return lists


def load_sweep_file(path: str) -> list[dict]:
  """The points of a sweep file: its get_sweep()."""
  if not os.path.isfile(path):
    raise UserError(f'--sweep_file={path}: no such file')
  spec = importlib.util.spec_from_file_location('_sweep_file', path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # noqa: BLE001 - whatever the sweep file raises is the user's error
    raise UserError(f'--sweep_file={path}: {type(e).__name__}: {e}') from None
  if not callable(getattr(module, 'get_sweep', None)):
    raise UserError(f'--sweep_file={path} defines no get_sweep()')
  try:
    points = module.get_sweep()
  except Exception as e:  # noqa: BLE001
    raise UserError(f'--sweep_file={path}: get_sweep(): {type(e).__name__}: {e}') from None
  if not isinstance(points, list) or not all(
      isinstance(p, dict) and all(isinstance(k, str) for k in p) for p in points):
    raise UserError(f'--sweep_file={path}: get_sweep() must return a list of dicts '
                    "{'train.learning_rate': 1e-3, ...}")
  return points


def swept_points(product: str | None, in_step: str | None, sweep_file: str | None) -> list[dict]:
  """--sweep (product) x --zip (in step) x --sweep_file, as a list of override dicts."""
  parts = []
  try:
    if product:
      parts += [sweeps.sweep(k, v) for k, v in parse_lists(product, 'sweep').items()]
    if in_step:
      lists = parse_lists(in_step, 'zip')
      parts.append(sweeps.zip_(*[sweeps.sweep(k, v) for k, v in lists.items()]))
    if sweep_file:
      parts.append(load_sweep_file(sweep_file))
    if not parts:
      raise UserError('nothing to sweep: give --sweep, --zip or --sweep_file')
    points = sweeps.product(*parts)
  except ValueError as e:   # the helpers' mismatched lengths and keys swept twice
    raise UserError(str(e)) from None
  if not points:   # a point with no overrides is fine: the base config, named 'base'
    raise UserError('the sweep has no points (an empty list)')
  return points


def flag_text(value) -> str:
  """How train.py's --config.X flag reads back `value` (ml_collections parses by field type)."""
  return value if isinstance(value, str) else repr(value)


def point_name(overrides: dict) -> str:
  """The point's directory: 'train.learning_rate=0.001,model.num_layers=1', with anything
  but letters, digits and . = , + - replaced by _ so that it is one safe path component;
  'base' for the point that overrides nothing (the base config itself)."""
  if not overrides:
    return 'base'
  text = ','.join(f'{k}={flag_text(v).replace(" ", "")}' for k, v in overrides.items())
  name = re.sub(r'[^\w.=,+-]', '_', text)
  if len(name) > 200:   # file names stop at 255 bytes; the hash keeps long ones distinct
    name = f'{name[:180]}-{hashlib.sha1(text.encode()).hexdigest()[:12]}'
  return name


def check_point(config_args: list[str]) -> None:
  """Parses a point's --config flags as train.py will, so that an unknown key or a value of
  the wrong type stops the sweep before anything runs."""
  argv = ['train.py', *config_args]
  values = flags.FlagValues()
  try:
    config_flags.DEFINE_config_file('config', cli.DEFAULT_CONFIG, flag_values=values,
                                    sys_argv=argv)
    values(argv)
    values['config'].value.keys()   # config_flags defers a loading failure to first use
  except Exception as e:  # noqa: BLE001 - config files and overrides raise anything
    raise UserError(cli.explain_config_error(argv, e)) from None


# A point's key that is not a config field: the config string after the file's ':'
# ('task=recall,length=1024'), for what only the string sets (a task's length).
CONFIG_STRING = 'config'


def point_config(spec: str, overrides: dict) -> str:
  """The --config of a point: the sweep's, or its file with the point's config string."""
  if CONFIG_STRING not in overrides:
    return spec
  return f'{spec.partition(":")[0]}:{overrides[CONFIG_STRING]}'


def make_points(workdir: str, config_flag, swept: list[dict]) -> list[Point]:
  """Every point, checked, with its train.py command: the base config of `config_flag`
  (the sweep's --config, parsed by absl; a point's `config` key replaces its string), its
  fixed --config.X flags, then the swept values."""
  spec = config_flags.get_config_filename(config_flag)
  fixed = config_flags.get_override_values(config_flag)
  fixed_args = [f'--config.{k}={flag_text(v)}' for k, v in fixed.items()]
  points, names = [], {}
  for overrides in swept:
    both = sorted(fixed.keys() & overrides.keys())
    if both:
      raise UserError(f'--config.{both[0]} is both fixed and swept; give it in one place')
    fields = {k: v for k, v in overrides.items() if k != CONFIG_STRING}
    config_args = [f'--config={point_config(spec, overrides)}', *fixed_args,
                   *(f'--config.{k}={flag_text(v)}' for k, v in fields.items())]
    check_point(config_args)
    name = point_name(overrides)
    if name in names:
      raise UserError(f'the point {name} is listed twice' if names[name] == overrides else
                      f'points {names[name]} and {overrides} have one directory name {name!r}')
    names[name] = overrides
    point_dir = os.path.join(workdir, name)
    command = [sys.executable, os.path.relpath(TRAIN), *config_args, '--record_machine',
               f'--workdir={point_dir}']
    points.append(Point(overrides, name, point_dir, command))
  return points
