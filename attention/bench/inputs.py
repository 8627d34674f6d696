"""What the model benchmarks time and feed: a median of warm calls, and random token pairs
(scripts/bench_model.py, scripts/bench_flax_wmt.py)."""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp

from attention import BOS_ID, NUM_SPECIAL


def median_seconds(fn, repeats: int) -> float:
  """Median wall time of `repeats` calls of fn() after one untimed call (compilation)."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def random_tokens(rng, shape, vocab: int):
  """int32 ids drawn uniformly from the non-special ids [NUM_SPECIAL, vocab)."""
  return jnp.asarray(rng.integers(NUM_SPECIAL, vocab, shape), jnp.int32)


def random_pairs(rng, batch: int, length: int, vocab: int, target_length: int = 0) -> dict:
  """A training batch of full-length random pairs: src [batch, length], tgt_out and tgt_in
  (BOS, then tgt_out shifted right) [batch, target_length or length]."""
  tgt = random_tokens(rng, (batch, target_length or length), vocab)
  return {'src': random_tokens(rng, (batch, length), vocab), 'tgt_out': tgt,
          'tgt_in': jnp.concatenate([jnp.full((batch, 1), BOS_ID, jnp.int32), tgt[:, :-1]], 1)}
