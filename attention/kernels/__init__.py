"""Attention kernels: pure functions with one signature, found by name.

  fn = attention.kernels.get('flash')
  out_BTNH = fn(q_BTNH, k_BSKH, v_BSKH, mask=None, bias=None, is_causal=False, scale=None,
                q_segment_ids=None, kv_segment_ids=None, q_lengths=None, kv_lengths=None,
                alibi_slopes=None, dropout_rate=0.0, dropout_rng=None, **kernel_options)

See `attention.kernels.common` for the layout and masking rules shared by all of them.
Each kernel module declares a `common.Kernel` (`KERNEL`): the function and what the
layers and the config checks need to know of it (its options from config.model, what it
supports, how it attends from a decode cache). A new kernel is one new module plus one
line in `_BUILT_IN`; one defined elsewhere (a notebook, a test) joins with `register`.
"""

from __future__ import annotations

from typing import Callable

from attention.kernels import flash, linear, local, reference, xla
from attention.kernels.common import Kernel
from attention.kernels.reference import attention_weights

_BUILT_IN = (reference.KERNEL, flash.KERNEL, xla.KERNEL, local.KERNEL, linear.KERNEL)
_KERNELS: dict[str, Kernel] = {k.name: k for k in _BUILT_IN}

# Kernels that compute softmax attention exactly (same numbers up to rounding).
EXACT = tuple(k.name for k in _BUILT_IN if k.exact)


def register(kernel: Kernel) -> Kernel:
  """Adds a kernel under kernel.name (replacing one of that name); returns it. The model
  config can then name it (model.kernel), in this process."""
  if not isinstance(kernel, Kernel):
    raise TypeError(f'register takes an attention.kernels.Kernel, got {type(kernel).__name__}')
  _KERNELS[kernel.name] = kernel
  return kernel


def names() -> tuple[str, ...]:
  return tuple(_KERNELS)


def spec(name: str) -> Kernel:
  """The Kernel registered as `name`."""
  if name not in _KERNELS:
    raise ValueError(f'unknown attention kernel {name!r}; allowed: {", ".join(_KERNELS)}')
  return _KERNELS[name]


def get(name: str) -> Callable:
  """The kernel function registered as `name`."""
  return spec(name).fn


__all__ = ['EXACT', 'Kernel', 'attention_weights', 'get', 'names', 'register', 'spec']
