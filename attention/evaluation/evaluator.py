"""Decodes and scores a split; translates free text. Used by train.py and eval.py alike.

An Evaluator is built once per run, so its jitted functions compile once per bucket
shape and are reused at every evaluation.
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from attention.data import pipeline, tasks
from attention.evaluation import eval_step, scores
from attention.models import decoding, merge_model

EVAL_DIR = 'eval'


class Evaluator:
  """Scores parameters of one model (graphdef, rest) on pairs of text, and translates."""

  @classmethod
  def from_config(cls, config, graphdef, rest, tokenizer, *, beam_size=None) -> Evaluator:
    """The evaluator a run's config asks for (config.eval, data bucketing, max_length)."""
    return cls(graphdef, rest, tokenizer, batch_size=config.eval.batch_size,
               bucket_boundaries=config.data.bucket_boundaries,
               beam_size=beam_size or config.eval.beam_size, alpha=config.eval.alpha,
               max_decode_length=config.eval.max_decode_length,
               model_max_length=config.model.max_length,
               bleu_tokenize='none' if tasks.pretokenized(config.task) else '13a')

  def __init__(self, graphdef, rest, tokenizer, *, batch_size: int,
               bucket_boundaries: Sequence[int], beam_size: int, alpha: float,
               max_decode_length: int = 0, model_max_length: int = 0,
               bleu_tokenize: str = '13a'):
    self.graphdef, self.rest, self.tokenizer = graphdef, rest, tokenizer
    self.batch_size, self.boundaries = batch_size, tuple(bucket_boundaries)
    self.beam_size, self.alpha = beam_size, alpha
    self.max_decode_length, self.model_max_length = max_decode_length, model_max_length
    self.bleu_tokenize = bleu_tokenize
    self.eval_step = eval_step.make_eval_step(graphdef, rest)

  def decode_length(self, src_length: int) -> int:
    """Target tokens to generate: the configured number, else the source length plus a
    quarter (at least 8), rounded up to a bucket so few shapes compile."""
    if self.max_decode_length:
      return self.max_decode_length
    n = pipeline.bucket_length(src_length + max(8, src_length // 4), self.boundaries)
    return min(n, self.model_max_length) if self.model_max_length else n

  def decode(self, model, src_BS: np.ndarray) -> np.ndarray:
    """Best hypothesis tokens [B, L] (EOS included, then PAD)."""
    src_len = int(np.max(np.count_nonzero(src_BS, axis=1), initial=1))
    length = self.decode_length(src_len)
    src = jnp.asarray(src_BS)
    if self.beam_size == 1:
      return np.asarray(decoding.jit_decoder(decoding.greedy_decode, max_length=length)(model, src))
    tokens, _ = decoding.jit_decoder(decoding.beam_search, beam_size=self.beam_size,
                                     max_length=length, alpha=self.alpha)(model, src)
    return np.asarray(tokens[:, 0])

  def evaluate(self, params, pairs: Sequence[tuple[str, str]], *, decode: bool = True):
    """(metrics, rows): loss, perplexity, token_accuracy from teacher forcing, and with
    decode, bleu, chrf, exact_match; rows are (source, reference, hypothesis) in the
    order of `pairs`. All rates in percent."""
    model = merge_model(self.graphdef, params, self.rest)
    sums = {'nll': 0.0, 'correct': 0.0, 'tokens': 0.0}
    hypotheses = [''] * len(pairs)
    for eb in pipeline.eval_batches(pairs, self.tokenizer, batch_size=self.batch_size,
                                    bucket_boundaries=self.boundaries):
      out = jax.device_get(self.eval_step(params, eb.batch))
      for k in sums:
        sums[k] += float(out[k])
      if decode:
        tokens = self.decode(model, eb.batch['src'])
        for row, index in enumerate(eb.indices):
          hypotheses[index] = self.tokenizer.decode(tokens[row])
    tokens = max(sums['tokens'], 1.0)
    metrics = {'loss': sums['nll'] / tokens, 'perplexity': math.exp(min(sums['nll'] / tokens, 50.0)),
               'token_accuracy': 100.0 * sums['correct'] / tokens, 'num_examples': len(pairs)}
    signatures = {}
    if decode:
      corpus, signatures = scores.corpus_scores(hypotheses, [t for _, t in pairs],
                                                tokenize=self.bleu_tokenize)
      metrics.update(corpus)
    rows = [(s, t, h) for (s, t), h in zip(pairs, hypotheses)]
    return metrics, rows, signatures

  def translate(self, params, sources: Sequence[str], *, max_source_length: int = 0) -> list[str]:
    """One single-line hypothesis per source, in order. Sources longer than
    max_source_length tokens (EOS included; 0 = no limit) are truncated to it."""
    model = merge_model(self.graphdef, params, self.rest)
    out = [''] * len(sources)
    pairs = [(s, '') for s in sources]
    for eb in pipeline.eval_batches(pairs, self.tokenizer, batch_size=self.batch_size,
                                    bucket_boundaries=self.boundaries,
                                    max_source_length=max_source_length):
      tokens = self.decode(model, eb.batch['src'])
      for row, index in enumerate(eb.indices):
        out[index] = ' '.join(self.tokenizer.decode(tokens[row]).split())
    return out


def write_json(workdir: str, name: str, record: dict) -> str:
  """DIR/eval/<name>.json, written whole or not at all; its path."""
  out_dir = os.path.join(workdir, EVAL_DIR)
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, f'{name}.json')
  with open(path + '.tmp', 'w') as f:
    json.dump(record, f, indent=1)
  os.replace(path + '.tmp', path)
  return path


def write_results(workdir: str, split: str, step: int, metrics: dict, rows, signatures: dict,
                  extra: dict | None = None) -> str:
  """DIR/eval/<split>.json (metrics) and DIR/eval/<split>.tsv (predictions)."""
  record = {'split': split, 'step': int(step), **metrics,
            **{f'{k}_signature': v for k, v in signatures.items()}, **(extra or {})}
  path = write_json(workdir, split, record)
  with open(os.path.join(workdir, EVAL_DIR, f'{split}.tsv'), 'w', newline='') as f:
    writer = csv.writer(f, delimiter='\t', lineterminator='\n')
    writer.writerow(('source', 'reference', 'hypothesis'))
    writer.writerows(rows)
  return path


def read_predictions(workdir: str, split: str) -> list[tuple[str, str, str]]:
  """The (source, reference, hypothesis) rows write_results wrote for a split."""
  with open(os.path.join(workdir, EVAL_DIR, f'{split}.tsv'), newline='') as f:
    reader = csv.reader(f, delimiter='\t')
    next(reader)   # the header
    return [tuple(row) for row in reader]


def summary_line(split: str, step: int, metrics: dict) -> str:
  parts = [f'{k}={metrics[k]:.2f}' for k in ('bleu', 'chrf', 'exact_match', 'token_accuracy',
                                             'perplexity') if k in metrics]
  return f'{split} @ step {step}: ' + ' '.join(parts)
