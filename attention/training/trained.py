"""A trained run, loaded for use from Python (a notebook, a script, eval.py): its config,
tokenizer, parameters and model, with translation and attention maps.

  run = load_run('runs/default', checkpoint='best')
  run.translate(['the big cat sees a dog .'], beam_size=4)   # -> list of strings
  run.attention_maps('the big cat sees a dog .')             # {name: [heads, T, S]}
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Sequence

import numpy as np

from attention import UserError
from attention.data import pipeline, tasks
from attention.evaluation import evaluator as evaluator_lib
from attention.interpret import maps as interpret_maps
from attention.models import merge_model
from attention.training import checkpointing, run_dir


@dataclasses.dataclass
class Run:
  """What a run directory holds, restored at one checkpoint. `params` are the trained
  parameters; `model` is a Flax NNX module carrying them."""
  workdir: str
  config: Any            # ml_collections.ConfigDict, as train.py resolved it
  tokenizer: Any         # attention.data.tokenizers.WordTokenizer or SentencePieceTokenizer
  step: int
  params: Any
  graphdef: Any
  rest: Any
  _evaluators: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

  @functools.cached_property
  def model(self):
    return merge_model(self.graphdef, self.params, self.rest)

  def evaluator(self, beam_size: int | None = None) -> evaluator_lib.Evaluator:
    """The run's evaluator (config.eval), with another beam size if given (1 = greedy);
    one per beam size, so that its compiled decoders are reused."""
    if beam_size not in self._evaluators:
      self._evaluators[beam_size] = evaluator_lib.Evaluator.from_config(
          self.config, self.graphdef, self.rest, self.tokenizer, beam_size=beam_size)
    return self._evaluators[beam_size]

  def translate(self, sentences: Sequence[str], beam_size: int | None = None) -> list[str]:
    """One translation per sentence; sources longer than data.max_length are truncated."""
    return self.evaluator(beam_size).translate(self.params, list(sentences),
                                               max_source_length=self.config.data.max_length)

  def attention_maps(self, source: str, target: str | None = None) -> dict[str, np.ndarray]:
    """{name: weights [heads, T, S]} of one teacher-forced pass over (source, target),
    names like 'decoder/2/cross_attention'; T counts BOS and the target tokens, S the
    source tokens and EOS. Without a target, the run's own greedy translation."""
    if target is None:
      target = self.translate([source], beam_size=1)[0]
    ex = pipeline.encode_pair(self.tokenizer, source, target,
                              max_source_length=self.config.data.max_length)
    maps = interpret_maps.attention_maps(self.model, ex['src'][None], ex['tgt_in'][None])
    return {name: np.asarray(weights[0]) for name, weights in maps.items()}


def load_run(workdir: str, checkpoint: str | int = 'latest') -> Run:
  """The run train.py wrote in `workdir`, at checkpoint 'latest', 'best' or a step.
  UserError (one line) when there is no run, no such checkpoint or every one is damaged."""
  config = run_dir.load_config(workdir) if os.path.isdir(workdir) else None
  tokenizer = tasks.load_tokenizer(workdir) if config is not None else None
  if config is None or tokenizer is None:
    raise UserError(f'{workdir}: no run there (config.json and vocab.json are '
                    'written by train.py)')
  graphdef, rest, _, _, state = run_dir.build(config)
  ckpts = checkpointing.Checkpoints(workdir, create=False)
  try:
    state, step = ckpts.restore(checkpointing.abstract(state), which=checkpoint)
  finally:
    ckpts.close()
  return Run(workdir, config, tokenizer, step, state.params, graphdef, rest)
