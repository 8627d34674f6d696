"""The per-operation profile finds XLA's operations, their FLOPs and their calls."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attention.bench import op_profile

M, K, N, STEPS = 24, 40, 56, 5


def _looped_product():
  """STEPS products of [M, K] x [K, N] inside a loop, each followed by an exp."""
  def fn(a, b):
    def step(i, acc):
      return acc + jnp.exp(jnp.tanh((a * i) @ b))
    return jax.lax.fori_loop(0, STEPS, step, jnp.zeros((M, N), jnp.float32))
  rng = np.random.default_rng(0)
  args = [jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((M, K), (K, N))]
  return jax.jit(fn).lower(*args).compile(), args


def test_classify_counts_the_product_flops():
  compiled, _ = _looped_product()
  ops = op_profile.classify(compiled.as_text())
  products = [flops for category, flops in ops.values() if category == 'matmul']
  assert products and max(products) == 2 * M * N * K
  assert any(category == 'exp' for category, _ in ops.values())
  assert any(category == 'control' for category, _ in ops.values())   # the while loop


@pytest.mark.skipif(not op_profile.available(), reason='this jax cannot read its traces')
def test_profile_sees_every_loop_step_and_adds_up():
  compiled, args = _looped_product()
  report = op_profile.profile(compiled, args, repeats=2)
  matmuls = [o for o in report['ops'] if o['category'] == 'matmul']
  assert matmuls and all(o['calls'] == STEPS for o in matmuls)
  assert sum(o['gflop'] for o in matmuls) * 1e9 == pytest.approx(STEPS * 2 * M * N * K)
  assert [o['calls'] for o in report['ops'] if o['category'] == 'exp'] == [STEPS]
  assert [o['calls'] for o in report['ops'] if o['category'] == 'control'] == [1]
  shares = [c['share'] for c in report['categories'].values()]
  assert abs(sum(shares) - 1.0) < 1e-9
  assert report['wall_ms'] > 0 and report['traced_ms'] > 0
  # Self times: the loop's own time excludes its body. Counting the body twice would make
  # the traced total about twice the wall time, and the loop the largest entry.
  assert report['overlap'] < 1.5
  control = report['categories']['control']['ms']
  assert control < 0.5 * report['traced_ms']
