"""Tokenizers with the fixed special ids of the `attention` package (pad 0, bos 1, eos 2, unk 3).

WordVocab: whitespace-separated words, for the toy tasks; built from the training split
and saved as JSON with the run. SentencePieceTokenizer: subwords for real text, trained
on the training split with the same special ids.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Iterable

import numpy as np

from attention import BOS_ID, EOS_ID, NUM_SPECIAL, PAD_ID, UNK_ID

SPECIAL_TOKENS = ('<pad>', '<s>', '</s>', '<unk>')


class WordVocab:
  """Word-level vocabulary: ids NUM_SPECIAL.. are words by descending count."""

  kind = 'word'

  def __init__(self, words: list[str]):
    self.words = list(SPECIAL_TOKENS) + [w for w in words if w not in SPECIAL_TOKENS]
    self.index = {w: i for i, w in enumerate(self.words)}

  @classmethod
  def build(cls, texts: Iterable[str], min_count: int = 1) -> WordVocab:
    counts = collections.Counter(w for text in texts for w in text.split())
    return cls([w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                if c >= min_count])

  @property
  def vocab_size(self) -> int:
    return len(self.words)

  def encode(self, text: str) -> list[int]:
    return [self.index.get(w, UNK_ID) for w in text.split()]

  def decode(self, ids) -> str:
    """Ids up to the first EOS (PAD and BOS skipped) back to text."""
    out = []
    for i in np.asarray(ids).tolist():
      if i == EOS_ID:
        break
      if i in (PAD_ID, BOS_ID):
        continue
      out.append(self.words[i] if 0 <= i < len(self.words) else SPECIAL_TOKENS[UNK_ID])
    return ' '.join(out)

  def pieces(self, ids) -> list[str]:
    """One string per id (special tokens by name), for plot labels."""
    return [self.words[i] if 0 <= i < len(self.words) else SPECIAL_TOKENS[UNK_ID]
            for i in np.asarray(ids).tolist()]

  def save(self, path: str) -> None:
    with open(path, 'w') as f:
      json.dump({'kind': self.kind, 'words': self.words[NUM_SPECIAL:]}, f)


class SentencePieceTokenizer:
  """A SentencePiece unigram model trained on the training text."""

  kind = 'sentencepiece'

  def __init__(self, model_path: str):
    import sentencepiece as spm
    self.model_path = model_path
    self.sp = spm.SentencePieceProcessor(model_file=model_path)

  @classmethod
  def train(cls, texts: Iterable[str], model_prefix: str, vocab_size: int) -> SentencePieceTokenizer:
    import sentencepiece as spm
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=model_prefix, vocab_size=vocab_size,
        pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID, model_type='unigram',
        character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    return cls(model_prefix + '.model')

  @property
  def vocab_size(self) -> int:
    return self.sp.get_piece_size()

  def encode(self, text: str) -> list[int]:
    return self.sp.encode(text)

  def decode(self, ids) -> str:
    ids = np.asarray(ids).tolist()
    if EOS_ID in ids:
      ids = ids[:ids.index(EOS_ID)]
    return self.sp.decode([i for i in ids if i not in (PAD_ID, BOS_ID)])

  def pieces(self, ids) -> list[str]:
    return [self.sp.id_to_piece(i) for i in np.asarray(ids).tolist()]

  def save(self, path: str) -> None:
    with open(path, 'w') as f:
      json.dump({'kind': self.kind, 'model': os.path.basename(self.model_path)}, f)


def load(path: str):
  """A tokenizer saved by `save` (a SentencePiece model lies next to its JSON)."""
  with open(path) as f:
    spec = json.load(f)
  if spec.get('kind') == 'word':
    return WordVocab(spec['words'])
  if spec.get('kind') == 'sentencepiece':
    return SentencePieceTokenizer(os.path.join(os.path.dirname(path), spec['model']))
  raise ValueError(f'{path}: not a tokenizer file (kind must be word or sentencepiece)')
