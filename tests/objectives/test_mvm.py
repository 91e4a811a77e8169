"""Masked visual modelling: which tokens are masked, what the loss sees, refusals."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from vlp.data.batch import Batch
from vlp.errors import VlpError
from vlp.models import ModelConfig, build_model
from vlp.models.outputs import VLOutput
from vlp.models.visual import GridInput, mvm_mask
from vlp.objectives import build_objectives
from vlp.objectives.mvm import MVM

GRID = ModelConfig(visual="grid", hidden_size=32, num_layers=2, num_heads=4,
                   intermediate_size=64, dropout=0.0, vocab_size=50, max_positions=32,
                   image_size=64, vd_size=16, initializer_range=0.05)


def reference_mask(indices: torch.Tensor, draw: torch.Tensor) -> torch.Tensor:
    """The rule, row by row in Python."""
    masked = torch.zeros_like(indices, dtype=torch.bool)
    for b in range(indices.shape[0]):
        present = sorted({i for i in indices[b].tolist() if i >= 0})
        if float(draw[b]) < 0 or not present:
            continue
        entry = present[math.floor(float(draw[b]) * len(present))]
        masked[b] = indices[b] == entry
    return masked


def test_mask_picks_the_drawn_entry_among_those_present() -> None:
    indices = torch.tensor([[3, 1, 3, -1, 7, 1]] * 4 + [[-1] * 6])
    draw = torch.tensor([0.5, 0.0, 0.99, -1.0, 0.3])  # present: 1, 3, 7
    masked = mvm_mask(indices, draw, 8)
    assert masked.tolist() == [[True, False, True, False, False, False],
                               [False, True, False, False, False, True],
                               [False, False, False, False, True, False],
                               [False] * 6, [False] * 6]
    assert not mvm_mask(indices, None, 8).any()


def test_mask_matches_the_rule_on_random_rows() -> None:
    g = torch.Generator().manual_seed(0)
    indices = torch.randint(-1, 9, (64, 12), generator=g)
    draw = torch.rand(64, generator=g)
    draw[::5] = -1.0
    assert torch.equal(mvm_mask(indices, draw, 9), reference_mask(indices, draw))


def test_the_model_masks_exactly_the_picked_entrys_tokens_and_leaves_minus_one_rows() -> None:
    model = build_model(GRID).eval()
    grid = model.visual_input
    assert isinstance(grid, GridInput) and grid.mask_embedding is not None
    g = torch.Generator().manual_seed(3)
    batch = Batch(input_ids=torch.randint(5, 50, (3, 6), generator=g),
                  text_mask=torch.ones(3, 6, dtype=torch.bool),
                  pixel_values=torch.randn(3, 3, 128, 128, generator=g))
    with torch.no_grad():  # entries at some of the cells' features: several per image
        grid.mask_embedding.normal_(generator=g)
        v = F.max_pool2d(grid.proj(grid.backbone(batch.pixel_values)), 2, 2)  # (3, D, 4, 4)
        cells = v.flatten(2).transpose(1, 2).reshape(48, -1)
        pick = torch.randperm(48, generator=g)[:16]
        grid.dictionary.entries.copy_(cells[pick])  # type: ignore[union-attr]
    draw = torch.tensor([0.4, -1.0, 0.0])
    whole = grid.embed(batch)
    masked = grid.embed(dataclasses.replace(batch, vd_draw=draw))
    assert whole.vd_indices is not None and masked.vd_masked is not None
    assert torch.equal(masked.vd_indices, whole.vd_indices)  # type: ignore[arg-type]
    assert torch.equal(masked.vd_masked, reference_mask(whole.vd_indices, draw))
    assert masked.vd_masked[0].any() and masked.vd_masked[2].any()
    assert not masked.vd_masked[1].any()
    keep = ~masked.vd_masked
    assert keep[0].any() and keep[2].any()  # several entries in a row: a real choice
    torch.testing.assert_close(masked.tokens[keep], whole.tokens[keep])
    mask_token = grid.norm(grid.mask_embedding + grid.positions(4, 4))  # (16, D)
    rows, cells = torch.nonzero(masked.vd_masked, as_tuple=True)
    torch.testing.assert_close(masked.tokens[rows, cells], mask_token[cells])
    out = model(dataclasses.replace(batch, vd_draw=draw))
    assert torch.equal(out.vd_masked, masked.vd_masked)  # type: ignore[arg-type]


def fake_output(seed: int = 0) -> VLOutput:
    g = torch.Generator().manual_seed(seed)
    b, r, d = 3, 8, 32
    masked = torch.zeros(b, r, dtype=torch.bool)
    masked[0, [1, 4]] = True
    masked[2, 7] = True
    image_mask = torch.ones(b, r, dtype=torch.bool)
    image_mask[2, 6:] = False  # a masked padding token does not count
    return VLOutput(text=torch.randn(b, 4, d, generator=g), image=torch.randn(b, r, d, generator=g),
                    text_mask=torch.ones(b, 4, dtype=torch.bool), image_mask=image_mask,
                    pooled=torch.randn(b, d, generator=g),
                    vd_indices=torch.randint(0, 16, (b, r), generator=g), vd_masked=masked)


def test_loss_is_cross_entropy_at_masked_tokens_only() -> None:
    model = build_model(GRID)
    mvm = build_objectives(["mvm"], GRID, model)["mvm"]
    assert isinstance(mvm, MVM) and mvm.masks == "image"
    out = fake_output()
    batch = Batch(input_ids=torch.zeros(3, 4, dtype=torch.long),
                  text_mask=torch.ones(3, 4, dtype=torch.bool))
    result = mvm(out, batch)
    where = torch.zeros(3, 8, dtype=torch.bool)
    where[0, [1, 4]] = True
    assert out.vd_indices is not None
    expected = F.cross_entropy(mvm.head(out.image[where]), out.vd_indices[where])
    torch.testing.assert_close(result.loss, expected)
    assert int(result.count) == 2  # type: ignore[arg-type]
    # states elsewhere never reach the loss
    other = dataclasses.replace(out, image=torch.where(where[..., None], out.image,
                                                       torch.randn_like(out.image) * 100))
    torch.testing.assert_close(mvm(other, batch).loss, result.loss)
    moved = out.image.clone()
    moved[0, 4] += 1.0
    assert not torch.equal(mvm(dataclasses.replace(out, image=moved), batch).loss, result.loss)


def test_mismatched_pairs_are_masked_but_not_scored() -> None:
    """Row 0 holds the masked tokens; as a mismatched pair (ITM label 0) it is not scored."""
    model = build_model(GRID)
    mvm = build_objectives(["mvm"], GRID, model)["mvm"]
    out = fake_output()
    ids = torch.zeros(3, 4, dtype=torch.long)
    true = Batch(input_ids=ids, text_mask=ids >= 0, itm_labels=torch.tensor([1, 0, 1]))
    assert int(mvm(out, true).count) == 2  # type: ignore[arg-type]
    false = Batch(input_ids=ids, text_mask=ids >= 0, itm_labels=torch.tensor([0, 1, 1]))
    result = mvm(out, false)
    assert float(result.loss.detach()) == 0.0 and result.count is None


def test_no_masked_row_gives_a_zero_loss_with_graph() -> None:
    model = build_model(GRID)
    mvm = build_objectives(["mvm"], GRID, model)["mvm"]
    out = fake_output()
    out.image.requires_grad_(True)
    none = dataclasses.replace(out, vd_masked=torch.zeros_like(out.image_mask))
    batch = Batch(input_ids=torch.zeros(3, 4, dtype=torch.long),
                  text_mask=torch.ones(3, 4, dtype=torch.bool))
    loss = mvm(none, batch).loss
    assert float(loss.detach()) == 0.0 and loss.requires_grad


@pytest.mark.parametrize("cfg", [
    ModelConfig(hidden_size=32, num_heads=4, vocab_size=50, region_feature_dim=12),
    dataclasses.replace(GRID, vd_size=0)])
def test_models_without_a_dictionary_are_refused_at_build(cfg: ModelConfig) -> None:
    model = build_model(cfg)
    with pytest.raises(VlpError) as err:
        build_objectives(["mvm"], cfg, model)
    message = str(err.value)
    assert message.startswith("objective mvm predicts visual-dictionary entries") and \
        "\n" not in message
