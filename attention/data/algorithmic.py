"""Algorithmic sequence tasks in the tensor2tensor tradition.

Examples are space-separated symbols, so the word vocabulary tokenizes them:
  copy      'k c q c'         -> 'k c q c'
  reverse   'k c q c'         -> 'c q c k'
  sort      'k c q c'         -> 'c c k q'
  addition  '4 7 3 + 5 9'     -> '5 3 2'   (digits, most significant first)
Lengths are counted in source symbols for copy/reverse/sort and in digits of the
longer operand for addition.
"""

from __future__ import annotations

import numpy as np

SYMBOLS = tuple('abcdefghijklmnopqrstuvwxyz')
TASKS = ('copy', 'reverse', 'sort', 'addition')


def sample_pair(task: str, rng: np.random.Generator, length: int) -> tuple[str, str]:
  """One (source, target) pair whose length is `length`."""
  if task == 'addition':
    # The first operand has exactly `length` digits (no leading zero), the second up to that.
    a = str(rng.integers(1, 10)) + ''.join(str(d) for d in rng.integers(0, 10, length - 1))
    b = str(int(''.join(str(d) for d in rng.integers(0, 10, int(rng.integers(1, length + 1))))))
    return ' '.join(a) + ' + ' + ' '.join(b), ' '.join(str(int(a) + int(b)))
  symbols = [str(s) for s in rng.choice(SYMBOLS, size=length)]
  if task == 'copy':
    target = symbols
  elif task == 'reverse':
    target = symbols[::-1]
  elif task == 'sort':
    target = sorted(symbols)
  else:
    raise ValueError(f'task must be one of {TASKS}, got {task!r}')
  return ' '.join(symbols), ' '.join(target)
