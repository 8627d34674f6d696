"""Attention kernels: pure functions with one signature, found by name.

  fn = attention.kernels.get('flash')
  out_BTNH = fn(q_BTNH, k_BSKH, v_BSKH, mask=None, bias=None, is_causal=False, scale=None,
                q_segment_ids=None, kv_segment_ids=None, q_lengths=None, kv_lengths=None,
                alibi_slopes=None, dropout_rate=0.0, dropout_rng=None, **kernel_options)

See `attention.kernels.common` for the layout and masking rules shared by all of them.
A new kernel is one new module plus one line in `_KERNELS`.
"""

from __future__ import annotations

from typing import Callable

from attention.kernels import head_parallel  # noqa: F401  (kernels.head_parallel.split_heads)
from attention.kernels.flash import flash_attention
from attention.kernels.linear import linear_attention
from attention.kernels.local import local_attention
from attention.kernels.reference import attention_weights, reference_attention
from attention.kernels.xla import xla_attention

_KERNELS: dict[str, Callable] = {
    'reference': reference_attention,
    'flash': flash_attention,
    'xla': xla_attention,
    'local': local_attention,
    'linear': linear_attention,
}

# Kernels that compute softmax attention exactly (same numbers up to rounding).
EXACT = ('reference', 'flash', 'xla')


def names() -> tuple[str, ...]:
  return tuple(_KERNELS)


def get(name: str) -> Callable:
  if name not in _KERNELS:
    raise ValueError(f'unknown attention kernel {name!r}; allowed: {", ".join(_KERNELS)}')
  return _KERNELS[name]


__all__ = ['EXACT', 'attention_weights', 'get', 'names']
