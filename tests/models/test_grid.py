"""Grid input (SOHO): shapes and masks from padded pixels, the dictionary inside the model,
the frozen backbone, positions; and pixel masks on patches."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from vlp.data.batch import Batch
from vlp.errors import VlpError
from vlp.models import ModelConfig, VLEncoder, build_model
from vlp.models.single_stream import SingleStreamModel, build_grid_input
from vlp.models.visual import GridInput, PatchInput
from vlp.objectives import LossModel, build_objectives

GRID = ModelConfig(visual="grid", hidden_size=32, num_layers=2, num_heads=4,
                   intermediate_size=64, dropout=0.0, vocab_size=50, max_positions=32,
                   image_size=64, vd_size=16, initializer_range=0.05)


def pixel_batch(b: int = 3, h: int = 64, w: int = 80, seed: int = 0, **fields: object
                ) -> Batch:
    """Text and pixels for ``b`` pairs; ``fields`` set more Batch fields."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 50, (b, 6), generator=g)
    return Batch(input_ids=ids, text_mask=torch.ones(b, 6, dtype=torch.bool),
                 pixel_values=torch.randn(b, 3, h, w, generator=g), **fields)  # type: ignore[arg-type]


def grid_input(model: VLEncoder) -> GridInput:
    assert isinstance(model, SingleStreamModel)
    visual = model.visual_input
    assert isinstance(visual, GridInput)
    return visual


def test_shapes_and_mask_from_padded_pixels() -> None:
    """ConvNet (stride 16) on 64×80 pixels: a 4×5 map, pooled to 2×3 cells. Row 1 is real
    on its top-left 20×30 pixels: map rows 0-1 and columns 0-1, so pooled cell (0, 0)."""
    model = build_model(GRID).eval()
    pixel_mask = torch.ones(3, 64, 80, dtype=torch.bool)
    pixel_mask[1, 20:] = False
    pixel_mask[1, :, 30:] = False
    pixel_mask[2, :, 33:] = False  # columns 0-2 of the map: pooled columns 0 and 1
    out = model(pixel_batch(pixel_mask=pixel_mask))
    assert out.image.shape == (3, 6, 32) and out.image_mask.shape == (3, 6)
    assert out.image_mask[0].all()
    assert out.image_mask[1].tolist() == [True, False, False, False, False, False]
    assert out.image_mask[2].tolist() == [True, True, False, True, True, False]
    assert out.vd_indices is not None and out.vd_masked is not None
    assert out.vd_indices.shape == (3, 6)
    assert (out.vd_indices[~out.image_mask] == -1).all()
    assert (out.vd_indices[out.image_mask] >= 0).all()
    assert not out.vd_masked.any()  # no vd_draw: nothing masked
    assert torch.isfinite(out.image).all() and torch.isfinite(out.pooled).all()


def test_without_pixel_mask_every_cell_is_real_and_odd_maps_keep_their_edge() -> None:
    """72×40 pixels: a 5×3 map; the 2×2 pool keeps the partial last row and column (3×2
    cells, where dropping them would leave 2×1)."""
    model = build_model(GRID).eval()
    out = model(pixel_batch(h=72, w=40))
    assert out.image.shape == (3, 6, 32)
    assert out.image_mask.all()


def test_without_dictionary_no_indices() -> None:
    model = build_model(dataclasses.replace(GRID, vd_size=0)).eval()
    assert grid_input(model).dictionary is None
    out = model(pixel_batch(vd_draw=torch.zeros(3)))
    assert out.vd_indices is None and out.vd_masked is None
    with pytest.raises(VlpError, match="no visual dictionary") as err:
        build_objectives(["mvm"], dataclasses.replace(GRID, vd_size=0), model)
    assert "\n" not in str(err.value)


def test_dictionary_tokens_are_feature_plus_entry_and_update_in_training_only() -> None:
    model = build_model(GRID).eval()
    grid = grid_input(model)
    assert grid.dictionary is not None
    batch = pixel_batch()
    before = grid.dictionary.entries.clone()
    out = model(batch)
    assert torch.equal(grid.dictionary.entries, before)
    v = nn.functional.max_pool2d(grid.proj(grid.backbone(batch.pixel_values)), 2, 2,
                                 ceil_mode=True).flatten(2).transpose(1, 2)  # (B, 6, D)
    assert out.vd_indices is not None
    assert torch.equal(out.vd_indices, grid.dictionary.assign(v))
    expected = grid.norm(v + before[out.vd_indices] + grid.positions(2, 3))
    torch.testing.assert_close(grid.embed(batch).tokens, expected, atol=1e-5, rtol=1e-5)
    model.train()(batch)
    assert not torch.equal(grid.dictionary.entries, before)


def test_straight_through_reaches_the_backbone() -> None:
    """A loss on the dictionary's output alone gives the backbone's first conv a gradient."""
    model = build_model(GRID)
    grid = grid_input(model)
    assert grid.dictionary is not None
    batch = pixel_batch()
    v = grid.proj(grid.backbone(batch.pixel_values)).flatten(2).transpose(1, 2)
    quantised, _ = grid.dictionary(v)
    (quantised * torch.randn_like(quantised)).sum().backward()
    first = next(m for m in grid.backbone.modules() if isinstance(m, nn.Conv2d))
    assert first.weight.grad is not None and float(first.weight.grad.abs().sum()) > 0


def test_every_parameter_gets_a_gradient_from_mlm_mvm_itm() -> None:
    torch.manual_seed(0)
    model = build_model(GRID)
    names = ["mlm", "mvm", "itm"]
    module = LossModel(model, build_objectives(names, GRID, model))
    labels = torch.full((3, 6), -100)
    labels[:, 2] = 7
    batch = pixel_batch(mlm_labels=labels, itm_labels=torch.tensor([1, 0, 1]),
                        vd_draw=torch.tensor([0.3, -1.0, 0.9]))
    module(batch, names).loss.backward()
    missing = [n for n, p in module.named_parameters()
               if p.grad is None or float(p.grad.abs().sum()) == 0]
    assert not missing, missing


def test_frozen_backbone_does_not_move_while_the_rest_does() -> None:
    torch.manual_seed(0)
    model = build_model(GRID)
    grid = grid_input(model)
    grid.set_backbone_trainable(False)
    model.train()  # the trainer switches modes; the frozen backbone's BatchNorm stays eval
    assert not grid.backbone.training and grid.proj.training
    backbone = {k: v.clone() for k, v in grid.backbone.state_dict().items()}
    proj = grid.proj.weight.detach().clone()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    out = model(pixel_batch())
    (out.image.square().mean() + out.pooled.square().mean()).backward()
    opt.step()
    for key, value in grid.backbone.state_dict().items():
        assert torch.equal(value, backbone[key]), key  # weights and running statistics
    assert not torch.equal(grid.proj.weight, proj)
    grid.set_backbone_trainable(True)
    assert grid.backbone.training
    assert all(p.requires_grad for p in grid.backbone.parameters())


def test_positions_index_smaller_grids_and_stretch_larger_ones() -> None:
    grid = build_grid_input(GRID)  # 64 pixels: 4 map cells, 2 grid cells a side
    rows, cols = grid.rows.weight, grid.cols.weight
    assert rows.shape[0] == 2
    small = (rows[:1, None] + cols[None, :2]).flatten(0, 1)  # (2, D)
    torch.testing.assert_close(grid.positions(1, 2), small)
    big = grid.positions(3, 2).reshape(3, 2, -1)
    torch.testing.assert_close(big[1, 0], (rows[0] + rows[1]) / 2 + cols[0])
    torch.testing.assert_close(big[2, 1], rows[1] + cols[1])
    out = build_model(GRID).eval()(pixel_batch(h=128, w=128))  # a 4×4 grid
    assert out.image.shape == (3, 16, 32)


@pytest.mark.parametrize(("change", "message"), [
    ({"pixel_values": None}, "model expects pixels (model.visual: grid)"),
    ({"pixel_values": torch.zeros(3, 1, 64, 64)}, "pixel_values have shape (3, 1, 64, 64)"),
    ({"pixel_mask": torch.ones(3, 64, 63, dtype=torch.bool)}, "pixel_mask has shape"),
    ({"vd_draw": torch.zeros(2)}, "vd_draw has shape (2,)"),
])
def test_bad_inputs_fail_with_one_line(change: dict[str, object], message: str) -> None:
    model = build_model(GRID)
    batch = dataclasses.replace(pixel_batch(w=64), **change)  # type: ignore[arg-type]
    with pytest.raises(VlpError) as err:
        model(batch)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_unknown_backbone_is_a_field_error() -> None:
    with pytest.raises(VlpError, match="model.backbone.*unknown backbone 'nope'"):
        dataclasses.replace(GRID, backbone="nope")


def test_patches_are_real_where_any_pixel_is() -> None:
    """ViLT patches of 16 on 64×64 pixels: 4×4 patches; row 1 is real on its top-left
    17×40 pixels: patch rows 0-1 and columns 0-2; [CLS] stays real."""
    cfg = dataclasses.replace(GRID, visual="patches", patch_size=16)
    model = build_model(cfg).eval()
    assert isinstance(model.visual_input, PatchInput)
    pixel_mask = torch.ones(2, 64, 64, dtype=torch.bool)
    pixel_mask[1, 17:] = False
    pixel_mask[1, :, 40:] = False
    out = model(pixel_batch(b=2, w=64, pixel_mask=pixel_mask))
    assert out.image_mask[0].all()
    cells = out.image_mask[1, 1:].reshape(4, 4)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[:2, :3] = True
    assert out.image_mask[1, 0] and torch.equal(cells, expected)
    assert model(pixel_batch(b=2, w=64)).image_mask.all()


@pytest.mark.parametrize("visual", ["grid", "patches"])
def test_an_image_reads_the_same_alone_and_padded_beside_a_wider_one(visual: str) -> None:
    """Tokens of a 64×64 image are the same alone and in a batch padded to 64×160 for a
    wider image: the padding changes neither its features nor its positions."""
    from vlp.data.transforms import pad_images

    cfg = ModelConfig(hidden_size=32, num_layers=1, num_heads=4, intermediate_size=64,
                      vocab_size=50, dropout=0.0, visual=visual, image_size=64,
                      patch_size=16, vd_size=8 if visual == "grid" else 0)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    g = torch.Generator().manual_seed(1)
    small, wide = torch.randn(3, 64, 64, generator=g), torch.randn(3, 64, 160, generator=g)
    ids = torch.ones(2, 4, dtype=torch.long)
    alone = Batch(input_ids=ids[:1], text_mask=ids[:1].bool(), pixel_values=small[None])
    pixels, mask = pad_images([small, wide], 32)
    both = Batch(input_ids=ids, text_mask=ids.bool(), pixel_values=pixels, pixel_mask=mask)
    visual_input = model.visual_input  # type: ignore[union-attr]
    with torch.no_grad():
        a = visual_input.embed(alone)
        b = visual_input.embed(both)
    columns = b.mask.shape[1] // a.mask.shape[1]  # the wide batch's grid is wider
    assert columns > 1
    real = b.mask[0]
    assert int(real.sum()) == a.mask.shape[1]
    torch.testing.assert_close(b.tokens[0][real], a.tokens[0], atol=1e-5, rtol=1e-5)


def test_repeated_images_run_through_the_backbone_once_with_the_same_result() -> None:
    """SOHO's four rows of an image: the backbone sees it once; tokens, dictionary indices
    and the gradient it receives are those of four separate passes."""
    model = build_model(GRID).eval()
    visual = grid_input(model)
    base = pixel_batch(b=3)
    assert base.pixel_values is not None
    pixels = base.pixel_values.repeat_interleave(4, dim=0)  # rows 0-3 image 0, …
    pixels[5] += 1.0  # one row of image 1 is another crop: its own pass
    seen: list[int] = []
    visual.backbone.register_forward_hook(lambda _m, args, _o: seen.append(args[0].shape[0]))
    def rows(p: torch.Tensor) -> Batch:
        n = p.shape[0]
        return Batch(input_ids=torch.full((n, 2), 5), text_mask=torch.ones(n, 2, dtype=torch.bool),
                     pixel_values=p.clone().requires_grad_())

    shared = rows(pixels)
    out = visual.embed(shared)
    assert seen == [5]  # image 0, image 1, its other crop, image 1 again, image 2
    separate = [visual.embed(rows(pixels[i:i + 1])) for i in range(12)]
    torch.testing.assert_close(out.tokens, torch.cat([s.tokens for s in separate]))
    assert out.vd_indices is not None
    assert torch.equal(out.vd_indices, torch.cat([s.vd_indices for s in separate]))  # type: ignore[misc]
    out.tokens.sum().backward()
    assert shared.pixel_values is not None and shared.pixel_values.grad is not None
    assert shared.pixel_values.grad[0].abs().sum() > 0
