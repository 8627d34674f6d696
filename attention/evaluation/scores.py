"""Corpus scores of hypotheses against references, all in percent.

  bleu         sacrebleu corpus BLEU, one reference: 13a tokenization, or none for text
               that is already tokenized (the toy tasks: words and punctuation apart)
  chrf         sacrebleu chrF (character n-gram F-score, beta 2)
  exact_match  hypotheses equal to their reference, after whitespace normalization
  exact_match_by_length  the same, per range of source lengths in words
"""

from __future__ import annotations

import sacrebleu


def corpus_scores(hypotheses: list[str], references: list[str], *,
                  tokenize: str = '13a') -> tuple[dict, dict]:
  """(scores, signatures): signatures are sacrebleu's, to quote next to the numbers.
  tokenize='none' for pre-tokenized text, where 13a would find nothing to split and
  sacrebleu would warn that the text looks tokenized."""
  # force: sacrebleu's own name for "this text is tokenized on purpose".
  bleu = sacrebleu.metrics.BLEU(tokenize=tokenize, force=tokenize == 'none')
  chrf = sacrebleu.metrics.CHRF()
  b = bleu.corpus_score(hypotheses, [references])
  c = chrf.corpus_score(hypotheses, [references])
  exact = sum(_same(h, r) for h, r in zip(hypotheses, references))
  scores = {'bleu': b.score, 'chrf': c.score,
            'exact_match': 100.0 * exact / max(len(references), 1)}
  return scores, {'bleu': str(bleu.get_signature()), 'chrf': str(chrf.get_signature())}


def _same(hypothesis: str, reference: str) -> bool:
  return hypothesis.split() == reference.split()


def exact_match_by_length(rows, bins) -> list[float | None]:
  """rows: (source, reference, hypothesis) triples; bins: (lo, hi) source lengths in
  words, both ends included. Exact match in percent per bin (None for an empty bin)."""
  hits, totals = [0] * len(bins), [0] * len(bins)
  for source, reference, hypothesis in rows:
    words = len(source.split())
    for i, (lo, hi) in enumerate(bins):
      if lo <= words <= hi:
        totals[i] += 1
        hits[i] += _same(hypothesis, reference)
  return [100.0 * h / n if n else None for h, n in zip(hits, totals)]
