"""The long-range tasks: exact source lengths, answers checked independently of the
generator, splits at their lengths and disjoint, the config string, and trivial
baselines that must fail (a task they solve would measure nothing)."""

import collections
import dataclasses

import numpy as np
import pytest

from attention.data import long_range, tasks, toy_translation
from configs import default

LENGTHS = (24, 100, 333)


def small(task, length, **kw):
  cfg = toy_translation.long_range_config(task, length)
  return dataclasses.replace(cfg, name=f'{cfg.name}_small', num_train=300, num_eval=60, **kw)


@pytest.mark.parametrize('task', long_range.TASKS)
def test_sources_have_the_asked_length_and_targets_their_fixed_length(task):
  rng = np.random.default_rng()   # fresh inputs each run
  for length in (long_range.MIN_LENGTH[task], *LENGTHS, 2048):
    for _ in range(5):
      source, target = long_range.sample_pair(task, rng, length)
      assert len(source.split()) == length, (task, length)
      assert len(target.split()) == long_range.TARGET_LENGTH[task]
  with pytest.raises(ValueError, match='at least'):
    long_range.sample_pair(task, rng, long_range.MIN_LENGTH[task] - 1)


def test_listops_answers_are_the_value_of_the_expression():
  """Evaluated by a parser that knows nothing of how the tree was built, and on
  hand-written expressions."""
  assert long_range.listops_value('[MAX 2 9 [MIN 4 7 ] 0 ]'.split()) == 9
  assert long_range.listops_value('[MED 5 1 8 3 ]'.split()) == 3    # lower median
  assert long_range.listops_value('[SM 7 8 [MAX 1 4 ] ]'.split()) == 9   # 19 mod 10
  rng = np.random.default_rng()
  depths = []
  for length in (3, 10, 57, 500, 3000):
    for _ in range(10):
      source, target = long_range.sample_pair('listops', rng, length)
      tokens = source.split()
      assert long_range.listops_value(tokens) == int(target)
      depth = max(np.cumsum([(t in long_range.OPERATORS) - (t == ']') for t in tokens]))
      assert depth <= long_range.MAX_DEPTH
      depths.append(depth)
  assert max(depths) >= 3   # nested, not flat lists


def test_recall_values_are_those_paired_with_the_queried_keys():
  rng = np.random.default_rng()
  distances = []
  for length in LENGTHS:
    for _ in range(20):
      source, target = long_range.sample_pair('recall', rng, length)
      tokens = source.split()
      pairs = dict(zip(tokens[0:2 * long_range.NUM_PAIRS:2], tokens[1:2 * long_range.NUM_PAIRS:2]))
      assert len(pairs) == long_range.NUM_PAIRS   # distinct keys
      rest = tokens[2 * long_range.NUM_PAIRS:]
      assert rest[0] == long_range.FILLER
      queries = [(i, t) for i, t in enumerate(rest) if t != long_range.FILLER]
      assert [pairs[k] for _, k in queries] == target.split()
      distances += [2 * long_range.NUM_PAIRS + i - tokens.index(k) for i, k in queries]
  assert max(distances) > 0.9 * max(LENGTHS)   # a query can be as far as the sequence is long


def test_selective_copy_targets_are_the_marked_tokens_in_order():
  rng = np.random.default_rng()
  for length in LENGTHS:
    source, target = long_range.sample_pair('selective_copy', rng, length)
    assert [t for t in source.split() if t != long_range.FILLER] == target.split()
    assert set(target.split()) <= set(long_range.COPY_SYMBOLS)


@pytest.mark.parametrize('task', long_range.TASKS)
def test_splits_at_their_lengths_deterministic_and_disjoint(task):
  cfg = small(task, 64)
  first = toy_translation.generate_splits(cfg)
  assert first == toy_translation.generate_splits(cfg)
  assert first['train'] != toy_translation.generate_splits(dataclasses.replace(cfg, seed=1))['train']
  bounds = {'train': (48, 64), 'validation': (48, 64), 'test': (48, 64), 'test_long': (96, 128)}
  for split, (lo, hi) in bounds.items():
    lengths = [len(s.split()) for s, _ in first[split]]
    assert lo <= min(lengths) and max(lengths) <= hi, (split, min(lengths), max(lengths))
  sources = {split: {s for s, _ in pairs} for split, pairs in first.items()}
  assert sum(map(len, sources.values())) == sum(map(len, first.values()))   # none twice
  assert len(first['train']) == 300 and len(first['test_long']) == 60


def test_task_names_and_the_config_string():
  assert tasks.is_toy('listops_1024') and tasks.is_toy('recall_300') and tasks.is_toy('copy')
  assert not tasks.is_toy('listops') and not tasks.is_toy('listops_0')
  assert not tasks.is_toy('recall_20')   # shorter than its pairs and queries
  assert toy_translation.config_for('listops_1024') == 'listops_1024'   # registered
  made = toy_translation.config_for('selective_copy_300')
  assert (made.min_length, made.max_length, made.long_min_length, made.long_max_length) == (
      225, 300, 450, 600)
  assert tasks.tokenizer_kind('recall_256', 'auto') == 'word'
  config = default.get_config('task=recall,length=512,model=tiny')
  assert config.task == 'recall_512' and not config.data.pack
  assert config.data.max_length == 513 and config.data.bucket_boundaries == (513, 1026)
  assert config.train.batch_size * 512 == default.BATCH_TOKENS
  assert config.eval.max_decode_length == long_range.NUM_QUERIES + 1
  assert default.get_config('task=listops').task == f'listops_{default.DEFAULT_LENGTH}'
  for bad, words in (('task=copy,length=256', 'only with task='),
                     ('task=recall,length=1e3', 'an integer'), ('task=recall,length=16', '>= 32')):
    with pytest.raises(ValueError, match=words):
      default.get_config(bad)


def majority(train, test) -> float:
  """Exact match of always answering the training split's most common target."""
  answer = collections.Counter(t for _, t in train).most_common(1)[0][0]
  return np.mean([t == answer for _, t in test])


def test_trivial_baselines_fail():
  """The most common answer (listops: one digit of ten, LRA's majority baseline), the
  values of the first pairs in order (recall) and the first tokens of the stream
  (selective_copy) all stay far from solving their task."""
  splits = {t: toy_translation.generate_splits(small(t, 128)) for t in long_range.TASKS}
  listops = splits['listops']
  assert majority(listops['train'], listops['test']) < 0.4
  recall = splits['recall']['test']
  first_values = [' '.join(s.split()[1:2 * long_range.NUM_QUERIES:2]) for s, _ in recall]
  assert np.mean([g == t for g, (_, t) in zip(first_values, recall)]) < 0.05
  copy = splits['selective_copy']['test']
  heads = [' '.join(s.split()[:long_range.NUM_MARKED]) for s, _ in copy]
  assert np.mean([g == t for g, (_, t) in zip(heads, copy)]) == 0.0


@pytest.mark.slow
def test_a_sweep_over_lengths_trains_scores_and_reports(tmp_path):
  """sweep.py with the config string swept (`config=[...]`: a long-range task at two
  lengths) runs train.py as on any task: each dataset is prepared at its length, a few
  steps train, test and test_long (twice as long) are scored; long_range_report.py then
  tabulates and plots the sweep against length."""
  import csv
  import json

  from tests import e2e
  study = tmp_path / 'study'
  configs = ','.join(f"'task=recall,length={n},model=tiny'" for n in (48, 64))
  out = e2e.run('scripts/sweep.py', '--config=configs/default.py', f'--workdir={study}',
                f'--sweep=config=[{configs}]', f'--config.data.data_dir={tmp_path / "data"}',
                '--config.train.num_steps=2', '--config.train.log_every_steps=2',
                '--config.eval.num_examples=8', '--config.eval.test_examples=16',
                "--config.eval.extra_splits=('test_long',)", '--parallel=2', timeout=900)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
  for length in (48, 64):
    workdir = study / f'config=task=recall,length={length},model=tiny'
    for split in ('test', 'test_long'):
      record = json.loads((workdir / 'eval' / f'{split}.json').read_text())
      assert record['num_examples'] == 16 and 0 <= record['exact_match'] <= 100, record
    assert (tmp_path / 'data' / 'toy_translation' / f'recall_{length}').is_dir()
    rows = (workdir / 'eval' / 'test_long.tsv').read_text().splitlines()[1:]
    assert all(1.5 * length <= len(r.split('\t')[0].split()) <= 2 * length for r in rows)
  with open(study / 'results.csv', newline='') as f:
    results = list(csv.DictReader(f))
  assert [r['config'] for r in results] == [f'task=recall,length={n},model=tiny' for n in (48, 64)]
  assert all(int(r['peak_rss_mib']) > 100 for r in results), results

  out = e2e.run('scripts/long_range_report.py', f'--study_dir={study}')
  assert out.returncode == 0, out.stderr[-2000:]
  report = (study / 'report.md').read_text()
  table = report.split('### recall')[1].splitlines()
  assert table[2] == '| model | 48 | 64 |', report
  assert table[4].startswith('| Transformer flash | '), report
  assert (study / 'accuracy.png').stat().st_size and (study / 'cost.png').stat().st_size
