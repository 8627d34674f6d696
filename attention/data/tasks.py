"""What `config.task` names, prepared as a TFDS dataset and tokenized.

  lang | copy | reverse | sort | addition   the `toy_translation` builder (generated here)
  listops_L | recall_L | selective_copy_L   its long-range tasks, sources of about L tokens
  tsv:DIR                                   the `parallel_text` builder over local TSV files
  any other name, e.g. wmt14_translate/de-en a TFDS translation dataset (downloads once)

Every task is prepared in the array_record format into `data_dir` and read back with
`as_data_source`, without TensorFlow. Toy tasks use a word vocabulary; real text uses a
SentencePiece model trained on the training split. The tokenizer is saved into the run
directory (`vocab.json`, plus `spm.model`) and reused from there.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import re
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from attention import UserError
from attention.data import parallel_text, tokenizers, toy_translation

TOY_TASKS = tuple(c.name for c in toy_translation.BUILDER_CONFIGS)   # and TASK_L of any L
TASK_NAMES = 'lang, copy, reverse, sort, addition, listops_L, recall_L, selective_copy_L'


def is_toy(task: str) -> bool:
  """A task of the `toy_translation` builder (its long-range tasks at any length too)."""
  return toy_translation.is_task(task)
TOKENIZER_FILE = 'vocab.json'
TOKENIZERS = ('auto', 'word', 'sentencepiece')


@dataclasses.dataclass
class TaskData:
  """The prepared splits of one task: split name -> random-access source of dicts."""
  name: str
  sources: dict[str, Any]
  source_key: str
  target_key: str

  def pair(self, split: str, index: int) -> tuple[str, str]:
    record = self.sources[split][index]
    return _text(record[self.source_key]), _text(record[self.target_key])

  def texts(self, split: str, limit: int = 0):
    """(source, target) strings of the first `limit` (0 = all) examples."""
    return [(_text(r[self.source_key]), _text(r[self.target_key]))
            for r in self._records(split, limit)]

  @property
  def has_alignment(self) -> bool:
    """Whether the examples carry a gold word alignment (the `lang` task)."""
    source = next(iter(self.sources.values()))
    return 'alignment' in getattr(getattr(source, 'dataset_info', None), 'features', {})

  def alignments(self, split: str, limit: int = 0) -> list[np.ndarray]:
    """The gold alignment of the first `limit` (0 = all) examples: for each target word,
    the index of the source word it translates (toy_translation's `alignment`)."""
    if not self.has_alignment:
      raise UserError(f'task={self.name!r}: its examples have no gold word alignment '
                      '(only lang has one)')
    return [np.asarray(r['alignment'], np.int64) for r in self._records(split, limit)]

  def _records(self, split: str, limit: int):
    source = self.sources[split]
    indices = list(range(min(len(source), limit) if limit else len(source)))
    # One batched read, not a read per record: TFDS data sources pay per call.
    return (source.__getitems__(indices) if hasattr(source, '__getitems__')
            else [source[i] for i in indices])


def _text(value) -> str:
  return value.decode('utf-8', errors='replace') if isinstance(value, bytes) else str(value)


def builder(task: str, data_dir: str):
  if is_toy(task):
    return toy_translation.ToyTranslation(config=toy_translation.config_for(task), data_dir=data_dir,
                                          file_format='array_record')
  if task.startswith('tsv:'):
    return parallel_text.ParallelText(config=parallel_text.config_for(task[4:]),
                                      data_dir=data_dir, file_format='array_record')
  return tfds.builder(task, data_dir=data_dir, file_format='array_record')


def load_for(config) -> TaskData:
  """load(config.task, config.data.data_dir), with a missing dataset or an unknown task
  name reported as a UserError (one line from the entry points)."""
  try:
    return load(config.task, config.data.data_dir)
  except FileNotFoundError as e:
    raise UserError(str(e)) from None
  except tfds.core.registered.DatasetNotFoundError:
    raise UserError(f'config.task={config.task!r}: no such TFDS dataset; allowed: '
                    f'{TASK_NAMES}, tsv:DIR, or a TFDS dataset name') from None


def load(task: str, data_dir: str) -> TaskData:
  """Prepares the task's dataset once (a no-op when it exists) and opens every split.

  Runs started together on one data directory (a parallel sweep) take turns: the first
  prepares, the others then find the dataset ready. The builder is made inside the lock,
  so that it sees what the first one wrote."""
  os.makedirs(data_dir, exist_ok=True)
  lock_path = os.path.join(data_dir, '.prepare-' + re.sub(r'[^\w.-]', '_', task) + '.lock')
  with open(lock_path, 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    b = builder(task, data_dir)
    b.download_and_prepare()
  keys = b.info.supervised_keys
  if not keys or len(keys) != 2:
    raise ValueError(f'task={task!r}: the dataset has no (source, target) supervised keys')
  return TaskData(task, {split: b.as_data_source(split=split) for split in b.info.splits},
                  source_key=keys[0], target_key=keys[1])


def pretokenized(task: str) -> bool:
  """Whether a task's text is already tokenized (words and punctuation separated by
  spaces, as the toy tasks generate it), so that BLEU needs no tokenizer of its own."""
  return is_toy(task)


def tokenizer_kind(task: str, kind: str) -> str:
  if kind == 'auto':
    return 'word' if is_toy(task) else 'sentencepiece'
  return kind


def load_tokenizer(run_dir: str):
  """The tokenizer a run saved, or None when it has none yet."""
  path = os.path.join(run_dir, TOKENIZER_FILE)
  return tokenizers.load(path) if os.path.exists(path) else None


def build_tokenizer(data: TaskData, model_dir: str, *, kind: str = 'auto',
                    vocab_size: int = 8000, max_sentences: int = 200_000):
  """A tokenizer built from the training split (both sides: the model shares one
  vocabulary). A SentencePiece model is written to `model_dir/spm.model`."""
  texts = [t for pair in data.texts('train', max_sentences) for t in pair]
  if tokenizer_kind(data.name, kind) == 'word':
    return tokenizers.WordVocab.build(texts)
  return tokenizers.SentencePieceTokenizer.train(texts, os.path.join(model_dir, 'spm'), vocab_size)


def save_tokenizer(tokenizer, run_dir: str) -> None:
  tokenizer.save(os.path.join(run_dir, TOKENIZER_FILE))
