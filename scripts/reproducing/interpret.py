"""The interpretability and model-size study (scripts/interpret_study.py) as a job: the
default run and `small` trained with a checkpoint every 50 steps, then studied; and its
claims, read off each run's study.json (docs/interpretability.md quotes them)."""

from __future__ import annotations

from reproducing.spec import PY, Claim, Job

NAME = 'study_interpret'
# The checkpoints the alignment-over-training curve reads; the run is otherwise `make train`.
CHECKPOINTS = ('--config.checkpoint.every_steps=50', '--config.checkpoint.keep=6')
STUDY = ('--fractions=0.1,0.25,0.5', '--methods=gradient,random')
# `small` costs 4x the FLOPs: its study scores 500 of the 2000 test sentences.
RUNS = {'default': ('configs/default.py', ()),
        'small': ('configs/default.py:model=small', ('--num_examples=500',))}
WHERE = 'docs/interpretability, Results'
FILES = ('study.json', 'report.md', 'aer_training.png', 'pruning.png', 'size.png')

JOBS = [Job(NAME, (
    *[(PY, 'train.py', f'--config={config}', f'--workdir={{out}}/{run}', '--record_machine',
       *CHECKPOINTS) for run, (config, _) in RUNS.items()],
    *[(PY, 'scripts/interpret_study.py', f'--runs={{out}}/{run}', f'--out_dir={{out}}/{run}_study',
       *STUDY, *extra) for run, (_, extra) in RUNS.items()]),
    {**{f'{run}_study/{f}': f'{run}/{f}' for run in RUNS for f in FILES},
     **{f'{run}_study/aer_{preset}.png': f'{run}/aer_{preset}.png'
        for run, preset in (('default', 'mini'), ('small', 'small'))},
     **{f'{run}/{f}': f'{run}/{f}' for run in RUNS for f in ('machine.json', 'metrics.jsonl')}},
    minutes=25, resumes=True)]


def _pruned(method, fraction, key):
  def value(records):
    rows = records[0]['pruning']
    return float(next(r for r in rows if r['method'] == method and r['fraction'] == fraction)[key])
  return value


def _weights(kind, key, minus_float32=False):
  def value(records):
    rows = {r['weights']: r for r in records[0]['quantization']}
    return float(rows[kind][key]) - (float(rows['float32'][key]) if minus_float32 else 0.0)
  return value


def _claims(run: str) -> list[Claim]:
  recorded, produced = f'{NAME}/{run}/study.json', f'{run}_study/study.json'
  claim = lambda name, value, **kw: Claim(f'interpret {run}: {name}', NAME, recorded, produced,
                                          value, where=WHERE, **kw)
  return [
      claim('best cross-attention head, AER (%)',
            lambda r: r[0]['alignment']['predict']['best']['aer'], abs=2.0, same_machine=True),
      claim('all heads averaged, AER (%)',
            lambda r: r[0]['alignment']['predict']['all_mean']['aer'], abs=2.0, same_machine=True),
      claim('float32 test BLEU', _weights('float32', 'bleu'), abs=1.0, same_machine=True),
      claim('int8 weights: bytes / float32 bytes', _weights('int8', 'bytes_ratio'), rel=1e-6),
      claim('int8 weights: BLEU - float32 BLEU', _weights('int8', 'bleu', True), abs=0.5,
            same_machine=True),
      claim('bf16: BLEU - float32 BLEU', _weights('bf16', 'bleu', True), abs=0.5,
            same_machine=True),
      *[claim(f'{fraction:.0%} of heads pruned ({method}): test BLEU',
              _pruned(method, fraction, 'bleu'), abs=2.0, same_machine=True)
        for method in ('gradient', 'random') for fraction in (0.1, 0.25, 0.5)],
      claim('25% of heads pruned: attention parameters kept',
            _pruned('gradient', 0.25, 'attention_parameters_kept')),
  ]


CLAIMS = _claims('default') + _claims('small')
