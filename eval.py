"""Evaluates a trained run, or translates a text file with it.

  python eval.py --workdir=DIR [--split=test] [--checkpoint=latest|best|STEP] [--beam_size=K]
  python eval.py --workdir=DIR --input=FILE --output=FILE
  python eval.py --workdir=DIR --plot_attention=N
  python eval.py --workdir=DIR --alignment            # cross-attention against the gold
  python eval.py --workdir=DIR --head_importance      # ablation and gradient, per head
  python eval.py --workdir=DIR --prune_heads=0.25 [--prune_method=gradient] [--quantize=int8]

Scores go to DIR/eval/<split>.json (bleu, chrf, exact_match, token_accuracy in percent,
step, sacrebleu signatures) and predictions to DIR/eval/<split>.tsv. A smaller model
(--prune_heads, --quantize) is scored into DIR/eval/<split>_pruned-K-METHOD_int8.json
with its parameter counts and bytes; --alignment writes eval/alignment_<split>.json and
--head_importance eval/head_importance_<split>.json, each with PNG grids beside it
(docs/interpretability.md).
"""

import os
import sys

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

from absl import flags  # noqa: E402

from attention import cli  # noqa: E402
from attention import UserError  # noqa: E402

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory written by train.py.')
_SPLIT = flags.DEFINE_string('split', 'test', 'Split to evaluate.')
_CHECKPOINT = flags.DEFINE_string('checkpoint', 'latest', "'latest', 'best' or a step number.")
_BEAM = flags.DEFINE_integer('beam_size', None, 'Beam size (default: the run\'s eval.beam_size; 1 = greedy).')
_NUM = flags.DEFINE_integer('num_examples', 0, 'Evaluate the first N examples (0 = all).')
_DATA_DIR = flags.DEFINE_string('data_dir', None, "Where the dataset is prepared (default: the run's).")
_INPUT = flags.DEFINE_string('input', None, 'Translate this text file, one sentence per line.')
_OUTPUT = flags.DEFINE_string('output', None, 'With --input: where the translations go.')
_PLOT = flags.DEFINE_integer('plot_attention', 0,
                             'Write attention heat maps of the first N examples of --split.')
_ALIGNMENT = flags.DEFINE_bool('alignment', False,
                               'Score cross-attention alignments against the gold ones (lang).')
_IMPORTANCE = flags.DEFINE_bool('head_importance', False,
                                'Measure every head\'s importance (ablation and gradient).')
_PRUNE = flags.DEFINE_string('prune_heads', None,
                             'Prune this many heads (K) or this fraction of them, then score.')
_PRUNE_METHOD = flags.DEFINE_enum('prune_method', 'gradient', ['gradient', 'ablation', 'random'],
                                  'Order of pruning: least important first, or random.')
_QUANTIZE = flags.DEFINE_enum('quantize', None, ['int8', 'bf16'],
                              'Score with int8 weights (per output channel) or in bfloat16.')
_IMPORTANCE_EXAMPLES = flags.DEFINE_integer(
    'importance_examples', 500, 'Validation examples that head importance is measured on '
    'for pruning (0 = all).')
_EXAMPLES = flags.DEFINE_integer('show', 3, 'Examples to print.')
_CACHE = flags.DEFINE_string('compilation_cache', None, "JAX compilation cache ('off' disables).")
flags.mark_flag_as_required('workdir')
cli.validate(_BEAM, lambda v: None if v is None or v >= 1 else f'must be an integer >= 1, got {v}')
for _holder in (_PLOT, _NUM, _IMPORTANCE_EXAMPLES):
  cli.validate(_holder, lambda v: None if v >= 0 else f'must be an integer >= 0, got {v}')


def read_lines(path: str) -> list[str]:
  """Lines split on '\\n' only (so the output has exactly as many), '\\r' stripped,
  undecodable bytes replaced."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise UserError(f'--input={path}: {e.strerror}') from None
  lines = data.split(b'\n')
  if lines and lines[-1] == b'':
    lines.pop()
  return [line.rstrip(b'\r').decode('utf-8', errors='replace') for line in lines]


def checkpoint_arg(value: str):
  if value in ('latest', 'best'):
    return value
  if value.isdigit():
    return int(value)
  raise UserError(f"--checkpoint={value!r}: allowed: latest, best, or a step number")


def prune_arg(value):
  """--prune_heads as given, once it reads as a count or a fraction."""
  if value is None:
    return None
  from attention.interpret import pruning
  try:
    pruning.parse_amount(value)
  except ValueError as e:
    raise UserError(f'--prune_heads={e}') from None
  return value


def main():
  workdir = _WORKDIR.value
  if bool(_INPUT.value) != bool(_OUTPUT.value):
    raise UserError('--input and --output go together: give both')
  # What a run does: translate, plot, measure, or score (a smaller model: prune and/or
  # quantize, which go together).
  modes = [name for name, on in (('--input', _INPUT.value), ('--plot_attention', _PLOT.value),
                                 ('--alignment', _ALIGNMENT.value),
                                 ('--head_importance', _IMPORTANCE.value),
                                 ('--prune_heads', _PRUNE.value), ('--quantize', _QUANTIZE.value))
           if on]
  if len(set(modes) - {'--quantize', '--prune_heads'}) + bool(
      {'--quantize', '--prune_heads'} & set(modes)) > 1:
    raise UserError(f'{", ".join(modes)}: one at a time (--prune_heads and --quantize '
                    'go together)')
  prune = prune_arg(_PRUNE.value)
  which = checkpoint_arg(_CHECKPOINT.value)
  if _OUTPUT.value:   # before the minutes of translating, not after
    directory = os.path.dirname(os.path.abspath(_OUTPUT.value))
    if os.path.isdir(_OUTPUT.value) or not (os.path.isdir(directory)
                                             and os.access(directory, os.W_OK)):
      raise UserError(f'--output={_OUTPUT.value}: not a file this process can write (its '
                      'directory must exist)')
  lines = read_lines(_INPUT.value) if _INPUT.value else None

  from attention.data import tasks
  from attention.evaluation import evaluator as evaluator_lib
  from attention.training import trained

  cli.enable_compilation_cache(_CACHE.value)
  run = trained.load_run(workdir, checkpoint=which)
  config, tokenizer, step = run.config, run.tokenizer, run.step
  evaluator = run.evaluator(_BEAM.value)

  if lines is not None:
    limit = config.data.max_length
    for i, line in enumerate(lines):
      n = len(tokenizer.encode(line)) + 1
      if n > limit:
        print(f'warning: {_INPUT.value}:{i + 1}: {n} tokens, truncated to data.max_length={limit}',
              file=sys.stderr)
    hypotheses = run.translate(lines, beam_size=_BEAM.value)
    with open(_OUTPUT.value + '.tmp', 'w', encoding='utf-8') as f:
      f.writelines(h + '\n' for h in hypotheses)
    os.replace(_OUTPUT.value + '.tmp', _OUTPUT.value)
    print(f'translated {len(lines)} lines with step {step} -> {_OUTPUT.value}')
    return

  if _DATA_DIR.value:
    config.data.data_dir = _DATA_DIR.value
  data = tasks.load_for(config)
  if _SPLIT.value not in data.sources:
    raise UserError(f'--split={_SPLIT.value!r}: allowed: {", ".join(sorted(data.sources))}')
  pairs = data.texts(_SPLIT.value, _NUM.value)
  if _ALIGNMENT.value or _IMPORTANCE.value:
    write_interpretation(run, data, pairs)
    return
  if prune or _QUANTIZE.value:
    score_smaller(run, data, pairs, prune)
    return
  if _PLOT.value:
    paths = plot_attention(run, pairs[:_PLOT.value],
                           os.path.join(workdir, 'eval', 'attention', _SPLIT.value))
    print(f'wrote {len(paths)} attention plots under {os.path.dirname(paths[0])}' if paths
          else 'this model has no attention weights to plot')
    return
  metrics, rows, signatures = evaluator.evaluate(run.params, pairs)
  path = evaluator_lib.write_results(
      workdir, _SPLIT.value, step, metrics, rows, signatures,
      extra={'checkpoint': str(which), 'beam_size': evaluator.beam_size})
  for source, reference, hypothesis in rows[:_EXAMPLES.value]:
    print(f'  source:     {source}\n  reference:  {reference}\n  hypothesis: {hypothesis}\n')
  print(evaluator_lib.summary_line(_SPLIT.value, step, metrics))
  for name, sig in signatures.items():
    print(f'{name} signature: {sig}')
  print(f'wrote {path}')


def write_interpretation(run, data, pairs):
  """--alignment or --head_importance on --split: a JSON and PNG grids in DIR/eval/."""
  from attention.evaluation import evaluator as evaluator_lib
  from attention.interpret import measure, plots
  out_dir = os.path.join(_WORKDIR.value, evaluator_lib.EVAL_DIR)
  if _ALIGNMENT.value:
    if not data.has_alignment:
      raise UserError(f'--alignment: task={run.config.task!r} has no gold word alignment '
                      '(only lang has one)')
    gold = data.alignments(_SPLIT.value, _NUM.value)
    try:
      record = measure.alignment_scores(run.model, run.config, run.tokenizer, pairs, gold)
    except ValueError as e:
      raise UserError(f'--alignment: {e}') from None
    name = f'alignment_{_SPLIT.value}'
    for query, r in record.items():
      plots.grid(r['aer'], r['layers'], f'AER (%) per cross-attention head, query={query}',
                 os.path.join(out_dir, f'{name}_{query}.png'))
      best = r['best']
      print(f'{query}: best head {best["layer"]} #{best["head"]}: AER {best["aer"]:.1f}%, '
            f'accuracy {best["accuracy"]:.1f}%; all heads averaged: AER '
            f'{r["all_mean"]["aer"]:.1f}%')
  else:
    try:
      record = measure.head_importance(run.model,
                                       measure.batches(run.config, run.tokenizer, pairs))
    except ValueError as e:   # a model without multi-head attention (the LSTM)
      raise UserError(f'--head_importance: {e}') from None
    name = f'head_importance_{_SPLIT.value}'
    for kind in ('encoder/', 'decoder/'):
      for attn in ('self_attention', 'cross_attention'):
        rows, values = measure.grid_of({k: v for k, v in record['ablation'].items()
                                        if k.startswith(kind)}, attn)
        if len(rows):
          plots.grid(values, rows, f'loss rise when the head is removed ({kind}{attn})',
                     os.path.join(out_dir, f'{name}_{kind[:-1]}_{attn}.png'), fmt='{:.2f}',
                     cmap='viridis')
    print(f'base loss {record["base_loss"]:.4f}; most important head by ablation: '
          + max(((k, h, v) for k, vs in record['ablation'].items() for h, v in enumerate(vs)),
                key=lambda t: t[2]).__repr__())
  record.update(split=_SPLIT.value, step=run.step, num_examples=len(pairs))
  print(f'wrote {evaluator_lib.write_json(_WORKDIR.value, name, record)}')


def score_smaller(run, data, pairs, prune):
  """--prune_heads and/or --quantize: the smaller model scored on --split."""
  from attention.evaluation import evaluator as evaluator_lib
  from attention.interpret import measure
  from attention.models import split_model
  importance = None
  if prune and _PRUNE_METHOD.value != 'random':
    if 'validation' not in data.sources or _SPLIT.value == 'validation':
      raise UserError(f'--prune_heads with --split={_SPLIT.value}: importance is measured '
                      'on the validation split, which must exist and not be the one scored')
    importance = measure.batches(run.config, run.tokenizer,
                                 data.texts('validation', _IMPORTANCE_EXAMPLES.value))
  try:
    model, info = measure.smaller(run.model, prune=prune, method=_PRUNE_METHOD.value,
                                  importance_batches=importance, quantize_to=_QUANTIZE.value,
                                  seed=run.config.seed)
  except ValueError as e:
    raise UserError(f'--prune_heads={prune}: {e}') from None
  graphdef, params, rest = split_model(model)
  evaluator = evaluator_lib.Evaluator.from_config(run.config, graphdef, rest, run.tokenizer,
                                                  beam_size=_BEAM.value)
  metrics, rows, signatures = evaluator.evaluate(params, pairs)
  name = measure.variant_name(_SPLIT.value, prune, _PRUNE_METHOD.value, _QUANTIZE.value)
  path = evaluator_lib.write_results(
      _WORKDIR.value, name, run.step, metrics, rows, signatures,
      extra={'checkpoint': _CHECKPOINT.value, 'beam_size': evaluator.beam_size, **info})
  print(f'{info["heads_kept"]}/{info["heads"]} heads, '
        f'{info["attention_parameters_kept"]:,}/{info["attention_parameters"]:,} attention '
        f'parameters, {info["bytes"]:,} bytes ({info["bytes_ratio"]:.2f}x fewer than float32)')
  print(evaluator_lib.summary_line(name, run.step, metrics))
  print(f'wrote {path}')


def plot_attention(run, pairs, prefix):
  """Heat maps of every attention of the run on each (source, target) pair."""
  from attention.data import pipeline
  from attention.evaluation import plots
  paths = []
  for i, (source, target) in enumerate(pairs):
    maps = run.attention_maps(source, target)
    ex = pipeline.encode_pair(run.tokenizer, source, target,
                              max_source_length=run.config.data.max_length)
    paths += plots.plot_example(maps, run.tokenizer.pieces(ex['src']),
                                run.tokenizer.pieces(ex['tgt_in']), f'{prefix}_{i}')
  return paths


if __name__ == '__main__':
  cli.main(main, config_flag='config' if 'config' in flags.FLAGS else None)
