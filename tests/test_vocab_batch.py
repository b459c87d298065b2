"""Unit tests: vocabulary, the seeded resumable bucketing sampler, padding and eval batches."""

from __future__ import annotations

import random

import pytest
import torch

from seqlab.data.batch import BucketBatchSampler, eval_batches, pad
from seqlab.data.vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocab

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_thread")]

SENTS = [
    "a b c a".split(),
    "b a d".split(),
    "e a b".split(),
    "c c f".split(),
]
# counts: a 4, b 3, c 3, d 1, e 1, f 1


# ------------------------------------------------------------------------------------ vocabulary
def test_specials_come_first_with_fixed_ids():
    v = Vocab.build(SENTS)
    assert v.itos[:4] == [PAD, UNK, BOS, EOS] == list(SPECIALS)
    assert (v.pad_id, v.unk_id, v.bos_id, v.eos_id) == (0, 1, 2, 3)


def test_order_is_by_frequency_then_alphabetical():
    v = Vocab.build(SENTS)
    assert v.itos[4:] == ["a", "b", "c", "d", "e", "f"]


def test_min_freq_drops_rare_tokens():
    v = Vocab.build(SENTS, min_freq=2)
    assert v.itos[4:] == ["a", "b", "c"]
    assert Vocab.build(SENTS, min_freq=4).itos[4:] == ["a"]


def test_max_size_keeps_the_most_frequent():
    v = Vocab.build(SENTS, max_size=2)
    assert v.itos[4:] == ["a", "b"]
    assert len(v) == 6
    assert len(Vocab.build(SENTS, max_size=0)) == 10  # 0 means no limit


def test_specials_in_the_data_are_not_duplicated():
    v = Vocab.build([["<s>", "x", "</s>", "<unk>", "<pad>"]])
    assert v.itos == [*SPECIALS, "x"]


def test_ids_do_not_depend_on_sentence_order():
    rng = random.Random(0)
    sents = [[rng.choice("abcdefghij") for _ in range(rng.randint(1, 8))] for _ in range(200)]
    shuffled = list(sents)
    rng.shuffle(shuffled)
    assert Vocab.build(sents, min_freq=2).itos == Vocab.build(shuffled, min_freq=2).itos
    assert Vocab.build(sents) == Vocab.build(sents)


def test_encode_maps_unknown_tokens_and_adds_bos_eos():
    v = Vocab.build(SENTS)
    assert v.encode(["a", "zzz", "f"]) == [4, v.unk_id, 9]
    assert v.encode(["a"], bos=True, eos=True) == [v.bos_id, 4, v.eos_id]


def test_decode_strips_specials_and_stops_at_eos():
    v = Vocab.build(SENTS)
    ids = [v.bos_id, 4, 5, v.pad_id, 6, v.eos_id, 7, 8]
    assert v.decode(ids) == ["a", "b", "c"]
    assert v.decode(ids, strip=False) == [BOS, "a", "b", PAD, "c", EOS, "d", "e"]
    assert v.decode(torch.tensor([4, 999])) == ["a", UNK]  # tensors and out-of-range ids


def test_encode_decode_round_trip():
    v = Vocab.build(SENTS)
    for s in SENTS:
        assert v.decode(v.encode(s, bos=True, eos=True)) == s


def test_vocab_round_trips_through_plain_data():
    v = Vocab.build(SENTS, min_freq=2)
    data = v.to_list()
    assert all(isinstance(t, str) for t in data)
    assert Vocab(data) == v


def test_invalid_vocabularies_are_rejected():
    with pytest.raises(ValueError, match="specials"):
        Vocab(["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        Vocab([*SPECIALS, "a", "a"])


# --------------------------------------------------------------------------------------- sampler
def _lengths(n=103, seed=0):
    rng = random.Random(seed)
    return [rng.randint(1, 40) for _ in range(n)]


def test_same_seed_and_epoch_give_the_same_order():
    lengths = _lengths()
    a = BucketBatchSampler(lengths, 8, seed=3, pool=4)
    b = BucketBatchSampler(lengths, 8, seed=3, pool=4)
    assert a.batches(0) == b.batches(0)
    assert a.batches(5) == b.batches(5)
    assert list(a) == b.batches(0)  # iterating gives exactly batches(epoch)


def test_other_epoch_or_seed_gives_another_order():
    lengths = _lengths()
    s = BucketBatchSampler(lengths, 8, seed=3, pool=4)
    assert s.batches(0) != s.batches(1)
    assert s.batches(0) != BucketBatchSampler(lengths, 8, seed=4, pool=4).batches(0)


@pytest.mark.parametrize("bucket", [True, False])
def test_every_example_once_per_epoch(bucket):
    lengths = _lengths()
    s = BucketBatchSampler(lengths, 8, seed=1, bucket=bucket, pool=3)
    for _ in range(3):
        batches = list(s)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(lengths)))
        assert all(1 <= len(b) <= 8 for b in batches)
        assert len(batches) == len(s) == 13
    assert s.epoch == 3 and s.position == 0


def test_bucketing_reduces_padding():
    lengths = _lengths(400)

    def padding(sampler):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in sampler.batches(0))

    bucketed = padding(BucketBatchSampler(lengths, 16, seed=0, bucket=True, pool=10))
    plain = padding(BucketBatchSampler(lengths, 16, seed=0, bucket=False))
    assert bucketed < plain / 3


def test_resume_mid_epoch_from_state_dict():
    lengths = _lengths()
    full = BucketBatchSampler(lengths, 8, seed=7, pool=4)
    expected = list(full) + list(full)  # two epochs uninterrupted

    first = BucketBatchSampler(lengths, 8, seed=7, pool=4)
    it = iter(first)
    seen = [next(it) for _ in range(5)]
    state = first.state_dict()
    assert state["position"] == 5 and state["epoch"] == 0
    state = {k: int(v) for k, v in state.items()}  # survives a round trip through plain data

    resumed = BucketBatchSampler(lengths, 8, seed=0, pool=4)  # seed comes from the state
    resumed.load_state_dict(state)
    rest = list(resumed) + list(resumed)
    assert seen + rest == expected


def test_sampler_rejects_bad_batch_size():
    with pytest.raises(ValueError):
        BucketBatchSampler([1, 2, 3], 0, seed=0)


# ------------------------------------------------------------------------------ padding, eval order
def test_pad_shapes_and_lengths():
    ids, lengths = pad([[5, 6, 7], [8], [9, 10]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert lengths.tolist() == [3, 1, 2]
    assert ids.dtype == torch.long


def test_eval_batches_cover_all_sorted_by_length():
    lengths = _lengths(50)
    batches = eval_batches(lengths, 7)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(50))
    assert [lengths[i] for i in flat] == sorted(lengths)
    assert all(len(b) <= 7 for b in batches)
