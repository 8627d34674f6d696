"""The toy_translation TFDS builder: preparation without TensorFlow, determinism, splits."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from attention.data import algorithmic, grammar, toy_translation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small(name, **kw):
  base = {c.name: c for c in toy_translation.BUILDER_CONFIGS}[name]
  return dataclasses.replace(base, name=f'{name}_small', num_train=400, num_eval=40, **kw)


def test_prepares_and_reads_back_without_tensorflow(tmp_path):
  script = textwrap.dedent(f"""
      import dataclasses, sys
      from attention.data import toy_translation
      base = toy_translation.BUILDER_CONFIGS[0]
      cfg = dataclasses.replace(base, name='lang_small', num_train=300, num_eval=30)
      builder = toy_translation.ToyTranslation(config=cfg, data_dir={str(tmp_path)!r},
                                               file_format='array_record')
      builder.download_and_prepare()
      sizes = {{s: len(builder.as_data_source(split=s)) for s in toy_translation.SPLITS}}
      first = builder.as_data_source(split='train')[0]
      print(sizes['train'], sizes['validation'], sizes['test'], sizes['test_long'])
      print(sorted(first), type(first['source']).__name__)
      # The gold alignment reads back: one source index per target word, a permutation.
      print(sorted(first['alignment'].tolist()) == list(range(len(first['source'].split())))
            == list(range(len(first['target'].split()))))
      print('tensorflow' in sys.modules)
  """)
  out = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  sizes, keys, aligned, tf_loaded = out.stdout.strip().splitlines()[-4:]
  assert sizes.split() == ['300', '30', '30', '30']
  assert keys == "['alignment', 'source', 'target'] bytes"
  assert aligned == 'True'

  assert tf_loaded == 'False'
  # Prepared once: a second builder finds the data and reuses it.
  assert list((tmp_path / 'toy_translation' / 'lang_small').iterdir())


@pytest.mark.parametrize('task', ['lang', 'copy', 'addition'])
def test_generation_is_deterministic_and_splits_are_disjoint(task):
  cfg = small(task)
  first, second = toy_translation.generate_splits(cfg), toy_translation.generate_splits(cfg)
  assert first == second
  other = toy_translation.generate_splits(dataclasses.replace(cfg, seed=1))
  assert other['train'] != first['train']
  sources = {split: {s for s, _ in pairs} for split, pairs in first.items()}
  for a in sources:
    for b in sources:
      if a < b:
        assert not sources[a] & sources[b], f'{a} and {b} share sources'
  assert len(first['train']) == 400 and len(first['test_long']) == 40


def lengths(pairs, task):
  if task == 'addition':
    return [max(len(x.replace(' ', '')) for x in s.split(' + ')) for s, _ in pairs]
  return [len(s.split()) - (1 if task == 'lang' else 0) for s, _ in pairs]


@pytest.mark.parametrize('task', ['lang', 'reverse', 'addition'])
def test_lengths_and_test_long(task):
  cfg = small(task)
  splits = toy_translation.generate_splits(cfg)
  train = lengths(splits['train'], task)
  long = lengths(splits['test_long'], task)
  assert cfg.min_length <= min(train) and max(train) <= cfg.max_length
  assert min(long) > max(train)


def test_algorithmic_targets_are_right():
  rng = np.random.default_rng()
  for _ in range(50):
    n = int(rng.integers(1, 20))
    src, tgt = algorithmic.sample_pair('reverse', rng, n)
    assert tgt.split() == src.split()[::-1]
    src, tgt = algorithmic.sample_pair('sort', rng, n)
    assert tgt.split() == sorted(src.split())
    src, tgt = algorithmic.sample_pair('addition', rng, n)
    a, b = (int(x.replace(' ', '')) for x in src.split(' + '))
    assert int(tgt.replace(' ', '')) == a + b


def test_lang_needs_reordering_and_context():
  """Dictionary translation (each word by its target lemma, in source order) gets fewer
  than half of the test sentences exactly right: the task needs order and agreement."""
  cfg = small('lang')
  lexicon = grammar.Lexicon.generate(cfg.seed)
  test = toy_translation.generate_splits(cfg)['test']
  exact = np.mean([grammar.word_by_word(s, lexicon) == t for s, t in test])
  assert exact < 0.5
  src_words = {w for s, _ in test for w in s.split()}
  tgt_words = {w for _, t in test for w in t.split()}
  assert src_words & tgt_words == {'.'}


def np_(noun, number='singular', determiner='the', adjectives=(), pp=None):
  return grammar.NounPhrase(noun, number, determiner, list(adjectives), pp)


# Hand-checked: source, then for each target word the source word it translates.
HAND_CHECKED = [
    ([grammar.Clause(np_('cat', adjectives=['big']), 'see', np_('dog', 'plural', 'some', ['old']),
                     None)], [],
     'the big cat sees some old dogs .', ['cat', 'big', 'the', 'dogs', 'old', 'some', 'sees', '.']),
    ([grammar.Clause(np_('cat', pp=('on', np_('table', determiner='a'))), 'see',
                     np_('dog', determiner='a'), None)], [],
     'the cat on a table sees a dog .',
     ['table', 'a', 'on', 'cat', 'the', 'dog', 'a', 'sees', '.']),
    ([grammar.Clause(np_('cat'), 'see', np_('dog', determiner='a'), 'quickly'),
      grammar.Clause(np_('bird', 'plural', 'some'), 'follow', np_('king'), None)], ['and'],
     'the cat sees a dog quickly and some birds follow the king .',
     ['cat', 'the', 'dog', 'a', 'quickly', 'sees', 'and', 'birds', 'some', 'king', 'the',
      'follow', '.']),
]


@pytest.mark.parametrize('case', range(len(HAND_CHECKED)))
def test_gold_alignment_of_hand_checked_sentences(case):
  clauses, conjunctions, want_source, want_aligned = HAND_CHECKED[case]
  lexicon = grammar.Lexicon.generate(0)
  g = grammar.Grammar(lexicon)
  source, target, alignment = g.sentence(clauses, conjunctions)
  assert source == want_source
  words = source.split()
  assert [words[i] for i in alignment] == want_aligned
  # The target word at each position is the translation of its aligned source word.
  inverse = {v: k for k, v in lexicon.noun.items()}
  for tgt_word, i in zip(target.split(), alignment):
    if words[i].rstrip('s') in lexicon.noun:
      assert inverse[tgt_word.removesuffix(grammar.NOUN_PLURAL)] == words[i].rstrip('s')


def test_gold_alignment_is_a_permutation_and_sampling_is_unchanged():
  """aligned_pair draws exactly what pair draws (the sentences of prepared data do not
  change), and its alignment is a permutation of the words on both sides."""
  g = grammar.Grammar(grammar.Lexicon.generate(0), max_clauses=4, max_pp_depth=2)
  a, b = np.random.default_rng(1), np.random.default_rng(1)
  for _ in range(200):
    source, target, alignment = g.aligned_pair(a)
    assert g.pair(b) == (source, target)
    assert sorted(alignment) == list(range(len(source.split()))) == list(range(len(target.split())))


def test_verb_agrees_with_a_gender_the_source_does_not_show():
  lexicon = grammar.Lexicon.generate(0)
  by_gender = {}
  for noun in grammar.NOUNS:
    by_gender.setdefault(lexicon.gender[noun], noun)
  assert len(by_gender) == 3
  obj = grammar.NounPhrase('tree', 'plural', 'some', ['big', 'old'],
                           ('near', grammar.NounPhrase('river', 'singular', 'the', [])))
  verbs = set()
  for noun in by_gender.values():
    clause = grammar.Clause(grammar.NounPhrase(noun, 'singular', 'the', []), 'see', obj, None)
    assert clause.source()[2] == 'sees'                 # the same source verb every time
    target = clause.target(lexicon)
    assert target[-1].startswith(lexicon.verb['see'])   # verb-final
    verbs.add(target[-1])
  assert len(verbs) == 3                                # three target forms


def test_runs_started_together_prepare_the_dataset_once(tmp_path):
  """Three processes load one task into an empty data directory at the same time (a
  parallel sweep's first points): all succeed and read the same splits."""
  corpus = tmp_path / 'corpus'
  corpus.mkdir()
  lines = [f'source {i} words\tziel {i} worte' for i in range(300)]
  (corpus / 'train.tsv').write_text('\n'.join(lines[:250]) + '\n')
  (corpus / 'test.tsv').write_text('\n'.join(lines[250:]) + '\n')
  script = textwrap.dedent(f"""
      from attention.data import tasks
      data = tasks.load('tsv:{corpus}', {str(tmp_path / 'data')!r})
      print(sorted((name, len(source)) for name, source in data.sources.items()))
  """)
  procs = [subprocess.Popen([sys.executable, '-c', script], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=ROOT)) for _ in range(3)]
  outputs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-2000:]
  assert {out.strip().splitlines()[-1] for out, _ in outputs} == {"[('test', 50), ('train', 250)]"}
