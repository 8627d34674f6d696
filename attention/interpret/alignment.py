"""Word alignments read off cross-attention, scored against a gold alignment.

Each target word is aligned to the source word its cross-attention weighs most: the
weights of one query (below), summed over each source word's tokens (sub-word pieces
merged into words), EOS left out. Two queries can stand for target word j:
  predict  the query that predicts its first token (its input is the word before);
  shift    the query whose input is its last token (Chen et al. 2020 "shift-att": the
           decoder has seen the word it aligns).
Scores (Och & Ney 2003) with sure links only, summed over a corpus:
  AER = 1 - 2 |A & S| / (|A| + |S|),   accuracy = |A & S| / |S|,
A the predicted links, one per target word, S the gold links. The gold alignment of a
pair is, for each target word, the index of its source word (-1: none).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from attention.data import pipeline
from attention.interpret import maps as maps_lib

QUERIES = ('predict', 'shift')


def token_words(tokenizer, ids) -> np.ndarray:
  """The word index of each token id (special tokens are words of their own): a word
  vocabulary's tokens are words; a SentencePiece piece starting with '▁' opens one."""
  pieces = tokenizer.pieces(ids)
  if getattr(tokenizer, 'kind', 'word') == 'word':
    return np.arange(len(pieces))
  starts = [i == 0 or p.startswith('\u2581') for i, p in enumerate(pieces)]
  return np.cumsum(starts) - 1


def word_attention(weights_TS, tgt_words_T, src_words_S, *, query: str = 'predict') -> np.ndarray:
  """[target words, source words]: a map over token queries (T = BOS and the target's
  tokens) and token keys (S = the source's tokens and EOS; EOS is dropped) merged into
  words. tgt_words_T and src_words_S are token_words of the target and the source."""
  if query not in QUERIES:
    raise ValueError(f'query must be one of {QUERIES}, got {query!r}')
  tgt_words_T, src_words_S = np.asarray(tgt_words_T), np.asarray(src_words_S)
  n_tgt, n_src = int(tgt_words_T.max(initial=-1)) + 1, int(src_words_S.max(initial=-1)) + 1
  w = np.asarray(weights_TS, np.float64)
  by_src = np.zeros((w.shape[0], n_src))
  np.add.at(by_src.T, src_words_S, w[:, :len(src_words_S)].T)   # keys beyond: EOS, PAD
  out = np.zeros((n_tgt, n_src))
  for j in range(n_tgt):
    tokens = np.flatnonzero(tgt_words_T == j)     # positions in the target's tokens
    # Query t predicts target token t (its input is token t - 1, or BOS).
    out[j] = by_src[tokens[0] if query == 'predict' else tokens[-1] + 1]
  return out


def hard_alignment(word_weights) -> np.ndarray:
  """For each target word, the source word it weighs most."""
  return np.argmax(np.asarray(word_weights), axis=-1)


@dataclasses.dataclass
class Counts:
  """Link counts of a corpus: |A & S|, |A|, |S|."""
  hits: int = 0
  predicted: int = 0
  gold: int = 0

  def add(self, predicted, gold) -> None:
    predicted, gold = np.asarray(predicted), np.asarray(gold)
    aligned = gold >= 0
    self.hits += int(np.sum(predicted[aligned] == gold[aligned]))
    self.predicted += len(predicted)
    self.gold += int(aligned.sum())

  @property
  def aer(self) -> float:
    """Alignment error rate in percent (sure links only)."""
    total = self.predicted + self.gold
    return 100.0 * (1.0 - 2.0 * self.hits / total) if total else 0.0

  @property
  def accuracy(self) -> float:
    """Gold links found, in percent."""
    return 100.0 * self.hits / self.gold if self.gold else 0.0


def score(predicted: list, gold: list) -> dict:
  """AER and accuracy (percent) of predicted hard alignments against gold ones."""
  counts = Counts()
  for p, g in zip(predicted, gold):
    if len(p) != len(g):
      raise ValueError(f'a predicted alignment has {len(p)} target words, its gold one {len(g)}')
    counts.add(p, g)
  return {'aer': counts.aer, 'accuracy': counts.accuracy, 'links': counts.gold}


def cross_attention_names(names) -> list[str]:
  return [n for n in names if n.endswith('cross_attention')]


def evaluate(model, tokenizer, pairs, gold, *, batch_size: int = 64,
             bucket_boundaries=(16, 32, 64), query: str = 'predict') -> dict:
  """Alignment scores of every cross-attention head, of each layer's heads averaged and
  of all layers' averaged, over (source, target) pairs teacher-forced with their gold
  alignments. Returns {'layers': [names], 'heads': N, 'aer': [[layer][head]],
  'accuracy': [[...]], 'layer_mean': {'aer': [...], 'accuracy': [...]},
  'all_mean': {...}, 'best': {'layer', 'head', 'aer', 'accuracy'}, 'links'}."""
  counts = None
  for eb in pipeline.eval_batches(pairs, tokenizer, batch_size=batch_size,
                                  bucket_boundaries=bucket_boundaries):
    found = maps_lib.attention_maps(model, eb.batch['src'], eb.batch['tgt_in'])
    names = cross_attention_names(found)
    if not names:
      raise ValueError('this model has no cross-attention to align with')
    if counts is None:   # layers may differ in heads (a pruned model)
      counts = {'head': [[Counts() for _ in range(found[n].shape[1])] for n in names],
                'layer_mean': [Counts() for _ in names], 'all_mean': Counts()}
    for row, index in enumerate(eb.indices):
      source, target = pairs[index]
      src_words = token_words(tokenizer, tokenizer.encode(source))
      tgt_words = token_words(tokenizer, tokenizer.encode(target))
      g = gold[index]
      if len(g) != tgt_words.max(initial=-1) + 1:
        raise ValueError(f'pair {index}: {tgt_words.max(initial=-1) + 1} target words, '
                         f'{len(g)} in its gold alignment')
      per_layer = []
      for li, name in enumerate(names):
        w_NTS = found[name][row]
        per_head = [word_attention(w_NTS[h], tgt_words, src_words, query=query)
                    for h in range(w_NTS.shape[0])]
        for h, ww in enumerate(per_head):
          counts['head'][li][h].add(hard_alignment(ww), g)
        layer = np.mean(per_head, axis=0)
        counts['layer_mean'][li].add(hard_alignment(layer), g)
        per_layer.append(layer)
      counts['all_mean'].add(hard_alignment(np.mean(per_layer, axis=0)), g)
  if counts is None:
    raise ValueError('no pairs to align')
  aer = [[c.aer for c in layer] for layer in counts['head']]
  acc = [[c.accuracy for c in layer] for layer in counts['head']]
  li, h = min(((li, h) for li, layer in enumerate(aer) for h in range(len(layer))),
              key=lambda lh: aer[lh[0]][lh[1]])
  return {'query': query, 'layers': names, 'heads': [len(a) for a in aer], 'aer': aer,
          'accuracy': acc,
          'layer_mean': {'aer': [c.aer for c in counts['layer_mean']],
                         'accuracy': [c.accuracy for c in counts['layer_mean']]},
          'all_mean': {'aer': counts['all_mean'].aer, 'accuracy': counts['all_mean'].accuracy},
          'best': {'layer': names[li], 'head': int(h), 'aer': aer[li][h], 'accuracy': acc[li][h]},
          'links': counts['all_mean'].gold}
