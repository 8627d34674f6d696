"""Evaluates a trained run, or translates a text file with it.

  python eval.py --workdir=DIR [--split=test] [--checkpoint=latest|best|STEP] [--beam_size=K]
  python eval.py --workdir=DIR --input=FILE --output=FILE
  python eval.py --workdir=DIR --plot_attention=N

Scores go to DIR/eval/<split>.json (bleu, chrf, exact_match, token_accuracy in percent,
step, sacrebleu signatures) and predictions to DIR/eval/<split>.tsv.
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
_EXAMPLES = flags.DEFINE_integer('show', 3, 'Examples to print.')
_CACHE = flags.DEFINE_string('compilation_cache', None, "JAX compilation cache ('off' disables).")
flags.mark_flag_as_required('workdir')
cli.validate(_BEAM, lambda v: None if v is None or v >= 1 else f'must be an integer >= 1, got {v}')
for _holder in (_PLOT, _NUM):
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


def main():
  workdir = _WORKDIR.value
  if bool(_INPUT.value) != bool(_OUTPUT.value):
    raise UserError('--input and --output go together: give both')
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
