"""The pre-training collator: masks, zeroed regions, ITM negatives, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlp.data.batch import IGNORE_INDEX
from vlp.data.features import Regions
from vlp.data.pretrain import BatchPlan, Example, ImagePool, PretrainCollator
from vlp.data.tokenizer import Tokenizer
from vlp.data.visuals import RegionsInMemory, RegionSource


def _regions(image_id: int, n: int, rng: np.random.Generator) -> Regions:
    xy = rng.uniform(0, 30, (n, 2))
    boxes = np.concatenate([xy, xy + 10], 1).astype(np.float32)
    feats = (0.01 * rng.normal(size=(n, 8)) + image_id).astype(np.float32)  # id readable
    probs = rng.dirichlet(np.ones(3), n).astype(np.float32)
    return Regions(image_id, 64, 64, feats, boxes, probs)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    texts = ["a red circle left of a blue square", "two green stars above a cross"] * 10
    return Tokenizer.train(texts, tmp_path_factory.mktemp("tok") / "vocab.txt", 130, 1)


def _source(n: int = 32, pool: int = 0) -> RegionSource:
    """Regions of images 0 … n - 1, and of 40 pool images from 100 on when ``pool``."""
    rng = np.random.default_rng(0)
    regions = {i: _regions(i, int(rng.integers(2, 7)), rng) for i in range(n)}
    regions.update({i: _regions(i, 3, rng) for i in range(100, 100 + pool)})
    return RegionSource(RegionsInMemory(regions), 100, 7)


def _examples(tokenizer: Tokenizer, n: int = 32) -> list[Example]:
    ids = tokenizer.encode(["a red circle left of a blue square"] * n, 20)
    return [Example(i, ids[i]) for i in range(n)]


def test_masked_regions_are_zero_and_targets_kept(tokenizer: Tokenizer) -> None:
    ex = _examples(tokenizer)
    collate = PretrainCollator(tokenizer, _source(), mask_prob=0.3)
    batch = collate(ex, BatchPlan(mask_image=True), seed=1)
    assert batch.region_masked is not None and batch.region_masked.any()
    assert torch.all(batch.region_feats[batch.region_masked] == 0)
    assert batch.region_targets is not None
    kept = batch.region_mask & ~batch.region_masked
    torch.testing.assert_close(batch.region_feats[kept], batch.region_targets[kept])
    assert not (batch.region_masked & ~batch.region_mask).any()  # padding never masked
    assert batch.mlm_labels is None  # the plan asked for no text masking


def test_conditional_batch_masks_one_modality_per_example(tokenizer: Tokenizer) -> None:
    plan = BatchPlan(mask_text=True, mask_image=True)
    collate = PretrainCollator(tokenizer, _source(), conditional=True)
    batch = collate(_examples(tokenizer), plan, seed=2)
    assert batch.mlm_labels is not None and batch.region_masked is not None
    text_rows = (batch.mlm_labels != IGNORE_INDEX).any(1)
    image_rows = batch.region_masked.any(1)
    assert not (text_rows & image_rows).any()
    assert (text_rows | image_rows).all()


def test_negatives_come_from_the_pool_never_own_image(tokenizer: Tokenizer) -> None:
    pool = ImagePool(list(range(100, 140)))
    collate = PretrainCollator(tokenizer, _source(pool=40), negative_pool=pool)
    ex = _examples(tokenizer)
    batch = collate(ex, BatchPlan(pairs=True, mask_text=True), seed=3)
    assert batch.itm_labels is not None
    neg = batch.itm_labels == 0
    assert 5 < int(neg.sum()) < 27
    # features carry their image id: negatives show pool images, positives their own
    shown = batch.region_feats[:, 0].mean(-1).round()
    assert (shown[neg] >= 100).all()
    assert torch.equal(shown[~neg], torch.arange(32, dtype=torch.float32)[~neg])
    # negatives carry masks too (or the masks would give them away), but no MLM labels
    assert batch.mlm_labels is not None
    assert not (batch.mlm_labels[neg] != IGNORE_INDEX).any()
    assert (batch.input_ids[neg] == tokenizer.mask_id).any(1).float().mean() > 0.5
    assert (batch.mlm_labels[~neg] != IGNORE_INDEX).any(1).all()


def test_same_seed_same_batch(tokenizer: Tokenizer) -> None:
    ex = _examples(tokenizer)
    plan = BatchPlan(mask_text=True, mask_image=True, pairs=True)
    a = PretrainCollator(tokenizer, _source())(ex, plan, seed=9)
    b = PretrainCollator(tokenizer, _source())(ex, plan, seed=9)
    c = PretrainCollator(tokenizer, _source())(ex, plan, seed=10)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.region_feats, b.region_feats)
    assert not torch.equal(a.input_ids, c.input_ids)


def _count_classifier_accuracy(tokenizer: Tokenizer, pool: ImagePool, source: RegionSource,
                               counts: dict[int, int]) -> tuple[float, float]:
    """Batches bucketed by region count (as the token-budget sampler makes them), ITM
    negatives drawn from ``pool``: (the share of rows whose region count is their own
    example's, the held-out accuracy of the best rule on (a row's count, its batch's
    smallest and largest count) alone)."""
    by_count = sorted(counts, key=lambda i: (counts[i], i))
    ids = tokenizer.encode(["a red circle left of a blue square"], 20)[0]
    collate = PretrainCollator(tokenizer, source, negative_pool=pool)
    rows: list[tuple[tuple[int, int, int], int]] = []
    kept = []
    for seed, start in enumerate(range(0, len(by_count), 16)):
        examples = [Example(i, ids) for i in by_count[start:start + 16]]
        batch = collate(examples, BatchPlan(pairs=True), seed=seed)
        assert batch.region_mask is not None and batch.itm_labels is not None
        n = batch.region_mask.sum(1).tolist()
        kept += [c == counts[e.image_id] for c, e in zip(n, examples, strict=True)]
        rows += [((c, min(n), max(n)), int(y)) for c, y in zip(n, batch.itm_labels.tolist(),
                                                              strict=True)]
    train, test = rows[::2], rows[1::2]
    votes: dict[tuple[int, int, int], list[int]] = {}
    for key, y in train:
        votes.setdefault(key, []).append(y)
    rule = {k: int(np.mean(v) >= 0.5) for k, v in votes.items()}
    majority = int(np.mean([y for _, y in train]) >= 0.5)
    accuracy = float(np.mean([rule.get(k, majority) == y for k, y in test]))
    return float(np.mean(kept)), accuracy


def test_pool_negatives_keep_the_bucket_and_give_nothing_away(tokenizer: Tokenizer) -> None:
    """Negatives of the same region count: a bucket's counts survive exactly and a rule on
    counts alone stays at chance; negatives of any count leak the label (the same rule
    then beats chance by far), which is what the matched pool prevents."""
    rng = np.random.default_rng(1)
    counts = {i: int(rng.integers(2, 30)) for i in range(1200)}
    regions = {i: _regions(i, n, rng) for i, n in counts.items()}
    source = RegionSource(RegionsInMemory(regions), 100, 7)
    kept, matched = _count_classifier_accuracy(
        tokenizer, ImagePool(list(counts), counts), source, counts)
    assert kept == 1.0
    assert abs(matched - 0.5) < 0.06, matched  # 600 held-out rows: chance ± 2.4 sd
    kept_any, leaked = _count_classifier_accuracy(tokenizer, ImagePool(list(counts)), source,
                                                  counts)
    assert kept_any < 0.7 and leaked > 0.6, (kept_any, leaked)


def test_a_count_no_other_image_has_takes_the_nearest(tokenizer: Tokenizer) -> None:
    pool = ImagePool([1, 2, 3, 4], {1: 5, 2: 9, 3: 9, 4: 20})
    g = torch.Generator().manual_seed(0)
    assert {pool.sample(1, g) for _ in range(20)} == {2, 3}  # 9 is nearest 5
    assert {pool.sample(2, g) for _ in range(20)} == {3}  # its own count, not itself
    assert {pool.sample(4, g) for _ in range(20)} == {2, 3}
