"""WRA: the IPOT plan has the right marginals and finds the cheap assignment; the loss
separates matching from mismatched pairs when trained."""

from __future__ import annotations

import pytest
import torch

from conftest import overfit_losses, random_batch
from vlp.errors import VlpError
from vlp.models import ModelConfig, build_model
from vlp.models.outputs import VLOutput
from vlp.objectives import LossModel, build_objectives
from vlp.objectives.wra import ipot_plan, transport_distance


def test_plan_has_uniform_marginals_and_zero_padding() -> None:
    g = torch.Generator().manual_seed(0)
    cost = torch.rand(2, 5, 4, generator=g)
    rows = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    cols = torch.tensor([[True] * 4, [True] * 2 + [False] * 2])
    plan = ipot_plan(cost, rows, cols)
    assert torch.allclose(plan[0].sum(1), torch.full((5,), 1 / 5), atol=1e-4)
    assert torch.allclose(plan[0].sum(0), torch.full((4,), 1 / 4), atol=1e-4)
    assert torch.allclose(plan[1, :3].sum(1), torch.full((3,), 1 / 3), atol=1e-4)
    assert torch.allclose(plan[1, :, :2].sum(0), torch.full((2,), 1 / 2), atol=1e-4)
    assert plan[1, 3:].abs().sum() == 0 and plan[1, :, 2:].abs().sum() == 0


def test_plan_finds_the_cheap_matching() -> None:
    """Cost 0 on a permutation and 1 elsewhere: all mass goes along the permutation."""
    perm = torch.tensor([2, 0, 3, 1])
    cost = torch.ones(1, 4, 4)
    cost[0, torch.arange(4), perm] = 0.0
    plan = ipot_plan(cost, torch.ones(1, 4, dtype=torch.bool), torch.ones(1, 4, dtype=torch.bool))
    assert torch.allclose(plan[0, torch.arange(4), perm], torch.full((4,), 0.25), atol=1e-3)


def test_distance_is_zero_for_the_same_set_and_one_for_orthogonal_sets() -> None:
    words = torch.eye(6)[None, :3]  # three orthonormal word states
    mask = torch.ones(1, 3, dtype=torch.bool)
    same = words[:, [1, 2, 0]]  # the same states in another order
    other = torch.eye(6)[None, 3:]
    assert transport_distance(words, mask, same, mask).item() == pytest.approx(0.0, abs=1e-4)
    assert transport_distance(words, mask, other, mask).item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow  # training
def test_training_pulls_matches_together_and_mismatches_apart(tiny_cfg: ModelConfig) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    pm = LossModel(model, build_objectives(["wra"], tiny_cfg, model))
    batch = random_batch(b=8, seed=1)
    losses = overfit_losses(pm, batch, ["wra"], 40, lr=3e-3)
    # matching minus mismatched distance: it starts near 0 and must turn clearly negative
    assert losses[-1] < losses[0] - 0.1, (losses[0], losses[-1])


def test_unequal_widths_are_one_clear_error(tiny_cfg: ModelConfig) -> None:
    wra = build_objectives(["wra"], tiny_cfg, build_model(tiny_cfg))["wra"]
    batch = random_batch(b=4)
    out = VLOutput(text=torch.randn(4, 7, 32), image=torch.randn(4, 5, 16),
                   text_mask=batch.text_mask, image_mask=torch.ones(4, 5, dtype=torch.bool),
                   pooled=torch.randn(4, 32))
    with pytest.raises(VlpError, match="widths 32 and 16"):
        wra(out, batch)
