"""Corpus scores of hypotheses against references, all in percent.

  bleu         sacrebleu corpus BLEU (13a tokenization, one reference)
  chrf         sacrebleu chrF (character n-gram F-score, beta 2)
  exact_match  hypotheses equal to their reference, after whitespace normalization
"""

from __future__ import annotations

import sacrebleu


def corpus_scores(hypotheses: list[str], references: list[str]) -> tuple[dict, dict]:
  """(scores, signatures): signatures are sacrebleu's, to quote next to the numbers."""
  bleu = sacrebleu.metrics.BLEU()
  chrf = sacrebleu.metrics.CHRF()
  b = bleu.corpus_score(hypotheses, [references])
  c = chrf.corpus_score(hypotheses, [references])
  exact = sum(' '.join(h.split()) == ' '.join(r.split()) for h, r in zip(hypotheses, references))
  scores = {'bleu': b.score, 'chrf': c.score,
            'exact_match': 100.0 * exact / max(len(references), 1)}
  return scores, {'bleu': str(bleu.get_signature()), 'chrf': str(chrf.get_signature())}
