"""The partition rules: which parameters split over which mesh axis (8-device runs that
use them are in test_distributed.py)."""

import types

import jax
from flax import nnx
from jax.sharding import PartitionSpec as P

from attention import models
from attention.training import sharding, step as step_lib
from configs import models as model_configs

MESH_4x2 = types.SimpleNamespace(shape={'data': 4, 'model': 2})


def specs(fsdp=False, **overrides):
  cfg = model_configs.get_model_config('tiny')
  cfg.update(vocab_size=30, **overrides)
  model = nnx.eval_shape(lambda: models.build(cfg, rngs=nnx.Rngs(0)))
  _, params, _ = step_lib.split_model(model)
  return {sharding.path_string(p): sharding.spec_for(sharding.path_string(p), x.shape, MESH_4x2,
                                                     fsdp=fsdp)
          for p, x in jax.tree_util.tree_leaves_with_path(params)}


def test_heads_and_hidden_units_split_over_model():
  got = specs()
  assert got['encoder/0/self_attention/query/kernel'] == P(None, 'model', None)
  assert got['decoder/1/cross_attention/value/kernel'] == P(None, 'model', None)
  assert got['decoder/0/self_attention/out/kernel'] == P('model', None, None)
  assert got['encoder/1/feed_forward/w1/kernel'] == P(None, 'model')
  assert got['encoder/1/feed_forward/w1/bias'] == P('model')
  assert got['encoder/1/feed_forward/w2/kernel'] == P('model', None)
  assert got['encoder/0/residual_ff/norm/scale'] == P()
  assert got['source_embedding/embedding'] == P(None, None)


def test_fsdp_splits_d_model_over_data():
  got = specs(fsdp=True)
  assert got['encoder/0/self_attention/query/kernel'] == P('data', 'model', None)
  assert got['encoder/1/feed_forward/w2/kernel'] == P('model', 'data')
  assert got['source_embedding/embedding'] == P(None, 'data')


def test_an_axis_that_does_not_divide_is_replicated():
  got = specs(num_heads=4, num_kv_heads=1)   # one key/value head cannot split in two
  assert got['encoder/0/self_attention/key/kernel'] == P(None, None, None)
  assert got['encoder/0/self_attention/query/kernel'] == P(None, 'model', None)


def test_optimizer_moments_follow_their_parameters():
  path = 'opt_state/1/0/mu/encoder/0/feed_forward/w1/kernel'
  assert sharding.spec_for(path, (64, 256), MESH_4x2) == P(None, 'model')
  assert sharding.spec_for('opt_state/1/0/count', (), MESH_4x2) == P()
