"""Config strings, presets and the field checks behind train.py's error messages."""

import glob
import json
import os
import re

import pytest

from attention import UserError
from attention.training import config_check
from configs import default, models


@pytest.mark.parametrize('task', default.TASKS)
@pytest.mark.parametrize('preset', sorted(models.PRESETS))
def test_every_task_and_preset_is_valid(task, preset):
  config = default.get_config(f'task={task},model={preset}')
  assert config.model.preset == preset
  config_check.validate(config)
  if task in default.LONG_RANGE:   # named with its length; one sequence per row
    assert config.task == f'{task}_{default.DEFAULT_LENGTH}' and not config.data.pack
  else:
    assert config.task == task and config.data.pack == (config.model.name != 'lstm')


def test_defaults_are_the_papers_optimizer_and_a_1x1_mesh():
  config = default.get_config()
  assert (config.task, config.model.preset) == ('lang', 'mini')
  assert (config.train.b1, config.train.b2, config.train.eps) == (0.9, 0.98, 1e-9)
  assert config.train.schedule == 'rsqrt'   # the paper's warm-up then inverse square root
  assert config_check.mesh_shape(config.mesh, 1) == (1, 1)
  assert config_check.mesh_shape(config.mesh, 8) == (8, 1)


@pytest.mark.parametrize('arg,words', [
    ('task', 'task'), ('task=lang,model', 'model'), ('size=big', 'size'),
    ('task=french', 'french')])
def test_bad_config_strings(arg, words):
  with pytest.raises(ValueError, match=words):
    default.get_config(arg)


# Every field config_check looks at alone: a value it must refuse and, for a bound, the
# value on the allowed side of it (None: no bound to hold), so an off-by-one or a missing
# check fails here.
FIELD_CASES = [
    ('seed', -1, 0), ('task', '', 'lang'), ('data.data_dir', '', 'data'),
    ('data.max_length', 1, 2), ('data.bucket_boundaries', (), (8,)),
    ('data.bucket_boundaries', (8, 0), None), ('data.pack', 'yes', False),
    ('data.shuffle_seed', -1, 0), ('data.num_workers', -1, 0), ('data.num_shards', -1, 0),
    ('data.tokenizer', 'bpe', None), ('data.vocab_size', 4, 5), ('model.name', 'gru', None),
    ('model.num_layers', 0, 1), ('model.d_model', 0, None), ('model.d_ff', 0, 1),
    ('model.num_heads', 0, 1), ('model.d_k', -1, 0), ('model.d_v', -1, 0),
    ('model.num_kv_heads', -1, 0), ('model.dropout_rate', 1.0, 0.0),
    ('model.dropout_rate', -0.1, 0.99), ('model.attention_dropout_rate', -0.1, 0.0),
    ('model.positional', 'absolute', None), ('model.norm', 'middle', 'post'),
    ('model.kernel', 'nope', None), ('model.local_window', 0, 1), ('model.linear_chunk', 0, 1),
    ('model.activation', 'tanh', 'gelu'), ('model.rnn_attention', 'dot', 'luong'),
    ('model.max_length', 0, None), ('model.vocab_size', -1, 0), ('model.dtype', 'float8', None),
    ('model.param_dtype', 'int8', 'bfloat16'), ('train.num_steps', 0, 1),
    ('train.batch_size', 0, 1), ('train.learning_rate', -1e-3, 0.0),
    ('train.schedule', 'linear', 'cosine'), ('train.warmup_steps', -1, 0),
    ('train.label_smoothing', 1.0, 0.0), ('train.weight_decay', -0.1, 0.0),
    ('train.grad_clip', -1.0, 0.0), ('train.b1', 1.0, 0.0), ('train.b2', 1.0, 0.0),
    ('train.eps', -1e-9, 0.0), ('train.log_every_steps', 0, 1), ('eval.every_steps', 0, 1),
    ('eval.num_examples', -1, 0), ('eval.test_examples', -1, 0), ('eval.batch_size', 0, 1),
    ('eval.beam_size', 0, 1), ('eval.alpha', -0.6, 0.0), ('eval.max_decode_length', -1, 0),
    ('eval.extra_splits', ('',), ()), ('eval.extra_splits', 'test_long', None),
    ('checkpoint.every_steps', 0, 1), ('checkpoint.keep', 0, 1), ('mesh.data', 0, -1),
    ('mesh.data', -2, None), ('mesh.model', 0, 1), ('mesh.fsdp', 1, True),
]


def _with(field, value):
  """The default config with one field set, types unchecked (a config file or a saved
  config.json can hold any type; --config.X flags are type-checked before this)."""
  import ml_collections
  config = ml_collections.ConfigDict(default.get_config().to_dict(), type_safe=False)
  group, name = field.split('.') if '.' in field else (None, field)
  (config[group] if group else config)[name] = value
  return config


def test_every_field_check_has_a_case():
  checked = {field for field, _, _ in config_check.field_checks()}
  assert checked == {field for field, _, _ in FIELD_CASES}


@pytest.mark.parametrize('field,bad,boundary', FIELD_CASES,
                         ids=[f'{f}={b!r}' for f, b, _ in FIELD_CASES])
def test_field_checks_name_the_field(field, bad, boundary):
  allowed = next(a for f, _, a in config_check.field_checks() if f == field)
  with pytest.raises(UserError) as e:
    config_check.validate(_with(field, bad))
  assert str(e.value) == f'config.{field}={bad!r}: allowed: {allowed}'
  if boundary is not None:   # the allowed side passes this field's check (others may object)
    try:
      config_check.validate(_with(field, boundary))
    except UserError as other:
      assert not str(other).startswith(f'config.{field}='), other


def test_mesh_must_fit_the_devices():
  config = default.get_config()
  config.mesh.data, config.mesh.model = 4, 2
  assert config_check.mesh_shape(config.mesh, 8) == (4, 2)
  with pytest.raises(UserError, match='8 available'):
    config.mesh.data = 3
    config_check.mesh_shape(config.mesh, 8)


def test_resume_compatibility_allows_only_run_length_and_evaluation_changes():
  a = default.get_config().to_dict()
  b = default.get_config().to_dict()
  b['train']['num_steps'] = 10 * a['train']['num_steps']
  b['eval']['beam_size'] = 1
  assert config_check.incompatible_fields(a, b) == []
  b['model']['d_model'] = 2 * a['model']['d_model']
  b['train']['learning_rate'] = 0.5
  diff = config_check.incompatible_fields(a, b)
  assert [d.split(':')[0] for d in diff] == ['model.d_model', 'train.learning_rate']


def test_task_defaults_come_with_the_config_string():
  lang, copy, reverse = (default.get_config(f'task={t},model=tiny') for t in ('lang', 'copy', 'reverse'))
  assert (lang.model.positional, lang.model.dropout_rate, lang.train.schedule) == ('rope', 0.1, 'rsqrt')
  assert copy.model.positional == reverse.model.positional == 'sinusoidal'
  for config in (copy, reverse):
    assert (config.model.dropout_rate, config.train.schedule, config.eval.beam_size) == (0.0, 'cosine', 1)
    assert config.eval.every_steps == config.checkpoint.every_steps == config.train.num_steps
    config_check.validate(config)
  # The paper's presets keep the paper's positions.
  assert default.get_config('model=base').model.positional == 'sinusoidal'


@pytest.mark.parametrize('schedule, warns', [('cosine', True), ('rsqrt', False)])
def test_extending_a_cosine_run_warns_that_the_decay_jumps(tmp_path, monkeypatch, schedule,
                                                           warns):
  from attention.training import run_dir
  saved = default.get_config('task=copy,model=tiny')
  saved.train.schedule = schedule
  run_dir.save_config(str(tmp_path), saved)
  longer = default.get_config('task=copy,model=tiny')
  longer.train.schedule = schedule
  longer.train.num_steps = 2 * saved.train.num_steps
  messages = []
  monkeypatch.setattr(run_dir.logging, 'warning', lambda msg, *args: messages.append(msg % args))
  run_dir.check_compatible(str(tmp_path), longer)    # allowed either way
  run_dir.check_compatible(str(tmp_path), saved)     # same length: never a warning
  assert len(messages) == int(warns), messages
  if warns:
    assert 'train.num_steps changed from 300 to 600' in messages[0] and 'cosine' in messages[0]


def test_the_default_configs_docstring_quotes_the_recorded_results():
  """configs/default.py's results are the recorded runs' (results/train_<job>/, every kind
  of machine they were recorded on), to 2 decimals."""
  import configs.default
  doc = configs.default.__doc__
  results = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         'results')
  quoted = {
      ('default', 'test'): r'make train .*?: test BLEU ([\d.]+), exact match ([\d.]+)%',
      ('default', 'test_long'): r'test_long BLEU ([\d.]+), exact match ([\d.]+)%',
      ('copy_tiny', 'test'): r'task=copy,model=tiny: test BLEU ([\d.]+), exact match ([\d.]+)%',
      ('reverse_tiny', 'test'): r'task=reverse,model=tiny: test BLEU ([\d.]+), exact match '
                                r'([\d.]+)%',
  }
  for (job, split), pattern in quoted.items():
    match = re.search(pattern, doc, flags=re.S)
    assert match, (job, split, 'not quoted')
    paths = glob.glob(os.path.join(results, f'train_{job}', '*', f'{split}.json'))
    assert paths, (job, split, 'not recorded')
    for path in paths:
      with open(path) as f:
        recorded = json.load(f)
      assert (match.group(1), match.group(2)) == (f'{recorded["bleu"]:.2f}',
                                                  f'{recorded["exact_match"]:.2f}'), path
