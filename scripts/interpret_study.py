r"""Interpretability and model size of trained runs, as numbers (docs/interpretability.md).

  python scripts/interpret_study.py --runs=runs/default,runs/small --out_dir=runs/interpret

For each run (a `lang` run directory written by train.py), on its test split:
  which heads align   alignment error rate of every cross-attention head against the
                      grammar's gold alignment, the best head, each layer's heads and all
                      heads averaged; the same at every checkpoint the run kept
  how many heads      BLEU and exact match against the fraction of heads pruned, in
                      gradient-importance order (Michel et al. 2019) and at random, with
                      parameter counts, and the time of one batch's forward pass and beam search
  how many bits       float32, bfloat16 and int8 weights: bytes, BLEU, exact match, time
Times are medians of --repeats, every model timed in turn on the test split's first batch.
Writes study.json, report.md and PNGs into --out_dir.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from attention import UserError, cli  # noqa: E402

_RUNS = flags.DEFINE_list('runs', None, 'Run directories of lang runs, comma-separated.')
_OUT_DIR = flags.DEFINE_string('out_dir', 'runs/interpret', 'Where the study is written.')
_FRACTIONS = flags.DEFINE_list('fractions', ['0.25', '0.5', '0.75'],
                               'Fractions of the heads to prune (0 is always measured).')
_METHODS = flags.DEFINE_list('methods', ['gradient', 'random'], 'Pruning orders.')
_NUM = flags.DEFINE_integer('num_examples', 0, 'Test examples scored (0 = all).')
_IMPORTANCE = flags.DEFINE_integer('importance_examples', 500,
                                   'Validation examples head importance is measured on.')
_REPEATS = flags.DEFINE_integer('repeats', 10, 'Timings of each model, taken in turn (median).')
flags.mark_flag_as_required('runs')
cli.subset_of(_METHODS, ('gradient', 'ablation', 'random'))   # pruning.METHODS
cli.positive(_REPEATS)
for _holder in (_NUM, _IMPORTANCE):
  cli.validate(_holder, lambda v: None if v >= 0 else f'must be an integer >= 0, got {v}')
cli.validate(_FRACTIONS, lambda v: None if all(
    _is_fraction(x) for x in v) else f'{",".join(v)}: fractions in (0, 1)')


def _is_fraction(text: str) -> bool:
  try:
    return 0 < float(text) < 1
  except ValueError:
    return False


class Variant:
  """A model of the study (the run's, pruned or quantized), scored, then timed."""

  def __init__(self, run, model, info, pairs):
    from attention.evaluation import evaluator as evaluator_lib
    from attention.models import merge_model, split_model
    graphdef, self.params, rest = split_model(model)
    self.evaluator = evaluator_lib.Evaluator.from_config(run.config, graphdef, rest, run.tokenizer)
    self.model = merge_model(graphdef, self.params, rest)
    metrics, _, _ = self.evaluator.evaluate(self.params, pairs)
    self.row = {k: metrics[k] for k in ('bleu', 'exact_match', 'loss')}
    self.row.update({k: info[k] for k in ('heads_kept', 'parameters_kept',
                                          'attention_parameters_kept', 'bytes', 'bytes_ratio')
                     if k in info})
    self.times = {'forward_ms': [], 'decode_ms': []}

  def time(self, batch) -> None:
    """One timing of each: the teacher-forced forward pass of the batch (the same work
    for every variant but the heads it has), and beam search over its sources (which
    stops when every beam has ended, so a worse model can take longer)."""
    import jax
    for key, call in (('forward_ms', lambda: self.evaluator.eval_step(self.params, batch)),
                      ('decode_ms', lambda: self.evaluator.decode(self.model, batch['src']))):
      start = time.perf_counter()
      jax.block_until_ready(call())
      self.times[key].append(1e3 * (time.perf_counter() - start))


def time_side_by_side(variants, batch) -> None:
  """Medians of --repeats timings of every variant, taken in turn (variant after variant,
  repeat after repeat), each compiled first, so that a slow minute of the machine falls
  on all of them alike."""
  for v in variants:
    v.time(batch)
    v.times = {k: [] for k in v.times}
  for _ in range(_REPEATS.value):
    for v in variants:
      v.time(batch)
  for v in variants:
    v.row.update({k: statistics.median(t) for k, t in v.times.items()})


def study_run(workdir: str) -> dict:
  from attention.data import tasks
  from attention.interpret import alignment, measure
  from attention.training import checkpointing, trained
  run = trained.load_run(workdir, checkpoint='latest')
  data = tasks.load_for(run.config)
  if not data.has_alignment:
    raise UserError(f'--runs={workdir}: task={run.config.task!r} has no gold alignment (lang)')
  pairs, gold = data.texts('test', _NUM.value), data.alignments('test', _NUM.value)
  record = {'workdir': workdir, 'preset': run.config.model.preset, 'step': run.step,
            'test_examples': len(pairs)}
  print(f'{workdir}: alignment at step {run.step}', flush=True)
  record['alignment'] = measure.alignment_scores(run.model, run.config, run.tokenizer, pairs, gold)

  ckpts = checkpointing.Checkpoints(workdir, create=False)
  try:
    steps = ckpts.steps()
  finally:
    ckpts.close()
  record['over_training'] = []
  for step in steps:
    if step == run.step:
      scores = record['alignment']['predict']
    else:
      at = trained.load_run(workdir, checkpoint=step)
      scores = alignment.evaluate(at.model, at.tokenizer, pairs, gold,
                                  batch_size=at.config.eval.batch_size,
                                  bucket_boundaries=at.config.data.bucket_boundaries)
    record['over_training'].append({'step': step, 'best': scores['best'],
                                    'all_mean': scores['all_mean']['aer'],
                                    'layer_mean': scores['layer_mean']['aer']})
    print(f'  step {step}: best head AER {scores["best"]["aer"]:.1f}%', flush=True)

  importance = measure.batches(run.config, run.tokenizer,
                               data.texts('validation', _IMPORTANCE.value))
  batch = measure.batches(run.config, run.tokenizer, pairs)[0]
  record['importance'] = measure.head_importance(run.model, importance)
  _, full = measure.smaller(run.model)
  variants = [({'method': 'none', 'fraction': 0.0}, Variant(run, run.model, full, pairs))]
  for method in _METHODS.value:
    for fraction in _FRACTIONS.value:
      model, info = measure.smaller(run.model, prune=fraction, method=method,
                                    importance_batches=importance, seed=run.config.seed)
      variants.append(({'method': method, 'fraction': float(fraction), 'pruned': info['pruned']},
                       Variant(run, model, info, pairs)))
      print(f'  pruned {fraction} ({method}): BLEU {variants[-1][1].row["bleu"]:.2f}', flush=True)
  for kind in ('bf16', 'int8'):
    model, info = measure.smaller(run.model, quantize_to=kind)
    variants.append(({'weights': kind}, Variant(run, model, info, pairs)))
    print(f'  {kind}: BLEU {variants[-1][1].row["bleu"]:.2f}', flush=True)
  time_side_by_side([v for _, v in variants], batch)
  rows = [{**key, **v.row} for key, v in variants]
  record['pruning'] = [r for r in rows if 'method' in r]
  record['quantization'] = [{'weights': 'float32', **record['pruning'][0]}] + [
      r for r in rows if 'weights' in r]
  record['parameters'], record['attention_parameters'] = full['parameters'], full['attention_parameters']
  record['heads'] = full['heads']
  return record


QUALITY = ('BLEU', 'exact match', 'forward ms', 'beam search ms')


def _quality(row: dict) -> list[str]:
  return [f'{row["bleu"]:.2f}', f'{row["exact_match"]:.2f}', f'{row["forward_ms"]:.0f}',
          f'{row["decode_ms"]:.0f}']


def _table(header, rows) -> list[str]:
  """Markdown lines of a table."""
  return ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header),
          *['| ' + ' | '.join(map(str, cells)) + ' |' for cells in rows]]


def report(records: list[dict]) -> str:
  lines = ['# Interpretability and model size', '']
  for r in records:
    a = r['alignment']
    lines += [f'## `{r["preset"]}` ({r["workdir"]}, step {r["step"]}, {r["test_examples"]} '
              f'test sentences, {r["heads"]} heads, {r["parameters"]:,} parameters)', '',
              '| alignment (AER %, lower is better) | query=predict | query=shift |',
              '|---|---|---|']
    p, s = a['predict'], a['shift']
    lines.append(f'| best head | {p["best"]["aer"]:.1f} ({p["best"]["layer"]} #{p["best"]["head"]}) '
                 f'| {s["best"]["aer"]:.1f} ({s["best"]["layer"]} #{s["best"]["head"]}) |')
    for i, layer in enumerate(p['layers']):
      lines.append(f'| {layer}, heads averaged | {p["layer_mean"]["aer"][i]:.1f} | '
                   f'{s["layer_mean"]["aer"][i]:.1f} |')
    lines += [f'| all heads averaged | {p["all_mean"]["aer"]:.1f} | {s["all_mean"]["aer"]:.1f} |',
              '', '| step | best head AER | all heads averaged |', '|---|---|---|']
    lines += [f'| {o["step"]} | {o["best"]["aer"]:.1f} ({o["best"]["layer"]} #{o["best"]["head"]}) '
              f'| {o["all_mean"]:.1f} |' for o in r['over_training']]
    lines += ['', *_table(['pruned', 'order', 'heads', 'attention params', *QUALITY],
                          [[f'{row["fraction"]:.0%}', row['method'], row['heads_kept'],
                            f'{row["attention_parameters_kept"]:,}', *_quality(row)]
                           for row in r['pruning']])]
    lines += ['', *_table(['weights', 'bytes', 'vs float32', *QUALITY],
                          [[row['weights'], f'{row["bytes"]:,}', f'{row["bytes_ratio"]:.2f}x',
                            *_quality(row)] for row in r['quantization']])]
    lines.append('')
  return '\n'.join(lines)


def plot(records: list[dict], out_dir: str) -> None:
  from attention.interpret import plots
  for r in records:
    a = r['alignment']['predict']
    plots.grid(a['aer'], a['layers'], f'{r["preset"]}: AER (%) per cross-attention head',
               os.path.join(out_dir, f'aer_{r["preset"]}.png'))
  plots.curves({f'{r["preset"]} best head': ([o['step'] for o in r['over_training']],
                                              [o['best']['aer'] for o in r['over_training']])
                for r in records} | {
      f'{r["preset"]} all heads': ([o['step'] for o in r['over_training']],
                                   [o['all_mean'] for o in r['over_training']]) for r in records},
      'training step', 'AER (%)', 'Alignment over training', os.path.join(out_dir, 'aer_training.png'))
  series = {}
  for r in records:
    base = r['pruning'][0]
    for method in sorted({row['method'] for row in r['pruning']} - {'none'}):
      rows = [base] + [row for row in r['pruning'] if row['method'] == method]
      series[f'{r["preset"]} {method}'] = ([row['fraction'] for row in rows],
                                            [row['bleu'] for row in rows])
  plots.curves(series, 'fraction of heads pruned', 'test BLEU', 'Quality against heads kept',
               os.path.join(out_dir, 'pruning.png'))
  size = {}
  for r in records:
    pruned = [row for row in r['pruning'] if row['method'] in ('none', 'gradient')]
    size[f'{r["preset"]} heads pruned (float32)'] = ([row['bytes'] / 2**20 for row in pruned],
                                                     [row['bleu'] for row in pruned])
    size[f'{r["preset"]} float32, bf16, int8'] = ([row['bytes'] / 2**20 for row in r['quantization']],
                                                  [row['bleu'] for row in r['quantization']])
  plots.curves(size, 'parameter bytes (MiB)', 'test BLEU', 'Quality against bytes',
               os.path.join(out_dir, 'size.png'))


def main():
  cli.check_creatable(_OUT_DIR.value, '--out_dir')
  presets = []
  for workdir in _RUNS.value:
    if not os.path.isfile(os.path.join(workdir, 'config.json')):
      raise UserError(f'--runs={workdir}: no run there (train.py writes config.json)')
    with open(os.path.join(workdir, 'config.json')) as f:
      presets.append(json.load(f).get('model', {}).get('preset'))
  if len(set(presets)) < len(presets):
    raise UserError(f'--runs: two runs of one preset ({", ".join(map(str, presets))}); the '
                    'plots and tables are named by preset')
  try:
    records = [study_run(w) for w in _RUNS.value]
  except ValueError as e:   # a model that cannot be pruned as asked, or has no attention
    raise UserError(f'--runs: {e}') from None
  os.makedirs(_OUT_DIR.value, exist_ok=True)
  with open(os.path.join(_OUT_DIR.value, 'study.json'), 'w') as f:
    json.dump(records, f, indent=1)
  with open(os.path.join(_OUT_DIR.value, 'report.md'), 'w') as f:
    f.write(report(records))
  plot(records, _OUT_DIR.value)
  print(f'wrote {_OUT_DIR.value}/study.json, report.md and PNGs')


if __name__ == '__main__':
  cli.main(main, config_flag=None)
