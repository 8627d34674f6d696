"""Long-range tasks: sequences of hundreds to thousands of tokens whose answer depends on
tokens far apart, as source -> target pairs of space-separated tokens.

  listops         '[MAX 2 9 [MIN 4 7 ] 0 ]'        -> '9'
      Nested MAX, MIN, MED (lower median) and SM (sum mod 10) over digits (Nangia & Bowman
      2018, as in Long Range Arena, Tay et al. 2020): one digit, and every token counts.
  recall          'k3 v7 k9 v1 ... . k9 . . k3 .'  -> 'v1 v7'
      Multi-query associative recall (Arora et al. 2023, "Zoology"): key-value pairs
      first, then a stream of filler with the queried keys at random positions; the
      target is their values in query order. Only the distance grows with the length.
  selective_copy  '. . c . . . a . . d .'          -> 'c a d'
      Marked tokens at random positions in a stream of filler (Gu & Dao 2023): the target
      is the marked tokens in order.

A task's length is its source length in tokens; `sample_pair` draws one pair whose
source has exactly that many.
"""

from __future__ import annotations

import numpy as np

TASKS = ('listops', 'recall', 'selective_copy')

OPERATORS = ('[MAX', '[MIN', '[MED', '[SM')
CLOSE = ']'
MAX_ARGS = 10        # LRA's listops: up to 10 arguments per operator, depth up to 10
MAX_DEPTH = 10
FILLER = '.'
NUM_KEYS = NUM_VALUES = 64
NUM_PAIRS, NUM_QUERIES = 8, 4
COPY_SYMBOLS = tuple('abcdefghijklmnop')   # 16 data tokens, as in Gu & Dao
NUM_MARKED = 16
# The target's length in tokens, the same at every source length.
TARGET_LENGTH = {'listops': 1, 'recall': NUM_QUERIES, 'selective_copy': NUM_MARKED}
# The shortest source of each task: an operator with one digit; every pair and query
# with a filler between the two parts; the marked tokens alone.
MIN_LENGTH = {'listops': 3, 'recall': 2 * NUM_PAIRS + NUM_QUERIES + 1,
              'selective_copy': NUM_MARKED}


def _apply(op: str, values: list[int]) -> int:
  if op == '[MAX':
    return max(values)
  if op == '[MIN':
    return min(values)
  if op == '[MED':
    return sorted(values)[(len(values) - 1) // 2]
  return sum(values) % 10


def _room(depth: int) -> int:
  """The most tokens an argument at `depth` is given: what half of MAX_ARGS arguments of
  the next depth hold (a digit at MAX_DEPTH). Half, so that an operator's arguments
  always have slack and a random split of its tokens rarely needs redrawing."""
  return 1 if depth >= MAX_DEPTH else 2 + (MAX_ARGS // 2) * _room(depth + 1)


def _parts(rng: np.random.Generator, total: int, depth: int) -> list[int]:
  """Sizes of an operator's arguments: they add up to `total`, none of size 2 (no
  expression has two tokens), each within the room of the next depth."""
  room = _room(depth + 1)
  fewest = -(-total // room)
  lo = 1 if fewest == 1 else min(2 * fewest, MAX_ARGS, total)
  while True:
    k = int(rng.integers(lo, min(MAX_ARGS, total) + 1))
    cuts = np.sort(rng.choice(total - 1, size=k - 1, replace=False) + 1) if k > 1 else []
    sizes = np.diff([0, *cuts, total])
    if all(s != 2 and s <= room for s in sizes):
      return [int(s) for s in sizes]


def _expression(rng: np.random.Generator, length: int, depth: int) -> tuple[list[str], int]:
  """(tokens, value) of a random expression of exactly `length` tokens."""
  if length == 1:
    digit = int(rng.integers(0, 10))
    return [str(digit)], digit
  op = OPERATORS[int(rng.integers(0, len(OPERATORS)))]
  tokens, values = [op], []
  for size in _parts(rng, length - 2, depth):
    sub, value = _expression(rng, size, depth + 1)
    tokens += sub
    values.append(value)
  tokens.append(CLOSE)
  return tokens, _apply(op, values)


def listops_value(tokens: list[str]) -> int:
  """The value of a listops expression (the check of the generator's answers)."""
  stack: list[tuple[str, list[int]]] = []
  for token in tokens:
    if token in OPERATORS:
      stack.append((token, []))
    elif token == CLOSE:
      op, values = stack.pop()
      value = _apply(op, values)
      if not stack:
        return value
      stack[-1][1].append(value)
    else:
      stack[-1][1].append(int(token))
  raise ValueError('unbalanced expression')


def _recall(rng: np.random.Generator, length: int) -> tuple[list[str], list[str]]:
  keys = rng.choice(NUM_KEYS, size=NUM_PAIRS, replace=False)
  values = rng.integers(0, NUM_VALUES, size=NUM_PAIRS)
  source = [t for k, v in zip(keys, values) for t in (f'k{k}', f'v{v}')]
  # Queries go anywhere after the pairs but the first filler, so that the pairs end
  # visibly; a key may be queried more than once.
  stream = [FILLER] * (length - len(source))
  asked = rng.integers(0, NUM_PAIRS, size=NUM_QUERIES)
  slots = np.sort(rng.choice(np.arange(1, len(stream)), size=NUM_QUERIES, replace=False))
  for slot, i in zip(slots, asked):
    stream[slot] = f'k{keys[i]}'
  return source + stream, [f'v{values[i]}' for i in asked]


def _selective_copy(rng: np.random.Generator, length: int) -> tuple[list[str], list[str]]:
  marked = [COPY_SYMBOLS[i] for i in rng.integers(0, len(COPY_SYMBOLS), size=NUM_MARKED)]
  source = [FILLER] * length
  for slot, token in zip(np.sort(rng.choice(length, size=NUM_MARKED, replace=False)), marked):
    source[slot] = token
  return source, marked


def sample_pair(task: str, rng: np.random.Generator, length: int) -> tuple[str, str]:
  """One (source, target) pair whose source has `length` tokens."""
  if task not in TASKS:
    raise ValueError(f'task must be one of {TASKS}, got {task!r}')
  if length < MIN_LENGTH[task]:
    raise ValueError(f'{task}: a source has at least {MIN_LENGTH[task]} tokens, got {length}')
  if task == 'listops':
    tokens, value = _expression(rng, length, 0)
    source, target = tokens, [str(value)]
  elif task == 'recall':
    source, target = _recall(rng, length)
  else:
    source, target = _selective_copy(rng, length)
  return ' '.join(source), ' '.join(target)
