"""Dynamic batching under a token budget, and resumable samplers."""

from __future__ import annotations

import numpy as np

from vlp.data.batching import (
    ResumableBatchSampler,
    fixed_size_batches,
    padding_fraction,
    token_budget_batches,
)


def _lengths(n: int = 2000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(10, 120, n)


def test_budget_respected_and_every_example_once() -> None:
    lengths = _lengths()
    sampler = ResumableBatchSampler(len(lengths), token_budget_batches(lengths, 1000, 512))
    batches = sampler.epoch_batches(0)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    for b in batches:
        assert len(b) * lengths[b].max() <= 1000 or len(b) == 1


def test_dynamic_batching_pads_less_than_fixed() -> None:
    lengths = _lengths()
    dyn = ResumableBatchSampler(len(lengths), token_budget_batches(lengths, 2000, 1000))
    fixed = ResumableBatchSampler(len(lengths), fixed_size_batches(32))
    assert padding_fraction(dyn.epoch_batches(0), lengths) < 0.5 * padding_fraction(
        fixed.epoch_batches(0), lengths)


def test_epochs_differ_but_are_reproducible() -> None:
    lengths = _lengths(300)
    a = ResumableBatchSampler(300, token_budget_batches(lengths, 800, 100), seed=7)
    b = ResumableBatchSampler(300, token_budget_batches(lengths, 800, 100), seed=7)
    assert a.epoch_batches(0) == b.epoch_batches(0)
    assert a.epoch_batches(0) != a.epoch_batches(1)


def test_resume_mid_epoch() -> None:
    make = fixed_size_batches(10)
    full = ResumableBatchSampler(95, make, seed=3)
    whole = list(full) + list(full)  # two epochs
    part = ResumableBatchSampler(95, make, seed=3)
    it = iter(part)
    first = [next(it) for _ in range(4)]
    state = part.state_dict()
    resumed = ResumableBatchSampler(95, make, seed=3)
    resumed.load_state_dict(state)
    rest = list(resumed) + list(resumed)
    assert first + rest == whole


def test_ranks_split_batches() -> None:
    make = fixed_size_batches(5)
    r0 = ResumableBatchSampler(50, make, seed=1, rank=0, world_size=2).epoch_batches(0)
    r1 = ResumableBatchSampler(50, make, seed=1, rank=1, world_size=2).epoch_batches(0)
    assert len(r0) == len(r1) == 5
    assert not set(map(tuple, r0)) & set(map(tuple, r1))


def test_padding_fraction_by_hand() -> None:
    text = np.array([2, 4])
    regions = np.array([3, 3])
    # text: padded 2×4=8 with 6 real; regions: 6 padded, 6 real → 2 / 14
    assert abs(padding_fraction([[0, 1]], text, regions) - 2 / 14) < 1e-12


def test_budget_counts_each_part_padded_separately() -> None:
    """With (text, regions) columns the budget bounds B × (max text + max regions)."""
    rng = np.random.default_rng(1)
    parts = np.stack([rng.integers(8, 40, 3000), rng.integers(10, 100, 3000)], axis=1)
    batches = ResumableBatchSampler(3000, token_budget_batches(parts, 2048, 1024)).epoch_batches(0)
    for b in batches:
        assert len(b) * (parts[b, 0].max() + parts[b, 1].max()) <= 2048 or len(b) == 1
    assert sorted(i for b in batches for i in b) == list(range(3000))


def _two_parts(n: int = 20000, seed: int = 0) -> np.ndarray:
    """(N, 2) caption lengths (a few common ones, as real captions have) and region
    counts 10..100, padded separately."""
    rng = np.random.default_rng(seed)
    text = rng.choice([10, 11, 12, 13, 14, 15, 18, 25], n, p=[.1, .2, .2, .2, .1, .1, .05, .05])
    return np.stack([text, rng.integers(10, 101, n)], axis=1)


def test_two_parts_whole_epoch_every_example_once_within_budget() -> None:
    lengths = _two_parts(3000)
    for bucket in (0, 64, 4096):
        for cap in (None, 40):
            make = token_budget_batches(lengths, 2000, bucket, max_batch_size=cap)
            batches = ResumableBatchSampler(len(lengths), make, seed=3).epoch_batches(0)
            assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
            for b in batches:
                assert len(b) * int(lengths[b].max(axis=0).sum()) <= 2000 or len(b) == 1
                assert cap is None or len(b) <= cap


def test_the_whole_epoch_cut_part_by_part_pads_least_in_about_as_many_batches() -> None:
    """Sorted over the epoch, caption length first, a batch holds one caption length and a
    narrow range of region counts; small buckets keep the cut by total length."""
    lengths = _two_parts()

    def epoch(bucket: int) -> list[list[int]]:
        make = token_budget_batches(lengths, 5000, bucket)  # about 70 pairs a batch
        return ResumableBatchSampler(len(lengths), make, seed=3).epoch_batches(0)

    small, whole = epoch(512), epoch(0)
    pad_small = padding_fraction(small, lengths[:, 0], lengths[:, 1])
    pad_whole = padding_fraction(whole, lengths[:, 0], lengths[:, 1])
    assert pad_whole < 0.04 < 0.1 < pad_small, (pad_whole, pad_small)
    assert len(whole) <= 1.1 * len(small)
    # most batches of the whole epoch hold one caption length
    one_length = np.mean([len(set(lengths[b, 0].tolist())) == 1 for b in whole])
    assert one_length > 0.8
