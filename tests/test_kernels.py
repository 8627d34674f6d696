"""Kernels against float64 NumPy on fresh random inputs: forward and gradients.

Every run draws new inputs; a failure prints the seed that reproduces it
(ATTENTION_TEST_SEED=<seed> pytest ...).
"""

import functools
import json
import os
import re
import secrets
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attention import kernels
from attention.kernels import dropout as dropout_lib
from attention.kernels import head_parallel
from tests import e2e
from tests import numpy_attention as npa

FWD_TOL = 1e-5
GRAD_TOL = 1e-4


def fresh_rng():
  seed = int(os.environ.get('ATTENTION_TEST_SEED', secrets.randbits(32)))
  return np.random.default_rng(seed), seed


def rel_err(got, want, floor=0.1):
  """max |got - want| / max(max |want|, floor).

  The floor matters only where the exact gradient vanishes (one visible key: softmax is
  constant, dq = dk = 0 exactly, and fp32 leaves ~1e-6 from cancelling terms of size
  |dO||v||q| ~ 10). Inputs and cotangents are unit normal, so gradients that do not
  vanish are O(1) and above the floor: for them this is the plain relative error."""
  got = np.asarray(got, np.float64)
  want = np.asarray(want, np.float64)
  assert got.shape == want.shape, (got.shape, want.shape)
  return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), floor))


# name: (B, Tq, Tk, N, K, H, Hv, options). Options hold callables drawing masks etc.
CASES = {
    'odd_lengths': (2, 37, 37, 2, 2, 16, 16, {}),
    'cross_q_ne_kv': (2, 19, 45, 2, 2, 32, 32, {}),
    'q_len_1': (2, 1, 33, 2, 2, 16, 16, {}),
    'kv_len_1': (1, 9, 1, 2, 2, 16, 16, {}),
    'gqa': (2, 21, 29, 4, 2, 16, 16, {}),
    'mqa_causal': (1, 40, 40, 4, 1, 16, 16, {'is_causal': True}),
    'causal_cross': (2, 23, 41, 2, 2, 16, 16, {'is_causal': True}),
    'causal_longer_q': (1, 41, 23, 2, 1, 16, 16, {'is_causal': True}),
    'padding': (3, 26, 31, 2, 2, 16, 16, {'q_lengths': [26, 5, 17], 'kv_lengths': [31, 0, 12]}),
    'segments': (2, 30, 30, 2, 2, 16, 16, {'segments': True}),
    'mask_bias': (2, 18, 27, 4, 2, 16, 16, {'mask': True, 'bias': (1, 4, 18, 27)}),
    'bias_broadcast': (2, 17, 25, 2, 2, 16, 16, {'bias': (2, 1, 1, 25), 'is_causal': True}),
    'head_dim_64': (1, 33, 35, 2, 2, 64, 64, {'is_causal': True}),
    'head_dim_128': (1, 20, 45, 2, 1, 128, 128, {'kv_lengths': [30]}),
    'alibi': (2, 29, 29, 4, 4, 16, 16, {'alibi': True, 'is_causal': True}),
    'dropout': (2, 25, 33, 4, 2, 16, 16, {'dropout_rate': 0.3}),
    'value_dim_differs': (2, 19, 22, 2, 2, 16, 24, {'is_causal': True}),
}

# Small tiles, so that every case crosses several block boundaries with ragged ends; the
# backward pass tiled otherwise than the forward (flash_defaults: both the same).
KERNEL_OPTIONS = {
    'reference': {},
    'flash': {'block_q': 8, 'block_kv': 16, 'bwd_block_q': 16, 'bwd_block_kv': 8},
    'flash_defaults': {},
    'xla': {},
}


def make_case(name, rng, dtype=jnp.float32):
  b, tq, tk, n, kh, h, hv, opts = CASES[name]
  q = rng.normal(size=(b, tq, n, h))
  k = rng.normal(size=(b, tk, kh, h))
  v = rng.normal(size=(b, tk, kh, hv))
  kw = {}
  if opts.get('is_causal'):
    kw['is_causal'] = True
  for key in ('q_lengths', 'kv_lengths'):
    if key in opts:
      kw[key] = np.asarray(opts[key], np.int32)
  if opts.get('segments'):
    qs = np.sort(rng.integers(0, 3, (b, tq)), axis=1)
    ks = np.sort(rng.integers(0, 3, (b, tk)), axis=1)
    qs[:, -3:] = 7  # a segment no key belongs to: fully masked rows
    kw['q_segment_ids'], kw['kv_segment_ids'] = qs.astype(np.int32), ks.astype(np.int32)
  if opts.get('mask'):
    mask = rng.random((b, 1, tq, tk)) < 0.7
    mask[:, :, 2] = False  # a fully masked row
    kw['mask'] = mask
  if opts.get('alibi'):
    kw['alibi_slopes'] = np.linspace(0.05, 0.5, n).astype(np.float32)
  if 'dropout_rate' in opts:
    kw['dropout_rate'] = opts['dropout_rate']
    kw['dropout_rng'] = jax.random.key(int(rng.integers(1 << 30)))
  bias = rng.normal(size=opts['bias']) if 'bias' in opts else None
  cotangent = rng.normal(size=(b, tq, n, hv))
  cast = lambda x: None if x is None else jnp.asarray(x, dtype)
  return cast(q), cast(k), cast(v), cast(bias), kw, cotangent


def numpy_result(q, k, v, bias, kw, cotangent):
  b, tq, n, _ = q.shape
  tk = k.shape[1]
  allowed = npa.visible(
      b, n, tq, tk, mask=kw.get('mask'), is_causal=kw.get('is_causal', False),
      q_lengths=kw.get('q_lengths'), kv_lengths=kw.get('kv_lengths'),
      q_segment_ids=kw.get('q_segment_ids'), kv_segment_ids=kw.get('kv_segment_ids'))
  keep = None
  if kw.get('dropout_rate'):
    # The mask from the contract's own statement, not from the code under test.
    keep = npa.dropout_keep(kernels.common.rng_to_seed(kw['dropout_rng']), kw['dropout_rate'],
                            b, n, tq, tk)
  to64 = lambda x: None if x is None else np.asarray(x, np.float64)
  fwd = npa.Attention(to64(q), to64(k), to64(v), allowed=allowed, bias=to64(bias),
                      alibi_slopes=kw.get('alibi_slopes'), keep=keep,
                      dropout_rate=kw.get('dropout_rate', 0.0))
  return fwd.out, fwd.backward(cotangent)


STATIC_OPTIONS = ('is_causal', 'dropout_rate')


@functools.lru_cache(maxsize=None)
def compiled_vjp(kernel_key, case_name, dtype_name):
  """One jitted forward+backward per (kernel, case, dtype): compiles once per process."""
  fn = kernels.get('flash' if kernel_key.startswith('flash') else kernel_key)
  opts = CASES[case_name][-1]
  static = {key: opts[key] for key in STATIC_OPTIONS if key in opts}
  has_bias = 'bias' in opts

  @jax.jit
  def run(q, k, v, bias, arrays, cotangent):
    def f(q, k, v, bias):
      return fn(q, k, v, bias=bias if has_bias else None, **arrays, **static,
                **KERNEL_OPTIONS[kernel_key])
    out, vjp = jax.vjp(f, q, k, v, bias)
    return out, vjp(cotangent.astype(out.dtype))

  return run


def call_kernel(kernel_key, case_name, q, k, v, bias, kw, cotangent):
  arrays = {key: val for key, val in kw.items() if key not in STATIC_OPTIONS}
  run = compiled_vjp(kernel_key, case_name, str(q.dtype))
  return run(q, k, v, jnp.zeros(()) if bias is None else bias, arrays, jnp.asarray(cotangent))


def supports(kernel_key, case_name):
  b, tq, tk, n, kh, h, hv, opts = CASES[case_name]
  if kernel_key == 'xla':
    return 'dropout_rate' not in opts and h == hv
  return True


@pytest.mark.parametrize('case_name', list(CASES))
@pytest.mark.parametrize('kernel_key', list(KERNEL_OPTIONS))
def test_exact_kernel_matches_float64(kernel_key, case_name):
  if not supports(kernel_key, case_name):
    pytest.skip(f'{kernel_key} does not implement {case_name}')
  rng, seed = fresh_rng()
  q, k, v, bias, kw, cotangent = make_case(case_name, rng)
  out, grads = call_kernel(kernel_key, case_name, q, k, v, bias, kw, cotangent)
  want_out, want_grads = numpy_result(q, k, v, bias, kw, cotangent)
  assert rel_err(out, want_out) < FWD_TOL, f'forward, seed {seed}'
  for name, got, want in zip(('dq', 'dk', 'dv', 'dbias'), grads, want_grads):
    if want is None:
      continue
    assert np.all(np.isfinite(got)), f'{name} not finite, seed {seed}'
    assert rel_err(got, want) < GRAD_TOL, f'{name}, seed {seed}'


# head_dim_128: a scale (1/sqrt(128)) that bf16 cannot hold exactly.
@pytest.mark.parametrize('case_name', ['mask_bias', 'head_dim_128'])
@pytest.mark.parametrize('kernel_key', ['reference', 'flash', 'xla'])
def test_bf16_inputs_within_bf16_tolerance(kernel_key, case_name):
  rng, seed = fresh_rng()
  q, k, v, bias, kw, cotangent = make_case(case_name, rng, dtype=jnp.bfloat16)
  out, grads = call_kernel(kernel_key, case_name, q, k, v, bias, kw, cotangent)
  assert out.dtype == jnp.bfloat16
  want_out, want_grads = numpy_result(q, k, v, bias, kw, cotangent)
  # bf16 keeps 8 mantissa bits (relative step 2^-8 = 0.4%); products of a few such
  # roundings stay within a few percent, while a softmax kept in bf16 would not.
  assert rel_err(out, want_out) < 2e-2, f'seed {seed}'
  for got, want in zip(grads[:3], want_grads[:3]):
    assert rel_err(got, want) < 5e-2, f'seed {seed}'


def test_flash_statistics_stay_fp32_in_bf16():
  # Long rows of equal logits: a bf16 running sum would stall at 256 (1 + 2^-8 rounds
  # to 1), giving weights far from uniform; fp32 statistics give the exact mean.
  t = 2048
  q = jnp.zeros((1, 1, 1, 16), jnp.bfloat16)
  k = jnp.zeros((1, t, 1, 16), jnp.bfloat16)
  v = jnp.asarray(np.linspace(-1, 1, t).reshape(1, t, 1, 1).repeat(16, -1), jnp.bfloat16)
  out = kernels.get('flash')(q, k, v, block_kv=64)
  want = np.asarray(v, np.float64).mean(axis=1)
  assert np.max(np.abs(np.asarray(out, np.float64)[0, 0] - want)) < 1e-2


@pytest.mark.parametrize('kernel_name', ['reference', 'flash', 'local', 'linear'])
def test_vmap_matches_loop(kernel_name):
  rng, seed = fresh_rng()
  x = jnp.asarray(rng.normal(size=(3, 2, 20, 2, 16)), jnp.float32)
  fn = functools.partial(kernels.get(kernel_name), is_causal=True)
  batched = jax.jit(jax.vmap(fn))(x, x * 0.5, x)
  for i in range(3):
    single = fn(x[i], x[i] * 0.5, x[i])
    assert rel_err(batched[i], single) < FWD_TOL, f'seed {seed}'


@pytest.mark.parametrize('kernel_name', kernels.names())
def test_inside_shard_map_matches_unsharded(kernel_name):
  """Sharded over the batch by shard_map, with per-row lengths, forward and gradients
  equal the plain call. The loop kernels' carries must be typed as varying over the mesh
  axis like the values they accumulate, which is checked for any mesh size (one device
  here)."""
  rng, seed = fresh_rng()
  q, k, v = (jnp.asarray(rng.normal(size=(2, 21, 2, 16)), jnp.float32) for _ in range(3))
  lengths = jnp.asarray([21, 9], jnp.int32)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ('x',))
  spec = jax.sharding.PartitionSpec('x')
  for is_causal in (False, True):
    def attend(q, k, v, lengths, is_causal=is_causal):
      return kernels.get(kernel_name)(q, k, v, is_causal=is_causal, q_lengths=lengths,
                                      kv_lengths=lengths)
    sharded = head_parallel.shard_map(attend, mesh, (spec,) * 4, spec)
    loss = lambda f: lambda q, k, v: jnp.sum(f(q, k, v, lengths) * v[:, :, :, :1])
    got = jax.jit(jax.value_and_grad(loss(sharded), argnums=(0, 1, 2)))(q, k, v)
    want = jax.jit(jax.value_and_grad(loss(attend), argnums=(0, 1, 2)))(q, k, v)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
      assert rel_err(a, b) < FWD_TOL, f'seed {seed}, causal={is_causal}'


# Run with 4 forced host devices: every kernel, jit-compiled with its inputs split over a
# 2 x 2 (data, model) mesh by batch and by heads, forward and vjp, on a mesh of Auto axes
# (GSPMD propagates shardings) and of Explicit ones (sharding in types, jax.make_mesh's
# default); prints per mesh kind and kernel the collectives in the compiled program and
# the largest difference from the unsharded call.
_PARTITIONED = r"""
import contextlib, json, re, sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from attention import kernels
rng = np.random.default_rng(int(sys.argv[1]))
q, ct = (jnp.asarray(rng.normal(size=(4, 21, 4, 16)), jnp.float32) for _ in range(2))
k, v = (jnp.asarray(rng.normal(size=(4, 21, 2, 16)), jnp.float32) for _ in range(2))
lengths = jnp.asarray([21, 7, 12, 1], jnp.int32)
def run(q, k, v, ct, lengths, fn):
  attend = lambda q, k, v: fn(q, k, v, is_causal=True, kv_lengths=lengths)
  out, vjp = jax.vjp(attend, q, k, v)
  return out, vjp(ct)
want = {name: jax.jit(run, static_argnums=5)(q, k, v, ct, lengths, kernels.get(name))
        for name in kernels.names()}
report = {}
AxisType = getattr(jax.sharding, 'AxisType', None)   # sharding in types: jax >= 0.5
for kind in ('auto', 'explicit') if AxisType else ('auto',):
  mesh = (Mesh(np.array(jax.devices()).reshape(2, 2), ('data', 'model')) if kind == 'auto' else
          jax.make_mesh((2, 2), ('data', 'model'), axis_types=(AxisType.Explicit,) * 2))
  by_heads, by_rows = NamedSharding(mesh, P('data', None, 'model')), NamedSharding(mesh, P('data'))
  heads = (by_heads,) * 4
  placed = [jax.device_put(x, s) for x, s in zip((q, k, v, ct, lengths), heads + (by_rows,))]
  report[kind] = {}
  # Explicit axes are traced under the mesh they name, as jax's explicit mode requires
  # (jax.set_mesh; use_mesh before jax 0.7): without it jax >= 0.12 builds its own zeros
  # (a gather's or a scan's transpose) replicated.
  set_mesh = getattr(jax, 'set_mesh', None) or jax.sharding.use_mesh
  context = lambda: set_mesh(mesh) if kind == 'explicit' else contextlib.nullcontext()
  for name in kernels.names():
    step = jax.jit(run, static_argnums=5, in_shardings=heads + (by_rows,),
                   out_shardings=(by_heads, heads[:3]))
    with context():
      text = step.lower(*placed, kernels.get(name)).compile().as_text()
      got = step(*placed, kernels.get(name))
    report[kind][name] = {
        'collectives': sorted(set(re.findall(r'= (\([^)]*\)|\S+) (all-gather|all-reduce|all-to-all|'
                                             r'collective-permute|reduce-scatter)\S*\(', text))),
        'max_diff': max(float(jnp.max(jnp.abs(a - b))) for a, b in
                        zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want[name])))}
print(json.dumps(report))
"""


@pytest.mark.slow
def test_kernels_partition_over_batch_and_heads_without_communication():
  """Data-parallel batch and tensor-parallel heads (GQA: 4 query heads over 2 key/value
  heads): attention is independent per row and per head, so the partitioned program must
  need no collective beyond loop bounds, and give the unsharded result, on meshes of
  Auto and of Explicit axes. (flash once merged the batch and head axes into one for its
  products, and the partitioner then all-gathered them; under explicit sharding, flash's
  loop carries and local's head reshape once failed to trace.)"""
  seed = int(os.environ.get('ATTENTION_TEST_SEED', secrets.randbits(32)))
  out = subprocess.run([sys.executable, '-c', _PARTITIONED, str(seed)], capture_output=True,
                       text=True, cwd=e2e.ROOT, env=e2e.environment(devices=4), timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  report = json.loads(out.stdout.strip().splitlines()[-1])
  assert sorted(report) == (['auto', 'explicit'] if hasattr(jax.sharding, 'AxisType')
                            else ['auto'])
  for kind, kernels_report in report.items():
    assert sorted(kernels_report) == sorted(kernels.names())
    for name, r in kernels_report.items():
      # flash's loops stop at the batch's longest sequence: a max of int32 scalars over
      # the data axis per call (XLA fuses the two into one tuple all-reduce, or not,
      # by version), and nothing else.
      if name == 'flash':
        assert r['collectives'], (kind, r)
        for operands, op in r['collectives']:
          assert op == 'all-reduce' and re.fullmatch(r'\(?s32\[\](, s32\[\])*\)?', operands), (
              kind, name, r, f'seed {seed}')
      else:
        assert r['collectives'] == [], (kind, name, r, f'seed {seed}')
      assert r['max_diff'] < 1e-5, (kind, name, r, f'seed {seed}')


def test_split_heads_matches_the_plain_kernel():
  """Heads over devices, one at a time on each (one device here; BENCHMARKS times it on
  two forced host devices): forward and gradients as the kernel called on all heads."""
  rng, seed = fresh_rng()
  q, k, v = (jnp.asarray(rng.normal(size=(2, 19, 4, 16)), jnp.float32) for _ in range(3))
  flash = functools.partial(kernels.get('flash'), is_causal=True, block_q=8, block_kv=8)
  split, sharding = head_parallel.split_heads(flash)
  loss = lambda f: lambda q, k, v: jnp.sum(f(q, k, v) * v)
  placed = [jax.device_put(x, sharding) for x in (q, k, v)]
  got = jax.jit(jax.value_and_grad(loss(split), argnums=(0, 1, 2)))(*placed)
  want = jax.value_and_grad(loss(flash), argnums=(0, 1, 2))(q, k, v)
  for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
    assert rel_err(a, b) < FWD_TOL, f'seed {seed}'
  with pytest.raises(ValueError, match=r"key must be \[B, T, N, H\] with the query's N \(4\)"):
    split(q, k[:, :, :2], v[:, :, :2])
  with pytest.raises(ValueError, match=r'query must be \[B, T, N, H\].*got shape \(2, 19\)'):
    split(q[:, :, 0, 0], k, v)


def test_flash_eager_equals_jit():
  rng, _ = fresh_rng()
  q, k, v, _, kw, _ = make_case('padding', rng)
  fn = functools.partial(kernels.get('flash'), block_q=8, block_kv=16, **kw)
  np.testing.assert_allclose(fn(q, k, v), jax.jit(fn)(q, k, v), rtol=1e-6, atol=1e-6)


def test_fully_masked_rows_are_zero_with_finite_gradients():
  """Rows past a query length, and every row of a batch entry with no keys, are zero, and
  so are their gradients and those of keys no query sees (padding case: q_lengths
  [26, 5, 17], kv_lengths [31, 0, 12])."""
  rng, _ = fresh_rng()
  q, k, v, _, kw, cotangent = make_case('padding', rng)
  for name in kernels.EXACT:
    out, grads = call_kernel(name, 'padding', q, k, v, None, kw, cotangent)
    out = np.asarray(out)
    dq, dk, dv = (np.asarray(g) for g in grads[:3])
    for g in (dq, dk, dv):
      assert np.all(np.isfinite(g)), name
    assert np.all(out[1] == 0.0) and np.all(dq[1] == 0.0), name      # no keys at all
    assert np.all(dk[1] == 0.0) and np.all(dv[1] == 0.0), name
    assert np.all(out[2, 17:] == 0.0) and np.all(dq[2, 17:] == 0.0), name   # padded queries
    assert np.all(dk[2, 12:] == 0.0) and np.all(dv[2, 12:] == 0.0), name    # padded keys
    # The rest is not zero, so the checks above see rows that could have been wrong.
    assert np.all(np.abs(out[2, :17]).max(axis=(-1, -2)) > 0), name
    assert np.all(np.abs(dk[2, :12]).max(axis=(-1, -2)) > 0), name


def test_dropout_drops_the_requested_fraction_and_is_deterministic():
  seed = kernels.common.rng_to_seed(jax.random.key(3))
  keep = dropout_lib.keep_mask(seed, 0.25, 8, jnp.arange(256), jnp.arange(256), 2, 4)
  frac = 1.0 - float(np.mean(keep))
  assert abs(frac - 0.25) < 0.01  # 1M draws: std of the fraction ~ 4e-4
  again = dropout_lib.keep_mask(seed, 0.25, 8, jnp.arange(256), jnp.arange(256), 2, 4)
  assert np.array_equal(keep, again)
  other = dropout_lib.keep_mask(kernels.common.rng_to_seed(jax.random.key(4)), 0.25, 8,
                                jnp.arange(256), jnp.arange(256), 2, 4)
  assert 0.3 < np.mean(keep != other) < 0.45  # independent masks disagree 2 p (1 - p) = 37.5%


def test_dropout_mask_is_the_contracts_and_independent_across_rows_and_heads():
  """keep_mask against its independent statement (tests/numpy_attention.py) on a block
  away from the origin, with grouped heads; then what a wrong mask would break: rows and
  heads of one seed disagree as independent draws do (2 p (1 - p)), and a block is the
  slice of the whole."""
  rng, seed_int = fresh_rng()
  seed = kernels.common.rng_to_seed(jax.random.key(int(rng.integers(1 << 30))))
  rate, b, n, kh = 0.3, 3, 6, 2
  q_pos, kv_pos = jnp.arange(40, 104), jnp.arange(17, 145)
  got = np.asarray(dropout_lib.keep_mask(seed, rate, n, q_pos, kv_pos, b, kh))
  want = npa.dropout_keep(seed, rate, b, n, 104, 145)[:, :, 40:, 17:]
  assert np.array_equal(got.reshape(b, n, 64, 128), want), f'seed {seed_int}'
  whole = np.asarray(dropout_lib.keep_mask(seed, rate, n, jnp.arange(104), jnp.arange(145), b, kh))
  assert np.array_equal(whole.reshape(b, n, 104, 145)[:, :, 40:, 17:], got.reshape(b, n, 64, 128))
  flat = want.reshape(b * n, -1)
  expected = 2 * rate * (1 - rate)   # 8192 draws a pair: std of the rate ~ 0.005
  for x in range(b * n):
    assert abs(1 - flat[x].mean() - rate) < 0.03, (x, f'seed {seed_int}')
    for y in range(x):
      assert abs(np.mean(flat[x] != flat[y]) - expected) < 0.03, (x, y, f'seed {seed_int}')


def test_flash_memory_is_linear_in_length():
  """XLA's compiled temporary memory for forward+backward: flash vs reference."""
  def temp_bytes(name, t):
    x = jax.ShapeDtypeStruct((1, t, 2, 32), jnp.float32)
    # 128-row tiles: the tiles' own O(block^2) scratch stays small next to O(length).
    opts = {'block_q': 128, 'block_kv': 128} if name == 'flash' else {}
    loss = lambda q, k, v: jnp.sum(kernels.get(name)(q, k, v, is_causal=True, **opts))
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(x, x, x).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  ref_small, ref_big = temp_bytes('reference', 512), temp_bytes('reference', 2048)
  flash_small, flash_big = temp_bytes('flash', 512), temp_bytes('flash', 2048)
  assert ref_big > 10 * ref_small      # quadratic: x16 expected for x4 length
  assert flash_big < 6 * flash_small   # linear: x4 expected (blocks add a constant)
  assert ref_big > 16 * flash_big
