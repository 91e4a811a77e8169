"""Each objective's loss falls when over-fitting one fixed batch."""

from __future__ import annotations

import pytest
import torch

from conftest import overfit_losses, random_batch
from vlp.models import ModelConfig, build_model
from vlp.objectives import LossModel, build_objectives
from vlp.objectives.itm import itc_hard_negatives


@pytest.mark.slow  # 60 training steps each
@pytest.mark.parametrize("name", ["mlm", "mrfr", "mrc", "mrc_kl", "itm", "itc"])
def test_overfits_one_batch(tiny_cfg: ModelConfig, name: str) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    pm = LossModel(model, build_objectives([name], tiny_cfg, model))
    batch = random_batch(b=8, seed=1)
    losses = overfit_losses(pm, batch, [name], 60, lr=3e-3)
    assert losses[-1] < 0.3 * losses[0], (name, losses[0], losses[-1])


def test_mlm_logits_only_at_masked_positions(tiny_cfg: ModelConfig) -> None:
    """The vocabulary head sees exactly the labelled positions (2 per example here)."""
    model = build_model(tiny_cfg)
    mlm = build_objectives(["mlm"], tiny_cfg, model)["mlm"]
    seen: list[torch.Size] = []
    mlm.head.decoder.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    batch = random_batch()
    out = mlm(model(batch), batch)
    assert seen == [torch.Size([8, 50])]
    assert int(out.count) == 8


def test_summed_objectives_weighted(tiny_cfg: ModelConfig) -> None:
    model = build_model(tiny_cfg).eval()
    objs = build_objectives(["mlm", "itm"], tiny_cfg, model)
    pm = LossModel(model, objs, {"mlm": 2.0, "itm": 0.5}).eval()
    out = pm(random_batch(), ["mlm", "itm"])
    expected = 2.0 * out.losses["mlm"] + 0.5 * out.losses["itm"]
    torch.testing.assert_close(out.loss, expected)


def test_no_masked_positions_gives_zero_loss_with_graph(tiny_cfg: ModelConfig) -> None:
    model = build_model(tiny_cfg)
    pm = LossModel(model, build_objectives(["mlm", "mrfr"], tiny_cfg, model))
    batch = random_batch()
    batch.mlm_labels = torch.full_like(batch.input_ids, -100)
    batch.region_masked = torch.zeros_like(batch.region_mask)
    out = pm(batch, ["mlm", "mrfr"])
    assert float(out.loss.detach()) == 0.0
    out.loss.backward()  # still part of the graph


def test_itc_hard_negatives_follow_similarity() -> None:
    """Each mismatched row takes the true pair's image its text is most similar to (with a
    sharp softmax), never its own image; true rows and texts stay; a foreign image brings
    no region targets."""
    batch = random_batch(b=8, seed=3)
    batch.itm_labels = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0])
    # row 5's text belongs to image 10, which true rows 0 and 6 show
    batch.image_ids = torch.tensor([10, 11, 12, 13, 14, 10, 10, 17])
    assert batch.region_masked is not None
    batch.region_masked[:] = True
    favourite = {1: 2, 3: 4, 5: 4, 7: 6}  # mismatched row → the true row it ends up with
    text, image = torch.zeros(8, 8), torch.eye(8)
    for row, j in favourite.items():
        text[row, j] = 40.0  # a sharp preference
    text[5, 0] = 50.0  # row 5 likes its own image best: never a negative of itself
    mined = itc_hard_negatives(batch, text, image, torch.Generator().manual_seed(0))
    assert torch.equal(mined.input_ids, batch.input_ids)
    assert torch.equal(mined.itm_labels, batch.itm_labels)  # type: ignore[arg-type]
    assert torch.equal(mined.image_ids, batch.image_ids)  # type: ignore[arg-type]
    assert batch.region_feats is not None and mined.region_feats is not None
    for row, j in favourite.items():
        assert torch.equal(mined.region_feats[row], batch.region_feats[j])
    for row in (0, 2, 4, 6):  # true pairs keep their own image
        assert torch.equal(mined.region_feats[row], batch.region_feats[row])
    assert mined.region_masked is not None
    assert not mined.region_masked[[1, 3, 5, 7]].any() and mined.region_masked[[0, 2]].all()
