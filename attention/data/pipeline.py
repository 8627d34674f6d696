"""Input pipelines on grain: tokenized, length-filtered, shuffled, packed or bucketed.

Examples become three int32 sequences, each ending where the pair ends:
  src = source + EOS,  tgt_in = BOS + target,  tgt_out = target + EOS.
Training batches (`train_dataset`) add, when packed, `src_segment_ids`, `tgt_segment_ids`,
`src_positions`, `tgt_positions` (segment 0 is padding), the layout
`attention.training.step` expects. Evaluation batches (`eval_batches`) are unpacked, in
source-length order, padded to a few bucket lengths so that jit compiles few shapes.

Training data order is a function of (seed, shard) only: grain shuffles every epoch with
a new permutation, and the iterator's `get_state()` / `set_state()` resume it at any step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Sequence

import grain
import numpy as np

from attention import BOS_ID, EOS_ID, PAD_ID

FEATURES = ('src', 'tgt_in', 'tgt_out')


@dataclasses.dataclass(frozen=True)
class Encode:
  """record -> {'src', 'tgt_in', 'tgt_out'} int32 arrays (picklable for grain workers)."""
  tokenizer: Any
  source_key: str
  target_key: str

  def __call__(self, record) -> dict:
    return encode_pair(self.tokenizer, _text(record[self.source_key]),
                       _text(record[self.target_key]))


def _text(value) -> str:
  return value.decode('utf-8', errors='replace') if isinstance(value, bytes) else str(value)


def encode_pair(tokenizer, source: str, target: str, max_source_length: int = 0) -> dict:
  """max_source_length > 0 truncates the source (EOS kept) to that many tokens."""
  src, tgt = tokenizer.encode(source), tokenizer.encode(target)
  if max_source_length:
    src = src[:max_source_length - 1]
  return {'src': np.asarray(src + [EOS_ID], np.int32),
          'tgt_in': np.asarray([BOS_ID] + tgt, np.int32),
          'tgt_out': np.asarray(tgt + [EOS_ID], np.int32)}


@dataclasses.dataclass(frozen=True)
class FitsIn:
  max_length: int

  def __call__(self, example) -> bool:
    return len(example['src']) <= self.max_length and len(example['tgt_out']) <= self.max_length


def bucket_length(length: int, boundaries: Sequence[int]) -> int:
  """The smallest boundary >= length; past the last, the next multiple of the last."""
  for b in sorted(boundaries):
    if length <= b:
      return b
  last = max(boundaries)
  return -(-length // last) * last


def pad_batch(examples: Sequence[dict], boundaries: Sequence[int], batch_size: int | None = None) -> dict:
  """Stacks examples right-padded with PAD to one bucket length per feature group
  (source, target); `batch_size` adds all-PAD rows (no loss, nothing attended)."""
  rows = batch_size or len(examples)
  src_len = bucket_length(max(len(e['src']) for e in examples), boundaries)
  tgt_len = bucket_length(max(len(e['tgt_out']) for e in examples), boundaries)
  out = {'src': np.full((rows, src_len), PAD_ID, np.int32)}
  for key in ('tgt_in', 'tgt_out'):
    out[key] = np.full((rows, tgt_len), PAD_ID, np.int32)
  for i, e in enumerate(examples):
    for key in FEATURES:
      out[key][i, :len(e[key])] = e[key]
  return out


@dataclasses.dataclass(frozen=True)
class PadToBucket:
  boundaries: tuple[int, ...]

  def __call__(self, examples):
    return pad_batch(examples, self.boundaries)


def _rename_packed(batch: dict) -> dict:
  """grain names packing outputs per feature; both target features share one layout."""
  return {'src': batch['src'], 'tgt_in': batch['tgt_in'], 'tgt_out': batch['tgt_out'],
          'src_segment_ids': batch['src_segment_ids'], 'src_positions': batch['src_positions'],
          'tgt_segment_ids': batch['tgt_in_segment_ids'], 'tgt_positions': batch['tgt_in_positions']}


def _shard_batches(source, tokenizer, *, source_key, target_key, max_length, rows, pack,
                   bucket_boundaries, seed, shard_index, shard_count) -> grain.IterDataset:
  """Batches of `rows` rows from records shard_index, shard_index + shard_count, ..."""
  ds = grain.MapDataset.source(source)[shard_index::shard_count]
  ds = ds.shuffle(seed=seed).repeat()
  ds = ds.map(Encode(tokenizer, source_key, target_key)).filter(FitsIn(max_length))
  # Reading is a dict lookup: a thread pool costs more than it saves.
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
  if pack:
    it = grain.experimental.FirstFitPackIterDataset(
        it, length_struct={k: max_length for k in FEATURES}, num_packing_bins=rows,
        seed=seed, shuffle_bins=True)
    return it.batch(rows, drop_remainder=True).map(_rename_packed)
  return it.batch(rows, drop_remainder=True, batch_fn=PadToBucket(tuple(bucket_boundaries)))


class _ConcatRowsIterator(grain.DatasetIterator):

  def __next__(self) -> dict:
    parts = [next(p) for p in self._parents]
    if 'src_segment_ids' not in parts[0]:   # unpacked: pad every part to the longest bucket
      width = {k: max(part[k].shape[1] for part in parts) for k in parts[0]}
      parts = [{k: np.pad(v, ((0, 0), (0, width[k] - v.shape[1]))) for k, v in part.items()}
               for part in parts]
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}

  def get_state(self) -> dict:
    return {'shards': [p.get_state() for p in self._parents]}

  def set_state(self, state: dict) -> None:
    for parent, s in zip(self._parents, state['shards'], strict=True):
      parent.set_state(s)


class ConcatRowsIterDataset(grain.IterDataset):
  """One batch from each parent, stacked row-wise (parent 0's rows first)."""

  def __init__(self, parents):
    super().__init__(list(parents))

  def __iter__(self):
    return _ConcatRowsIterator([iter(p) for p in self._parents])


def train_dataset(source, tokenizer, *, source_key: str, target_key: str, max_length: int,
                  batch_size: int, pack: bool, bucket_boundaries: Sequence[int], seed: int,
                  shards: Sequence[int] = (0,), shard_count: int = 1,
                  num_workers: int = 0) -> grain.IterDataset:
  """An endless IterDataset of this process's training batches: `batch_size` rows, made
  of batch_size / len(shards) rows from each of its data shards, in order.

  The records are dealt into `shard_count` shards (record i to shard i % shard_count),
  each shuffled, packed and batched on its own; a process reads only the shards it is
  given. The global batch (all shards' rows, shard 0 first) is therefore the same
  whether one process reads every shard or each of several processes reads its own.

  Pairs longer than max_length tokens on either side (EOS included) are dropped.
  Packed: rows of exactly max_length tokens, filled first-fit by up to as many bins as
  rows. Unpacked: one example per row, padded to the smallest bucket boundary that fits.
  """
  if batch_size % len(shards):
    raise ValueError(f'batch_size={batch_size} is not a multiple of the {len(shards)} shards')
  per_shard = [_shard_batches(source, tokenizer, source_key=source_key, target_key=target_key,
                              max_length=max_length, rows=batch_size // len(shards), pack=pack,
                              bucket_boundaries=bucket_boundaries, seed=seed, shard_index=i,
                              shard_count=shard_count)
               for i in shards]
  it = per_shard[0] if len(per_shard) == 1 else ConcatRowsIterDataset(per_shard)
  if num_workers > 0:
    return it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  # One background thread prepares the next batches while the device computes (packing
  # is Python; the step releases the GIL). Its state still counts only consumed batches.
  return grain.experimental.ThreadPrefetchIterDataset(it, prefetch_buffer_size=2)


def padding_fraction(batch: dict) -> float:
  """Share of the batch's source and target slots that are padding."""
  real = np.count_nonzero(batch['src']) + np.count_nonzero(batch['tgt_out'])
  return 1.0 - real / (batch['src'].size + batch['tgt_out'].size)


@dataclasses.dataclass
class EvalBatch:
  batch: dict                # src, tgt_in, tgt_out; padded rows at the end
  indices: np.ndarray        # positions in the split of the real rows, in row order
  sources: list[str]
  references: list[str]


def eval_batches(pairs: Sequence[tuple[str, str]], tokenizer, *, batch_size: int,
                 bucket_boundaries: Sequence[int], max_source_length: int = 0) -> Iterator[EvalBatch]:
  """Every pair once, grouped by source length (so a batch decodes about equally long
  rows) into batches of exactly batch_size rows (all-PAD rows fill the last one)."""
  encoded = [encode_pair(tokenizer, s, t, max_source_length) for s, t in pairs]
  order = np.argsort([len(e['src']) for e in encoded], kind='stable')
  for start in range(0, len(order), batch_size):
    idx = order[start:start + batch_size]
    yield EvalBatch(pad_batch([encoded[i] for i in idx], bucket_boundaries, batch_size),
                    idx, [pairs[i][0] for i in idx], [pairs[i][1] for i in idx])
