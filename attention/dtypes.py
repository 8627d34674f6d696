"""Config dtype names -> JAX dtypes."""

import jax.numpy as jnp

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}


def parse(name: str):
  if name not in DTYPES:
    raise ValueError(f'dtype must be one of {sorted(DTYPES)}, got {name!r}')
  return DTYPES[name]
