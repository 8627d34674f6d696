"""The measurements eval.py writes, on a model and a split: alignment, head importance,
and the model made smaller (heads pruned, weights quantized) ready to be scored."""

from __future__ import annotations

import numpy as np

from attention.data import pipeline
from attention.interpret import alignment, heads, maps, pruning, quantize
from attention.models import merge_model, split_model

QUANTIZE = ('int8', 'bf16')


def batches(config, tokenizer, pairs) -> list[dict]:
  """Teacher-forcing batches of the pairs, as the evaluator forms them."""
  return [eb.batch for eb in pipeline.eval_batches(
      pairs, tokenizer, batch_size=config.eval.batch_size,
      bucket_boundaries=config.data.bucket_boundaries)]


def alignment_scores(model, config, tokenizer, pairs, gold) -> dict:
  """{query: alignment.evaluate(...)} for both ways of reading a target word's query."""
  return {query: alignment.evaluate(model, tokenizer, pairs, gold, query=query,
                                    batch_size=config.eval.batch_size,
                                    bucket_boundaries=config.data.bucket_boundaries)
          for query in alignment.QUERIES}


def head_importance(model, data_batches) -> dict:
  """Ablation and gradient importance of every head, and the mean entropy (nats) of its
  attention over the batches' real queries, per attention module."""
  ablation = heads.ablation_importance(model, data_batches)
  return {'base_loss': ablation['base_loss'], 'ablation': ablation['importance'],
          'gradient': heads.gradient_importance(model, data_batches)['importance'],
          'entropy': entropies(model, data_batches)}


def entropies(model, data_batches) -> dict[str, list[float]]:
  """{module: mean attention entropy per head}, over the non-PAD queries of the batches
  (encoder queries are source tokens, decoder queries target tokens)."""
  sums, counts = {}, {}
  for batch in data_batches:
    found = maps.attention_maps(model, batch['src'], batch['tgt_in'])
    for name, w in found.items():
      queries = batch['src'] if name.startswith('encoder') else batch['tgt_in']
      mask = np.asarray(queries) != 0
      n = int(mask.sum())
      sums[name] = sums.get(name, 0.0) + maps.entropy(w, mask) * n
      counts[name] = counts.get(name, 0) + n
  return {name: (sums[name] / max(counts[name], 1)).tolist() for name in sums}


def copy_model(model):
  return merge_model(*split_model(model))


def smaller(model, *, prune: str | None = None, method: str = 'gradient',
            importance_batches=None, quantize_to: str | None = None, seed: int = 0):
  """(a new model, what was done to it): `prune` heads ('K' or a fraction) removed in
  `method`'s order (importance measured on `importance_batches`), then weights
  quantized to int8 or bf16. The given model is left as it is."""
  model = copy_model(model)
  info = {'parameters': pruning.parameters(model),
          'attention_parameters': pruning.attention_parameters(model),
          'heads': pruning.head_count(model), 'fp32_bytes': quantize.parameter_bytes(model)}
  if prune:
    count = pruning.amount(model, prune)
    info['pruned'] = pruning.prune_iteratively(model, importance_batches, count, method=method,
                                               seed=seed)
    info.update(prune=prune, prune_method=method)
  info.update(parameters_kept=pruning.parameters(model),
              attention_parameters_kept=pruning.attention_parameters(model),
              heads_kept=pruning.head_count(model))
  if quantize_to == 'int8':
    info.update(quantize='int8', **{k: v for k, v in quantize.quantize_int8(model).items()
                                    if k != 'fp32_bytes'})
    info['bytes'] = info['int8_bytes']
  elif quantize_to == 'bf16':
    info.update(quantize='bf16', **quantize.to_bfloat16(model))
    info['bytes'] = info['bf16_bytes']
  elif quantize_to is not None:
    raise ValueError(f'quantize must be one of {QUANTIZE}, got {quantize_to!r}')
  else:
    info['bytes'] = quantize.parameter_bytes(model)
  info['bytes_ratio'] = info['fp32_bytes'] / info['bytes']
  return model, info


def variant_name(split: str, prune: str | None, method: str, quantize_to: str | None) -> str:
  """The eval/<name>.json of a scored variant: test_pruned-12-gradient_int8."""
  name = split
  if prune:
    name += f'_pruned-{prune}-{method}'
  if quantize_to:
    name += f'_{quantize_to}'
  return name


def grid_of(per_module: dict, kind: str) -> tuple[list[str], np.ndarray]:
  """(row names, [modules, heads]) of one attention kind's modules ('cross_attention')."""
  names = [n for n in per_module if n.endswith(kind)]
  return names, np.asarray([per_module[n] for n in names], np.float64)
