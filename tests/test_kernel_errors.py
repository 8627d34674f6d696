"""Bad input raises ValueError at trace time, naming the argument and what is allowed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attention import kernels

Q = jnp.zeros((2, 5, 4, 8))
K = jnp.zeros((2, 7, 2, 8))
V = jnp.zeros((2, 7, 2, 8))

BAD = [
    # (kernel, args, kwargs, message fragment)
    ('reference', (Q[0], K, V), {}, r'query must have rank 4'),
    ('flash', (Q, K[..., :4], V), {}, r'key head_dim 4 != query head_dim 8'),
    ('flash', (Q, K[:, :6], V), {}, r'must agree in length and heads'),
    ('xla', (Q[:, :, :3], K, V), {}, r'query heads \(3\) must be a multiple of key/value heads \(2\)'),
    ('reference', (Q, K, V[:1]), {}, r'batch sizes differ'),
    ('flash', (Q, K, V), {'mask': jnp.ones((2, 1, 5, 6), bool)}, r'mask of shape \(2, 1, 5, 6\) must be 4-d and broadcastable'),
    ('reference', (Q, K, V), {'mask': jnp.ones((2, 1, 5, 7))}, r'mask must be boolean'),
    ('flash', (Q, K, V), {'bias': jnp.ones((5, 7))}, r'bias of shape \(5, 7\) must be 4-d'),
    ('flash', (Q, K, V), {'q_segment_ids': jnp.zeros((2, 5), jnp.int32)}, r'must be given together'),
    ('flash', (Q, K, V), {'kv_lengths': jnp.zeros((3,), jnp.int32)}, r'kv_lengths must have shape \[2\]'),
    ('flash', (Q, K, V), {'kv_lengths': jnp.zeros((2,))}, r'kv_lengths must be integer'),
    ('flash', (Q, K, V), {'alibi_slopes': jnp.zeros((2,))}, r'alibi_slopes must have shape \[4\]'),
    ('flash', (Q, K, V), {'dropout_rate': 1.0, 'dropout_rng': jax.random.key(0)}, r'dropout_rate must be in \[0, 1\)'),
    ('reference', (Q, K, V), {'dropout_rate': 0.1}, r'needs dropout_rng'),
    ('xla', (Q, K, V), {'dropout_rate': 0.1, 'dropout_rng': jax.random.key(0)}, r'xla: `dropout_rate` is not supported'),
    ('linear', (Q, K, V), {'bias': jnp.zeros((1, 1, 5, 7))}, r'linear: `bias` is not supported'),
    ('linear', (Q, K, V), {'is_causal': True}, r'causal form needs q_len == kv_len'),
    ('local', (Q, K, V), {'mask': jnp.ones((1, 1, 5, 7), bool)}, r'local: `mask` is not supported'),
    ('local', (Q, K, V), {'window_size': -1}, r'window_size must be >= 0'),
    ('flash', (Q, K, V), {'bwd_block_kv': 0}, r'flash: bwd_block_kv must be positive, got 0'),
    ('xla', (Q, K, jnp.zeros((2, 7, 2, 4))), {}, r'value head_dim == key head_dim'),
]


@pytest.mark.parametrize('kernel,args,kwargs,message', BAD)
def test_bad_input_raises_value_error(kernel, args, kwargs, message):
  with pytest.raises(ValueError, match=message):
    jax.jit(lambda *a: kernels.get(kernel)(*a, **kwargs)).lower(*args)


def test_unknown_kernel_lists_the_allowed_names():
  with pytest.raises(ValueError, match=r"unknown attention kernel 'flsh'; allowed: reference, flash"):
    kernels.get('flsh')


def test_registry_lists_every_kernel():
  assert set(kernels.names()) == {'reference', 'flash', 'xla', 'local', 'linear'}
  for name in kernels.names():
    out = kernels.get(name)(Q, K, V)
    assert out.shape == (2, 5, 4, 8) and np.all(np.isfinite(out))
