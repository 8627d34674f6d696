"""TFDS builder `toy_translation`: synthetic translation tasks generated locally.

Prepared once into a data directory in the array_record format and read back through
`tfds.data_source` (random access, no TensorFlow):

  builder = toy_translation.ToyTranslation(config='lang', data_dir='data',
                                           file_format='array_record')
  builder.download_and_prepare()
  source = builder.as_data_source(split='train')   # source[i] -> {'source', 'target'} bytes

Configs: `lang` (the synthetic language pair of `grammar.py`) and the algorithmic tasks
`copy`, `reverse`, `sort`, `addition`. Splits: train, validation, test, and test_long
with examples longer than any in train. Splits never share a source sentence.
Nothing is downloaded; generation is deterministic from the config's seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from attention.data import algorithmic, grammar

SPLITS = ('train', 'validation', 'test', 'test_long')


@dataclasses.dataclass
class ToyTranslationConfig(tfds.core.BuilderConfig):
  task: str = 'lang'             # lang | copy | reverse | sort | addition
  seed: int = 0
  num_train: int = 50_000
  num_eval: int = 2_000          # validation, test and test_long each
  min_length: int = 3            # words (lang) or symbols/digits (algorithmic), train..test
  max_length: int = 30
  long_min_length: int = 31      # test_long
  long_max_length: int = 45


BUILDER_CONFIGS = [
    ToyTranslationConfig(
        name='lang', task='lang', description='English-like source, verb-final target with agreement.',
        min_length=3, max_length=30, long_min_length=31, long_max_length=45),
    *[ToyTranslationConfig(name=task, task=task, description=f'Algorithmic task: {task}.', min_length=1,
                           max_length=40, long_min_length=41, long_max_length=60)
      for task in ('copy', 'reverse', 'sort')],
    ToyTranslationConfig(name='addition', task='addition', description='Integer addition, digit by digit.',
                         min_length=1, max_length=40, long_min_length=41, long_max_length=60),
]


def text_pair_info(builder: tfds.core.GeneratorBasedBuilder, description: str):
  """DatasetInfo of a translation dataset of {'source', 'target'} text pairs."""
  return builder.dataset_info_from_configs(
      features=tfds.features.FeaturesDict({'source': tfds.features.Text(),
                                           'target': tfds.features.Text()}),
      supervised_keys=('source', 'target'),
      description=description)


class ToyTranslation(tfds.core.GeneratorBasedBuilder):
  """Synthetic source/target text pairs."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'lang, copy, reverse, sort, addition; test_long split.'}
  BUILDER_CONFIGS = BUILDER_CONFIGS

  def _info(self) -> tfds.core.DatasetInfo:
    return text_pair_info(self, __doc__)

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    pairs = generate_splits(self.builder_config)
    return {split: self._generate_examples(pairs[split]) for split in SPLITS}

  def _generate_examples(self, pairs):
    for i, (source, target) in enumerate(pairs):
      yield i, {'source': source, 'target': target}


def generate_splits(cfg: ToyTranslationConfig) -> dict[str, list[tuple[str, str]]]:
  """All four splits, deterministic from cfg.seed; no source sentence appears twice."""
  seen: set[str] = set()
  sampler = _sampler(cfg)
  rng = np.random.default_rng([cfg.seed, 0x5EED])

  def draw(count, lo, hi):
    out = []
    while len(out) < count:
      source, target = sampler(rng, lo, hi)
      if source not in seen:
        seen.add(source)
        out.append((source, target))
    return out

  # Evaluation splits first, so that the training set is what is left after them.
  splits = {'validation': draw(cfg.num_eval, cfg.min_length, cfg.max_length),
            'test': draw(cfg.num_eval, cfg.min_length, cfg.max_length),
            'test_long': draw(cfg.num_eval, cfg.long_min_length, cfg.long_max_length)}
  splits['train'] = draw(cfg.num_train, cfg.min_length, cfg.max_length)
  return splits


def _sampler(cfg: ToyTranslationConfig):
  """(rng, min_length, max_length) -> (source, target) with length in [min, max]."""
  if cfg.task == 'lang':
    lexicon = grammar.Lexicon.generate(cfg.seed)
    short = grammar.Grammar(lexicon, max_clauses=2)
    long = grammar.Grammar(lexicon, max_clauses=4, max_pp_depth=2)

    def sample(rng, lo, hi):
      g = short if hi <= cfg.max_length else long
      while True:
        source, target = g.pair(rng)
        # Lengths count words, the final '.' excluded.
        if lo <= len(source.split()) - 1 <= hi:
          return source, target
    return sample

  def sample(rng, lo, hi):
    return algorithmic.sample_pair(cfg.task, rng, int(rng.integers(lo, hi + 1)))
  return sample

