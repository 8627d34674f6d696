"""Learning-rate schedules against their closed forms."""

import numpy as np
import pytest

from attention.training import optimizer
from configs.default import get_config


@pytest.mark.parametrize('warmup', [0, 400])
def test_rsqrt_is_the_papers_schedule(warmup):
  cfg = get_config().train
  cfg.update(schedule='rsqrt', warmup_steps=warmup, learning_rate=2e-3)
  schedule = optimizer.make_schedule(cfg)
  for step in (0, 1, 199, 400, 401, 1600, 2999):
    if not warmup:
      expected = 2e-3 / np.sqrt(step + 1)
    elif step < warmup:
      expected = 2e-3 * step / warmup          # linear warmup
    else:
      expected = 2e-3 * np.sqrt(warmup / step)  # peak / sqrt(step / warmup)
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)


def test_cosine_and_constant():
  cfg = get_config().train
  cfg.update(schedule='cosine', warmup_steps=100, num_steps=1100, learning_rate=1e-3)
  cosine = optimizer.make_schedule(cfg)
  assert float(cosine(50)) == pytest.approx(5e-4)
  assert float(cosine(600)) == pytest.approx(5e-4, rel=1e-5)
  assert float(cosine(1100)) == pytest.approx(0.0, abs=1e-9)
  cfg.schedule = 'constant'
  assert float(optimizer.make_schedule(cfg)(900)) == pytest.approx(1e-3)
  cfg.schedule = 'linear'
  with pytest.raises(ValueError, match='train.schedule must be one of'):
    optimizer.make_schedule(cfg)
