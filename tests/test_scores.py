"""sacrebleu as the evaluator calls it: pre-tokenized toy text is scored without a
tokenizer of sacrebleu's (the same BLEU as 13a finds, and no warning owed)."""

import logging

from attention.data import tasks
from attention.evaluation import scores

# Toy-task text: words and punctuation apart, as the generators write it.
REFERENCES = [f'the cat number {i} sees a big dog .' for i in range(120)]   # 100+ warn
HYPOTHESES = [r if i % 3 else r.replace('big', 'small') for i, r in enumerate(REFERENCES)]


def test_pretokenized_text_scores_as_13a_would_and_warns_nothing(caplog):
  with caplog.at_level(logging.WARNING):
    plain, signatures = scores.corpus_scores(HYPOTHESES, REFERENCES, tokenize='none')
  assert not [r for r in caplog.records if 'detokenize' in r.getMessage()], caplog.text
  assert 'tok:none' in signatures['bleu']
  with caplog.at_level(logging.WARNING):
    tokenized, signatures_13a = scores.corpus_scores(HYPOTHESES, REFERENCES)
  assert 'tok:13a' in signatures_13a['bleu']
  assert [r for r in caplog.records if 'detokenize' in r.getMessage()]   # what 'none' avoids
  assert plain == tokenized and 0 < plain['bleu'] < 100
  assert plain['exact_match'] == 100.0 * 80 / 120


def test_only_the_toy_tasks_count_as_pretokenized():
  assert all(tasks.pretokenized(t) for t in tasks.TOY_TASKS)
  assert not tasks.pretokenized('tsv:/corpus') and not tasks.pretokenized('wmt14_translate/de-en')
