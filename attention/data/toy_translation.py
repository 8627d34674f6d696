"""TFDS builder `toy_translation`: synthetic translation tasks generated locally.

Prepared once into a data directory in the array_record format and read back through
`tfds.data_source` (random access, no TensorFlow):

  builder = toy_translation.ToyTranslation(config='lang', data_dir='data',
                                           file_format='array_record')
  builder.download_and_prepare()
  source = builder.as_data_source(split='train')   # source[i] -> {'source', 'target'} bytes

Configs: `lang` (the synthetic language pair of `grammar.py`), the algorithmic tasks
`copy`, `reverse`, `sort`, `addition`, and the long-range tasks of `long_range.py` at a
source length L in tokens, named TASK_L (`listops_1024`, `recall_256`, `selective_copy_4096`;
`config_for(name)` makes any L): train, validation and test have sources of 0.75 L to L
tokens, test_long of 1.5 L to 2 L. Splits: train, validation, test, and test_long with
examples longer than any in train. Splits never share a source sentence. Nothing is
downloaded; generation is deterministic from the config's seed.

`lang` examples also hold `alignment` (int32 [target words]): the index of the source
word each target word translates, from the grammar (words split on spaces, the final
'.' included), the gold standard that attention's alignments are scored against
(attention.interpret.alignment).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

import numpy as np
import tensorflow_datasets as tfds

from attention.data import algorithmic, grammar, long_range

SPLITS = ('train', 'validation', 'test', 'test_long')


@dataclasses.dataclass
class ToyTranslationConfig(tfds.core.BuilderConfig):
  task: str = 'lang'             # lang | copy | reverse | sort | addition | listops | ...
  seed: int = 0
  num_train: int = 50_000
  num_eval: int = 2_000          # validation, test and test_long each
  min_length: int = 3            # words (lang) or symbols/digits (algorithmic), train..test
  max_length: int = 30
  long_min_length: int = 31      # test_long
  long_max_length: int = 45


# `lang` has its own version: its examples gained the alignment feature (same sentences),
# and the other configs' prepared data stay valid.
LANG_VERSION = '1.1.0'
LANG_RELEASE_NOTES = {'1.0.0': 'Source and target text.',
                      '1.1.0': 'The gold word alignment of every example (`alignment`).'}

BUILDER_CONFIGS = [
    ToyTranslationConfig(
        name='lang', task='lang', description='English-like source, verb-final target with agreement.',
        min_length=3, max_length=30, long_min_length=31, long_max_length=45,
        version=LANG_VERSION, release_notes=LANG_RELEASE_NOTES),
    *[ToyTranslationConfig(name=task, task=task, description=f'Algorithmic task: {task}.', min_length=1,
                           max_length=40, long_min_length=41, long_max_length=60)
      for task in ('copy', 'reverse', 'sort')],
    ToyTranslationConfig(name='addition', task='addition', description='Integer addition, digit by digit.',
                         min_length=1, max_length=40, long_min_length=41, long_max_length=60),
]


LONG_RANGE_LENGTHS = (256, 1024, 4096)
# Long sequences, fewer of them: about 8M source tokens of training data at any length
# (a long-range run on 2 cores sees a few thousand sequences), and 500 per other split.
LONG_RANGE_TRAIN_TOKENS = 2**23
LONG_RANGE_NAME = re.compile(rf'({"|".join(long_range.TASKS)})_([1-9][0-9]*)')


def long_range_config(task: str, length: int) -> ToyTranslationConfig:
  if length < long_range.MIN_LENGTH[task] / 0.75:
    raise ValueError(f'{task}: length must be at least '
                     f'{-(-long_range.MIN_LENGTH[task] * 4 // 3)}, got {length}')
  return ToyTranslationConfig(
      name=f'{task}_{length}', task=task, description=f'Long range: {task}, {length} tokens.',
      num_train=int(np.clip(LONG_RANGE_TRAIN_TOKENS // length, 1000, 20_000)), num_eval=500,
      min_length=-(-3 * length // 4), max_length=length,
      long_min_length=-(-3 * length // 2), long_max_length=2 * length)


BUILDER_CONFIGS += [long_range_config(task, length) for task in long_range.TASKS
                    for length in LONG_RANGE_LENGTHS]


def config_for(name: str) -> ToyTranslationConfig | str:
  """The builder config of a task name: a registered one by name, a long-range TASK_L
  of any length made here."""
  match = LONG_RANGE_NAME.fullmatch(name)
  if match and name not in {c.name for c in BUILDER_CONFIGS}:
    return long_range_config(match.group(1), int(match.group(2)))
  return name


def is_task(name: str) -> bool:
  if name in {c.name for c in BUILDER_CONFIGS}:
    return True
  match = LONG_RANGE_NAME.fullmatch(name)
  try:
    return bool(match) and bool(long_range_config(match.group(1), int(match.group(2))))
  except ValueError:   # too short for the task
    return False


def text_pair_info(builder: tfds.core.GeneratorBasedBuilder, description: str, *,
                   alignment: bool = False):
  """DatasetInfo of a translation dataset of {'source', 'target'} text pairs (and with
  `alignment`, the gold word alignment of each pair)."""
  features = {'source': tfds.features.Text(), 'target': tfds.features.Text()}
  if alignment:
    features['alignment'] = tfds.features.Tensor(shape=(None,), dtype=np.int32)
  return builder.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(features),
      supervised_keys=('source', 'target'),
      description=description)


class ToyTranslation(tfds.core.GeneratorBasedBuilder):
  """Synthetic source/target text pairs."""

  VERSION = tfds.core.Version('1.0.0')
  # Long-range configs are new names: no existing config's examples changed.
  RELEASE_NOTES = {'1.0.0': 'lang, copy, reverse, sort, addition; test_long split; '
                            'listops, recall, selective_copy at any length.'}
  BUILDER_CONFIGS = BUILDER_CONFIGS

  def _info(self) -> tfds.core.DatasetInfo:
    return text_pair_info(self, __doc__, alignment=self.builder_config.task == 'lang')

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    examples = generate_examples(self.builder_config)
    return {split: self._generate_examples(examples[split]) for split in SPLITS}

  def _generate_examples(self, examples):
    for i, example in enumerate(examples):
      yield i, example


def generate_splits(cfg: ToyTranslationConfig) -> dict[str, list[tuple[str, str]]]:
  """All four splits as (source, target) pairs (see generate_examples)."""
  return {split: [(e['source'], e['target']) for e in examples]
          for split, examples in generate_examples(cfg).items()}


def generate_examples(cfg: ToyTranslationConfig) -> dict[str, list[dict]]:
  """All four splits as the builder's examples, deterministic from cfg.seed; no source
  sentence appears twice."""
  seen: set[bytes] = set()   # digests: long-range splits hold gigabytes of text
  sampler = _sampler(cfg)
  rng = np.random.default_rng([cfg.seed, 0x5EED])

  def draw(count, lo, hi):
    out = []
    while len(out) < count:
      example = sampler(rng, lo, hi)
      digest = hashlib.blake2b(example['source'].encode(), digest_size=16).digest()
      if digest not in seen:
        seen.add(digest)
        out.append(example)
    return out

  # Evaluation splits first, so that the training set is what is left after them.
  splits = {'validation': draw(cfg.num_eval, cfg.min_length, cfg.max_length),
            'test': draw(cfg.num_eval, cfg.min_length, cfg.max_length),
            'test_long': draw(cfg.num_eval, cfg.long_min_length, cfg.long_max_length)}
  splits['train'] = draw(cfg.num_train, cfg.min_length, cfg.max_length)
  return splits


def _sampler(cfg: ToyTranslationConfig):
  """(rng, min_length, max_length) -> an example with length in [min, max]."""
  if cfg.task == 'lang':
    lexicon = grammar.Lexicon.generate(cfg.seed)
    short = grammar.Grammar(lexicon, max_clauses=2)
    long = grammar.Grammar(lexicon, max_clauses=4, max_pp_depth=2)

    def sample(rng, lo, hi):
      g = short if hi <= cfg.max_length else long
      while True:
        source, target, alignment = g.aligned_pair(rng)
        # Lengths count words, the final '.' excluded.
        if lo <= len(source.split()) - 1 <= hi:
          return {'source': source, 'target': target,
                  'alignment': np.asarray(alignment, np.int32)}
    return sample

  generate = long_range.sample_pair if cfg.task in long_range.TASKS else algorithmic.sample_pair

  def sample(rng, lo, hi):
    source, target = generate(cfg.task, rng, int(rng.integers(lo, hi + 1)))
    return {'source': source, 'target': target}
  return sample

