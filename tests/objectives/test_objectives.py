"""Each objective's loss falls when over-fitting one fixed batch."""

from __future__ import annotations

import pytest
import torch

from conftest import random_batch
from vlp.models import ModelConfig, build_model
from vlp.objectives import PretrainingModel, build_objectives


@pytest.mark.parametrize("name", ["mlm", "mrfr", "mrc", "mrc_kl", "itm", "itc"])
def test_overfits_one_batch(tiny_cfg: ModelConfig, name: str) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    pm = PretrainingModel(model, build_objectives([name], tiny_cfg, model))
    opt = torch.optim.AdamW(pm.parameters(), lr=3e-3)
    batch = random_batch(b=8, seed=1)
    losses = []
    for _ in range(60):
        out = pm(batch, [name])
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
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
    pm = PretrainingModel(model, objs, {"mlm": 2.0, "itm": 0.5}).eval()
    out = pm(random_batch(), ["mlm", "itm"])
    expected = 2.0 * out.losses["mlm"] + 0.5 * out.losses["itm"]
    torch.testing.assert_close(out.loss, expected)


def test_no_masked_positions_gives_zero_loss_with_graph(tiny_cfg: ModelConfig) -> None:
    model = build_model(tiny_cfg)
    pm = PretrainingModel(model, build_objectives(["mlm", "mrfr"], tiny_cfg, model))
    batch = random_batch()
    batch.mlm_labels = torch.full_like(batch.input_ids, -100)
    batch.region_masked = torch.zeros_like(batch.region_mask)
    out = pm(batch, ["mlm", "mrfr"])
    assert float(out.loss.detach()) == 0.0
    out.loss.backward()  # still part of the graph
