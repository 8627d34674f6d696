"""The grain input pipeline: packing, filtering, shuffling, resuming, sharding, buckets."""

import collections
import dataclasses

import numpy as np
import pytest

from attention.data import pipeline, tokenizers, toy_translation
from attention import BOS_ID, EOS_ID, PAD_ID


@pytest.fixture(scope='module')
def corpus():
  base = {c.name: c for c in toy_translation.BUILDER_CONFIGS}['lang']
  cfg = dataclasses.replace(base, name='lang_tiny', num_train=300, num_eval=10)
  pairs = toy_translation.generate_splits(cfg)['train']
  source = [{'source': s.encode(), 'target': t.encode()} for s, t in pairs]
  vocab = tokenizers.WordVocab.build(t for pair in pairs for t in pair)
  return pairs, source, vocab


def dataset(corpus, **kw):
  _, source, vocab = corpus
  args = dict(source_key='source', target_key='target', max_length=48, batch_size=8, pack=True,
              bucket_boundaries=(16, 32, 48), seed=0)
  args.update(kw)
  return pipeline.train_dataset(source, vocab, **args)


def take(ds, n, state=None):
  it = iter(ds)
  if state is not None:
    it.set_state(state)
  out = [next(it) for _ in range(n)]
  it.close()
  return out


def segments(batch, row):
  """[(src ids, tgt_in ids, tgt_out ids, src positions, tgt positions)] of one packed row."""
  out = []
  src_seg, tgt_seg = batch['src_segment_ids'][row], batch['tgt_segment_ids'][row]
  for s in sorted(set(src_seg.tolist()) - {0}):
    sm, tm = src_seg == s, tgt_seg == s
    out.append((batch['src'][row][sm], batch['tgt_in'][row][tm], batch['tgt_out'][row][tm],
                batch['src_positions'][row][sm], batch['tgt_positions'][row][tm]))
  return out


def test_packed_rows_hold_whole_examples_that_never_cross(corpus):
  pairs, _, vocab = corpus
  known = set(pairs)
  batches = take(dataset(corpus), 6)
  seen = []
  for b in batches:
    assert b['src'].shape == (8, 48) and b['tgt_in'].shape == (8, 48)
    for key in ('src', 'tgt_in', 'tgt_out'):
      assert b[key].dtype == np.int32
    # Padding is segment 0 and nothing else is.
    assert ((b['src'] == PAD_ID) == (b['src_segment_ids'] == 0)).all()
    assert ((b['tgt_in'] == PAD_ID) == (b['tgt_segment_ids'] == 0)).all()
    # The loss mask (tgt_out != PAD) is exactly the target tokens.
    assert ((b['tgt_out'] != PAD_ID) == (b['tgt_segment_ids'] != 0)).all()
    for row in range(8):
      assert set(b['src_segment_ids'][row].tolist()) == set(b['tgt_segment_ids'][row].tolist())
      for src, tgt_in, tgt_out, src_pos, tgt_pos in segments(b, row):
        assert src[-1] == EOS_ID and tgt_in[0] == BOS_ID and tgt_out[-1] == EOS_ID
        assert (tgt_in[1:] == tgt_out[:-1]).all()     # teacher forcing shifts by one
        np.testing.assert_array_equal(src_pos, np.arange(len(src)))
        np.testing.assert_array_equal(tgt_pos, np.arange(len(tgt_in)))
        pair = (vocab.decode(src), vocab.decode(tgt_out))
        assert pair in known, pair    # source and target segment k are one example
        seen.append(pair)
  # Less than one epoch was read: no example twice.
  assert len(seen) < len(pairs)
  assert max(collections.Counter(seen).values()) == 1


def test_length_filter_drops_long_pairs(corpus):
  pairs, _, vocab = corpus
  batches = take(dataset(corpus, max_length=12), 5)
  for b in batches:
    for row in range(8):
      for src, _, tgt_out, _, _ in segments(b, row):
        assert len(src) <= 12 and len(tgt_out) <= 12
  short = [p for p in pairs if len(vocab.encode(p[0])) < 12 and len(vocab.encode(p[1])) < 12]
  assert 0 < len(short) < len(pairs)
  # The long pairs are dropped, not cut to fit: every source read back is a whole short
  # source, and none of the long ones appears.
  whole = {tuple(vocab.encode(s)) + (EOS_ID,) for s, _ in short}
  long_ = {tuple(vocab.encode(s)) + (EOS_ID,) for s, t in pairs if (s, t) not in set(short)}
  seen = {tuple(np.asarray(src).tolist()) for b in batches for row in range(8)
          for src, _, _, _, _ in segments(b, row)}
  assert seen and seen <= whole and not seen & (long_ - whole)


def test_order_is_a_function_of_the_seed_and_resumes_exactly(corpus):
  first, again = take(dataset(corpus), 4), take(dataset(corpus), 4)
  other = take(dataset(corpus, seed=1), 4)
  assert all((a['src'] == b['src']).all() for a, b in zip(first, again))
  assert not all((a['src'] == b['src']).all() for a, b in zip(first, other))

  ds = dataset(corpus)
  it = iter(ds)
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  it.close()
  resumed = take(ds, 3, state=state)
  for a, b in zip(expected, resumed):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_epochs_reshuffle(corpus):
  pairs, _, vocab = corpus
  batches = take(dataset(corpus, pack=False, batch_size=10), 60)   # two epochs of 300
  order = [vocab.decode(b['src'][r]) for b in batches for r in range(10)]
  assert sorted(order[:300]) == sorted(order[300:]) == sorted(s for s, _ in pairs)
  assert order[:300] != order[300:]


def test_shards_are_disjoint_and_cover(corpus):
  pairs, _, vocab = corpus
  got = []
  for shard in range(2):
    batches = take(dataset(corpus, pack=False, batch_size=10, shards=(shard,), shard_count=2), 15)
    got.append({vocab.decode(b['src'][r]) for b in batches for r in range(10)})
  assert not got[0] & got[1]
  assert got[0] | got[1] == {s for s, _ in pairs}


@pytest.mark.parametrize('pack', [True, False])
def test_one_reader_of_two_shards_gives_what_two_readers_give(corpus, pack):
  """The global batch does not depend on how many processes read the shards."""
  both = dataset(corpus, pack=pack, batch_size=8, shards=(0, 1), shard_count=2)
  alone = [take(dataset(corpus, pack=pack, batch_size=4, shards=(i,), shard_count=2), 6)
           for i in (0, 1)]
  it = iter(both)
  first = [next(it) for _ in range(3)]
  state = it.get_state()
  it.close()
  got = first + take(both, 3, state=state)
  for step, batch in enumerate(got):
    for key, value in batch.items():
      halves = [alone[i][step][key] for i in (0, 1)]
      width = value.shape[1]
      expected = np.concatenate([np.pad(h, ((0, 0), (0, width - h.shape[1]))) for h in halves])
      np.testing.assert_array_equal(value, expected, err_msg=f'{key} at step {step}')


def test_unpacked_batches_pad_to_buckets(corpus):
  shapes = set()
  for b in take(dataset(corpus, pack=False, bucket_boundaries=(8, 16, 32, 48)), 20):
    assert set(b) == {'src', 'tgt_in', 'tgt_out'}
    shapes.add(b['src'].shape[1])
    longest = max(np.count_nonzero(b['src'], axis=1))
    assert b['src'].shape[1] == pipeline.bucket_length(longest, (8, 16, 32, 48))
  assert shapes <= {8, 16, 32, 48}


def test_bucket_length():
  assert pipeline.bucket_length(1, (16, 32)) == 16
  assert pipeline.bucket_length(32, (16, 32)) == 32
  assert pipeline.bucket_length(33, (32, 16)) == 64
  assert pipeline.bucket_length(65, (16, 32)) == 96


def test_eval_batches_cover_every_pair_once_in_fixed_shapes(corpus):
  pairs, _, vocab = corpus
  subset = pairs[:37]
  seen = []
  for eb in pipeline.eval_batches(subset, vocab, batch_size=8, bucket_boundaries=(16, 32, 48)):
    assert eb.batch['src'].shape[0] == 8
    real = len(eb.indices)
    assert (eb.batch['src'][real:] == PAD_ID).all() and (eb.batch['tgt_out'][real:] == PAD_ID).all()
    for row, index in enumerate(eb.indices):
      assert vocab.decode(eb.batch['src'][row]) == subset[index][0] == eb.sources[row]
      assert vocab.decode(eb.batch['tgt_out'][row]) == subset[index][1] == eb.references[row]
    seen += list(eb.indices)
  assert sorted(seen) == list(range(37))


def test_truncation_keeps_eos():
  vocab = tokenizers.WordVocab(['a', 'b'])
  ex = pipeline.encode_pair(vocab, 'a b a b a b', '', max_source_length=4)
  assert ex['src'].tolist() == [4, 5, 4, EOS_ID]
