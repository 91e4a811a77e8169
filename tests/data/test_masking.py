"""MLM masking statistics and conditional / joint masking."""

from __future__ import annotations

import torch

from vlp.data.batch import IGNORE_INDEX
from vlp.data.masking import choose_positions, mask_tokens, split_modalities

MASK_ID = 4
VOCAB = 1000


def test_mlm_statistics() -> None:
    """15 % chosen; of those 80 % [MASK], 10 % random, 10 % unchanged."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, VOCAB, (400, 50), generator=g)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    out, labels = mask_tokens(ids, maskable, 0.15, MASK_ID, VOCAB, g)
    chosen = labels != IGNORE_INDEX
    n = int(chosen.sum())
    assert abs(n / ids.numel() - 0.15) < 0.01
    assert torch.equal(labels[chosen], ids[chosen])
    as_mask = (out[chosen] == MASK_ID).float().mean().item()
    unchanged = (out[chosen] == ids[chosen]).float().mean().item()
    random = 1.0 - as_mask - unchanged
    assert abs(as_mask - 0.8) < 0.02
    # a random draw equal to the original counts as unchanged (1/1000 of the 10 %)
    assert abs(unchanged - 0.1) < 0.015
    assert abs(random - 0.1) < 0.015
    assert torch.equal(out[~chosen], ids[~chosen])  # nothing else touched


def test_only_maskable_positions_and_at_least_one_per_row() -> None:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(10, VOCAB, (64, 6), generator=g)
    maskable = torch.zeros_like(ids, dtype=torch.bool)
    maskable[:32, 1:5] = True  # rows 32.. have nothing maskable (e.g. negatives)
    _, labels = mask_tokens(ids, maskable, 0.15, MASK_ID, VOCAB, g)
    chosen = labels != IGNORE_INDEX
    assert not (chosen & ~maskable).any()
    assert chosen[:32].any(dim=1).all()
    assert not chosen[32:].any()


def test_choose_positions_respects_candidates() -> None:
    g = torch.Generator().manual_seed(2)
    cand = torch.rand(100, 10, generator=g) < 0.5
    chosen = choose_positions(cand, 0.15, g)
    assert not (chosen & ~cand).any()


def test_conditional_never_masks_both_modalities() -> None:
    g = torch.Generator().manual_seed(3)
    active = torch.rand(1000, generator=g) < 0.7
    text, image = split_modalities(active, True, True, conditional=True, gen=g)
    assert not (text & image).any()
    assert torch.equal(text | image, active)  # every active example masks one modality
    assert 0.4 < text[active].float().mean() < 0.6


def test_joint_masks_both() -> None:
    g = torch.Generator().manual_seed(4)
    active = torch.ones(10, dtype=torch.bool)
    text, image = split_modalities(active, True, True, conditional=False, gen=g)
    assert text.all() and image.all()


def test_single_modality_plan() -> None:
    g = torch.Generator().manual_seed(5)
    active = torch.tensor([True, False, True])
    text, image = split_modalities(active, True, False, conditional=True, gen=g)
    assert torch.equal(text, active) and not image.any()
