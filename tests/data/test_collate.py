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
