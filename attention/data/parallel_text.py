"""TFDS builder `parallel_text`: a local parallel corpus of tab-separated files.

A directory with `train.tsv`, `validation.tsv` and `test.tsv` (one `source<TAB>target`
pair per line, UTF-8) becomes a TFDS dataset in the array_record format, read through
the same code path as any TFDS translation dataset (`builder.as_data_source`,
`supervised_keys`, a SentencePiece model trained on the training split). The builder
config is named after the directory's contents, so a changed corpus is prepared anew.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import tensorflow_datasets as tfds

from attention.data import toy_translation
from attention import UserError

SPLIT_FILES = {'train': 'train.tsv', 'validation': 'validation.tsv', 'test': 'test.tsv'}


@dataclasses.dataclass
class ParallelTextConfig(tfds.core.BuilderConfig):
  path: str = ''


def config_for(path: str) -> ParallelTextConfig:
  """A builder config for the corpus in `path`; its name hashes the files' contents."""
  path = os.path.abspath(path)
  if not os.path.isfile(os.path.join(path, SPLIT_FILES['train'])):
    raise FileNotFoundError(f'task=tsv:{path}: expected {SPLIT_FILES["train"]} (and optionally '
                            f'{SPLIT_FILES["validation"]}, {SPLIT_FILES["test"]}) in that directory')
  digest = hashlib.sha256()
  for name in sorted(SPLIT_FILES.values()):
    file = os.path.join(path, name)
    if os.path.isfile(file):
      with open(file, 'rb') as f:
        digest.update(name.encode() + b'\0' + f.read())
  return ParallelTextConfig(name='tsv_' + digest.hexdigest()[:16], path=path,
                            description=f'Parallel text from {path}.')


class ParallelText(tfds.core.GeneratorBasedBuilder):
  """Source/target text pairs from local TSV files."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'TSV splits.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return toy_translation.text_pair_info(self, __doc__)

  def _split_generators(self, dl_manager):
    del dl_manager  # local files only
    return {split: self._generate_examples(os.path.join(self.builder_config.path, name))
            for split, name in SPLIT_FILES.items()
            if os.path.isfile(os.path.join(self.builder_config.path, name))}

  def _generate_examples(self, file):
    with open(file, encoding='utf-8', errors='replace') as f:
      for i, line in enumerate(f):
        source, sep, target = line.rstrip('\r\n').partition('\t')
        if not sep:
          raise UserError(f'{file}:{i + 1}: expected source<TAB>target')
        yield i, {'source': source, 'target': target}
