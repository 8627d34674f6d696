"""Config strings, presets and the field checks behind train.py's error messages."""

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
  assert config.task == task and config.model.preset == preset
  config_check.validate(config)
  assert config.data.pack == (config.model.name != 'lstm')


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


@pytest.mark.parametrize('field,value,words', [
    ('model.d_model', 0, '>= 1'),
    ('model.dropout_rate', 1.0, '< 1'),
    ('model.kernel', 'nope', 'flash'),
    ('train.learning_rate', -1.0, 'number'),
    ('eval.num_examples', -1, '>= 0'),
    ('data.bucket_boundaries', (), 'positive'),
])
def test_field_checks_name_the_field(field, value, words):
  config = default.get_config()
  group, name = field.split('.')
  config[group][name] = value
  with pytest.raises(UserError, match=field.replace('.', r'\.')) as e:
    config_check.validate(config)
  assert words in str(e.value)


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
  """configs/default.py's results are the recorded runs' (results/train/), to 2 decimals."""
  import configs.default
  doc = configs.default.__doc__
  results = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         'results', 'train')
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
    with open(os.path.join(results, job, f'{split}.json')) as f:
      recorded = json.load(f)
    assert (match.group(1), match.group(2)) == (f'{recorded["bleu"]:.2f}',
                                                f'{recorded["exact_match"]:.2f}'), (job, split)
