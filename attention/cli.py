"""What train.py, eval.py and the scripts share: one-line errors and the compile cache."""

from __future__ import annotations

import os
import sys

from attention.errors import UserError  # noqa: F401  (re-exported for entry points)

DEFAULT_CACHE = os.path.join(os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache')),
                             'attention', 'jax')


def enable_compilation_cache(path: str | None = None) -> None:
  """JAX's persistent compilation cache: a second run of the same shapes skips XLA
  compilation (most of a short CPU run's start-up)."""
  import jax
  path = path or os.environ.get('ATTENTION_COMPILATION_CACHE', DEFAULT_CACHE)
  if path.lower() in ('', 'none', 'off'):
    return
  os.makedirs(path, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def run(main, argv):
  """Calls main(argv); a UserError becomes one line on stderr and exit status 2."""
  try:
    return main(argv)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    print('interrupted', file=sys.stderr)
    sys.exit(130)
