"""A kernel defined outside the package joins the registry and trains, with no edit to the
layers or the Transformer: what each kernel module declares (attention.kernels.Kernel)
is all they read."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from attention import UserError, kernels, models
from attention.kernels import common
from attention.models import decoding
from attention.training import config_check, step as step_lib
from configs import default


def cosine_attention(query, key, value, *, mask=None, bias=None, is_causal=False, scale=None,
                     q_segment_ids=None, kv_segment_ids=None, q_lengths=None, kv_lengths=None,
                     alibi_slopes=None, dropout_rate=0.0, dropout_rng=None, temperature=10.0):
  """Softmax over cosine similarities times a temperature (query-key normalization,
  Henry et al. 2020): a kernel that lives only in this test."""
  common.check_inputs(query, key, value, mask=mask, bias=bias, scale=scale,
                      q_segment_ids=q_segment_ids, kv_segment_ids=kv_segment_ids,
                      q_lengths=q_lengths, kv_lengths=kv_lengths, alibi_slopes=alibi_slopes,
                      kernel='cosine')
  common.reject('cosine', bias=bias, dropout_rate=dropout_rate)
  unit = lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True).clip(1e-6)
  s = temperature * jnp.einsum('btnh,bsnh->bnts', unit(query), unit(key))
  t, n = query.shape[1], key.shape[1]
  allowed = common.visible(jnp.arange(t), jnp.arange(n), is_causal=is_causal,
                           q_lengths=q_lengths, kv_lengths=kv_lengths)
  if allowed is not None:
    allowed = allowed.reshape(-1, 1, t, n) if allowed.ndim == 5 else allowed
  if mask is not None:
    m = mask.reshape(mask.shape[0], -1, t, n) if mask.ndim == 5 else mask
    allowed = m if allowed is None else allowed & m
  if allowed is not None:
    s = jnp.where(allowed, s, -jnp.inf)
  p = jax.nn.softmax(s, axis=-1)
  p = jnp.where(jnp.isnan(p), 0.0, p)
  return jnp.einsum('bnts,bsnh->btnh', p, value).astype(query.dtype)


COSINE = kernels.Kernel('cosine', cosine_attention, options=lambda cfg: {'temperature': 10.0},
                        packing=False, alibi=False, dropout=False)


@pytest.fixture
def cosine():
  kernels.register(COSINE)
  yield COSINE
  kernels._KERNELS.pop('cosine')


def tiny_config():
  config = default.get_config('task=copy,model=tiny')
  config.model.vocab_size = 20
  config.data.pack = False
  return config


def test_a_kernel_defined_outside_the_package_trains_a_step(cosine):
  assert 'cosine' in kernels.names() and kernels.get('cosine') is cosine_attention
  config = tiny_config()
  config.model.kernel = 'cosine'
  config_check.validate(config)
  model = models.build(config.model, rngs=nnx.Rngs(0))
  used = {m.kernel_fn for _, m in model.iter_modules() if hasattr(m, 'kernel_fn')}
  assert used == {cosine_attention}

  rng = np.random.default_rng(0)
  src = jnp.asarray(rng.integers(4, 20, size=(2, 7)), jnp.int32).at[1, 5:].set(0)
  tgt = jnp.asarray(rng.integers(4, 20, size=(2, 6)), jnp.int32).at[0, 4:].set(0)
  batch = {'src': src, 'tgt_in': tgt, 'tgt_out': tgt}
  graphdef, params, rest = models.split_model(model)
  tx = optax.adam(1e-2)
  state = step_lib.create_train_state(params, tx, seed=0)
  train_step = step_lib.make_train_step(graphdef, rest, tx)
  before = jax.tree_util.tree_leaves(state.params)
  before = [np.asarray(x) for x in before]
  state, metrics = train_step(state, batch)
  assert float(metrics['finite']) == 1.0 and np.isfinite(float(metrics['loss']))
  after = jax.tree_util.tree_leaves(state.params)
  assert any(not np.array_equal(a, b) for a, b in zip(before, after))

  # Its own numbers, not another kernel's: the same parameters with the reference kernel
  # give other logits.
  config.model.kernel = 'reference'
  reference = models.merge_model(
      models.split_model(models.build(config.model, rngs=nnx.Rngs(0)))[0], state.params, rest)
  ours = models.merge_model(graphdef, state.params, rest)
  assert not np.allclose(ours(src, tgt), reference(src, tgt), atol=1e-4)

  # Cached decoding goes through the same kernel, and equals the teacher-forced pass.
  tokens = decoding.jit_decoder(decoding.greedy_decode, max_length=6)(ours, src)
  tgt_in = jnp.concatenate([jnp.ones((2, 1), jnp.int32), tokens[:, :-1]], axis=1)
  logits = ours(src, tgt_in)
  forced = np.asarray(jnp.argmax(logits.at[..., :2].set(-jnp.inf), -1))
  done = np.cumsum(np.asarray(tokens) == 2, axis=1) - (np.asarray(tokens) == 2) > 0
  assert np.array_equal(np.where(done, 0, forced), np.where(done, 0, np.asarray(tokens)))


def test_what_a_registered_kernel_lacks_is_refused_by_the_config_check(cosine):
  config = tiny_config()
  config.model.kernel = 'cosine'
  config.data.pack = True
  with pytest.raises(UserError, match=r'model.kernel=cosine has no segment ids.*data.pack=False'):
    config_check.validate(config)
  config.data.pack = False
  config.model.positional = 'alibi'
  with pytest.raises(UserError, match=r'kernel=cosine cannot apply ALiBi'):
    config_check.validate(config)
  config.model.positional = 'sinusoidal'
  config.model.attention_dropout_rate = 0.1
  with pytest.raises(UserError, match=r'kernel cosine has no attention dropout; allowed: 0, or '
                                      r'kernel reference or flash$'):
    config_check.validate(config)
  with pytest.raises(TypeError, match='takes an attention.kernels.Kernel'):
    kernels.register(cosine_attention)
