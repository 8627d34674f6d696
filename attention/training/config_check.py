"""Checks every config field before anything runs, so that a mistyped flag costs one
clear line (naming the field and what is allowed) instead of a traceback minutes later."""

from __future__ import annotations

from attention import NUM_SPECIAL, UserError, kernels
from attention.data import tasks
from attention.models import MODELS
from attention.models.layers import ACTIVATIONS, DTYPES
from attention.models.rnn import RNN_ATTENTION
from attention.models.transformer import POSITIONAL_SCHEMES
from attention.training.optimizer import SCHEDULES

# Fields a resumed run may change; any other difference means a different experiment.
RESUMABLE_CHANGES = ('data.data_dir', 'data.num_workers', 'train.num_steps',
                     'train.log_every_steps', 'train.skip_nonfinite', 'eval.', 'checkpoint.',
                     'mesh.')


def _get(config, field):
  node = config
  for part in field.split('.'):
    node = node[part]
  return node


def _require(config, field, ok, allowed):
  try:
    value = _get(config, field)
  except (KeyError, AttributeError):
    raise UserError(f'config.{field} is missing') from None
  try:
    good = ok(value)
  except TypeError:
    good = False
  if not good:
    raise UserError(f'config.{field}={value!r}: allowed: {allowed}')


def _one_of(field, choices):
  return field, lambda v: v in choices, ', '.join(map(str, choices))


def _int(lo, what=None):
  return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo,
          what or f'an integer >= {lo}')


def _real(lo, hi=None, hi_open=True):
  def ok(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < lo:
      return False
    return hi is None or (v < hi if hi_open else v <= hi)
  bound = '' if hi is None else (f' and < {hi}' if hi_open else f' and <= {hi}')
  return ok, f'a number >= {lo}{bound}'


def _task_ok(task):
  return isinstance(task, str) and bool(task) and (
      tasks.is_toy(task) or task.startswith('tsv:') or task[0].isalpha())


def field_checks() -> list[tuple]:
  """(field, ok(value), what is allowed) for every field checked on its own; read at each
  call, since a kernel registered later joins model.kernel's choices."""
  return [
      ('seed', *_int(0)),
      ('task', _task_ok, f'{tasks.TASK_NAMES}, tsv:DIR, or a TFDS dataset name'),
      ('data.data_dir', lambda v: isinstance(v, str) and v, 'a directory path'),
      ('data.max_length', *_int(2)),
      ('data.bucket_boundaries', lambda v: len(v) > 0 and all(
          isinstance(b, int) and b > 0 for b in v), 'a non-empty list of positive integers'),
      ('data.pack', lambda v: isinstance(v, bool), 'True or False'),
      ('data.shuffle_seed', *_int(0)),
      ('data.num_workers', *_int(0)),
      ('data.num_shards', *_int(0, 'an integer >= 0 (0 = one per process)')),
      _one_of('data.tokenizer', tasks.TOKENIZERS),
      ('data.vocab_size', *_int(NUM_SPECIAL + 1)),
      _one_of('model.name', tuple(MODELS)),
      ('model.num_layers', *_int(1)),
      ('model.d_model', *_int(1)),
      ('model.d_ff', *_int(1)),
      ('model.num_heads', *_int(1)),
      ('model.d_k', *_int(0, 'an integer >= 0 (0 = d_model / num_heads)')),
      ('model.d_v', *_int(0, 'an integer >= 0 (0 = d_model / num_heads)')),
      ('model.num_kv_heads', *_int(0, 'an integer >= 0 (0 = num_heads)')),
      ('model.dropout_rate', *_real(0, 1)),
      ('model.attention_dropout_rate', *_real(0, 1)),
      _one_of('model.positional', POSITIONAL_SCHEMES),
      _one_of('model.norm', ('pre', 'post')),
      _one_of('model.kernel', kernels.names()),
      ('model.local_window', *_int(1)),
      ('model.linear_chunk', *_int(1)),
      _one_of('model.activation', tuple(ACTIVATIONS)),
      _one_of('model.rnn_attention', RNN_ATTENTION),
      ('model.max_length', *_int(1)),
      ('model.vocab_size', *_int(0, 'an integer >= 0 (0 = from the data)')),
      _one_of('model.dtype', tuple(DTYPES)),
      _one_of('model.param_dtype', tuple(DTYPES)),
      ('train.num_steps', *_int(1)),
      ('train.batch_size', *_int(1)),
      ('train.learning_rate', *_real(0)),
      _one_of('train.schedule', SCHEDULES),
      ('train.warmup_steps', *_int(0)),
      ('train.label_smoothing', *_real(0, 1)),
      ('train.weight_decay', *_real(0)),
      ('train.grad_clip', *_real(0)),
      ('train.b1', *_real(0, 1)),
      ('train.b2', *_real(0, 1)),
      ('train.eps', *_real(0)),
      ('train.log_every_steps', *_int(1)),
      ('eval.every_steps', *_int(1)),
      ('eval.num_examples', *_int(0, 'an integer >= 0 (0 = the whole split)')),
      ('eval.test_examples', *_int(0, 'an integer >= 0 (0 = the whole split)')),
      ('eval.batch_size', *_int(1)),
      ('eval.beam_size', *_int(1)),
      ('eval.alpha', *_real(0)),
      ('eval.max_decode_length', *_int(0, 'an integer >= 0 (0 = from the source length)')),
      ('eval.extra_splits', lambda v: isinstance(v, tuple) and all(
          isinstance(x, str) and x for x in v), "a tuple of split names, e.g. ('test_long',)"),
      ('checkpoint.every_steps', *_int(1)),
      ('checkpoint.keep', *_int(1)),
      ('mesh.data', lambda v: isinstance(v, int) and (v == -1 or v >= 1),
       '-1 (all remaining devices) or an integer >= 1'),
      ('mesh.model', *_int(1)),
      ('mesh.fsdp', lambda v: isinstance(v, bool), 'True or False'),
  ]


def validate(config) -> None:
  """Raises UserError on the first bad field: each field alone, then how they combine."""
  for field, ok, allowed in field_checks():
    _require(config, field, ok, allowed)

  m = config.model
  if m.name == 'transformer':
    if m.d_k == 0 and m.d_model % m.num_heads:
      raise UserError(f'config.model.num_heads={m.num_heads} must divide model.d_model='
                      f'{m.d_model} when model.d_k=0 (or set model.d_k)')
    kv = m.num_kv_heads or m.num_heads
    if m.num_heads % kv:
      raise UserError(f'config.model.num_kv_heads={m.num_kv_heads} must divide '
                      f'model.num_heads={m.num_heads}')
    if m.positional == 'rope' and (m.d_k or m.d_model // m.num_heads) % 2:
      raise UserError('config.model.positional=rope needs an even head size d_k')
    # What a kernel cannot take fails here, not in the first train step's trace.
    kernel = kernels.spec(m.kernel)
    if not kernel.packing and config.data.pack:
      raise UserError(f'config.model.kernel={m.kernel} has no segment ids, so it cannot read '
                      'packed rows: set data.pack=False, or pick another kernel')
    if not kernel.alibi and m.positional == 'alibi':
      allowed = ', '.join(p for p in POSITIONAL_SCHEMES if p != 'alibi')
      raise UserError(f'config.model.kernel={m.kernel} cannot apply ALiBi biases; allowed '
                      f'model.positional with it: {allowed}')
    if m.attention_dropout_rate > 0 and not kernel.dropout:
      with_dropout = [k for k in kernels.names() if kernels.spec(k).dropout]
      raise UserError(f'config.model.attention_dropout_rate={m.attention_dropout_rate}: '
                      f'kernel {m.kernel} has no attention dropout; allowed: 0, or kernel '
                      f'{" or ".join(with_dropout)}')
  if m.name == 'lstm' and config.data.pack:
    raise UserError('config.data.pack=True: the LSTM (model.name=lstm) reads one sequence '
                    'per row; allowed: False')
  if m.positional == 'learned' and m.max_length < config.data.max_length:
    raise UserError(f'config.model.max_length={m.max_length} is below data.max_length='
                    f'{config.data.max_length}: the learned position table is too short')


def mesh_shape(mesh_cfg, num_devices: int) -> tuple[int, int]:
  """(data, model) sizes; -1 takes the devices that are left."""
  model = mesh_cfg.model
  data = mesh_cfg.data if mesh_cfg.data != -1 else num_devices // model
  if data < 1 or data * model != num_devices:
    raise UserError(f'config.mesh: data={mesh_cfg.data} x model={model} does not fit the '
                    f'{num_devices} available device(s); allowed: data * model = '
                    f'{num_devices} (data=-1 takes what model leaves)')
  return data, model


def incompatible_fields(saved: dict, current: dict, prefix: str = '') -> list[str]:
  """Fields that differ between two config dicts, except those a resume may change."""
  out = []
  for key in sorted(set(saved) | set(current)):
    name = prefix + key
    a, b = saved.get(key), current.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      out += incompatible_fields(a, b, name + '.')
    elif a != b and not any(name == r or (r.endswith('.') and name.startswith(r))
                            for r in RESUMABLE_CHANGES):
      out.append(f'{name}: {a!r} in the run, {b!r} now')
  return out
