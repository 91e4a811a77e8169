"""Single-stream model: shapes, padding, gradients."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import random_batch
from vlp.errors import VlpError
from vlp.models import ModelConfig, build_model
from vlp.objectives import LossModel, build_objectives


def test_forward_shapes_and_finite(tiny_cfg: ModelConfig) -> None:
    model = build_model(tiny_cfg).eval()
    batch = random_batch()
    out = model(batch)
    assert out.text.shape == (4, 7, 32)
    assert out.image.shape == (4, 5, 32)
    assert out.pooled.shape == (4, 32)
    assert torch.isfinite(out.text).all() and torch.isfinite(out.image).all()


def test_padding_does_not_change_real_positions(tiny_cfg: ModelConfig) -> None:
    """Extra padded tokens and regions must not move any real position's output."""
    model = build_model(tiny_cfg).eval()
    batch = random_batch(b=2)
    padded = dataclasses.replace(
        batch,
        input_ids=torch.cat([batch.input_ids, torch.zeros(2, 3, dtype=torch.long)], 1),
        text_mask=torch.cat([batch.text_mask, torch.zeros(2, 3, dtype=torch.bool)], 1),
        region_feats=torch.cat([batch.region_feats, torch.randn(2, 2, 12)], 1),
        region_loc=torch.cat([batch.region_loc, torch.rand(2, 2, 7)], 1),
        region_mask=torch.cat([batch.region_mask, torch.zeros(2, 2, dtype=torch.bool)], 1),
    )
    a, b = model(batch), model(padded)
    real_t = batch.text_mask
    torch.testing.assert_close(a.text[real_t], b.text[:, :7][real_t], atol=1e-5, rtol=1e-5)
    real_i = batch.region_mask
    torch.testing.assert_close(a.image[real_i], b.image[:, :5][real_i], atol=1e-5, rtol=1e-5)


def test_every_parameter_gets_a_gradient(tiny_cfg: ModelConfig) -> None:
    model = build_model(tiny_cfg)
    names = ["mlm", "mrfr", "mrc", "mrc_kl", "itm", "itc"]
    pm = LossModel(model, build_objectives(names, tiny_cfg, model))
    out = pm(random_batch(), names)
    out.loss.backward()
    missing = [n for n, p in pm.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert missing == [], missing


def test_wrong_feature_size_is_one_clear_line(tiny_cfg: ModelConfig) -> None:
    model = build_model(tiny_cfg)
    batch = random_batch()
    batch.region_feats = torch.randn(4, 5, 13)
    with pytest.raises(VlpError) as err:
        model(batch)
    assert "size 13" in str(err.value) and "12" in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_architecture(tiny_cfg: ModelConfig) -> None:
    with pytest.raises(VlpError, match="unknown architecture 'nope'"):
        build_model(dataclasses.replace(tiny_cfg, arch="nope"))


def test_mlm_decoder_tied_to_word_embeddings(tiny_cfg: ModelConfig) -> None:
    model = build_model(tiny_cfg)
    objectives = build_objectives(["mlm"], tiny_cfg, model)
    assert objectives["mlm"].head.decoder.weight is model.word_embeddings.weight


def test_mean_pooler_ignores_padding(tiny_cfg: ModelConfig) -> None:
    model = build_model(dataclasses.replace(tiny_cfg, pooler="mean")).eval()
    batch = random_batch(b=2)
    padded = dataclasses.replace(
        batch,
        input_ids=torch.cat([batch.input_ids, torch.zeros(2, 3, dtype=torch.long)], 1),
        text_mask=torch.cat([batch.text_mask, torch.zeros(2, 3, dtype=torch.bool)], 1),
    )
    torch.testing.assert_close(model(batch).pooled, model(padded).pooled, atol=1e-5, rtol=1e-5)
    cls_model = build_model(tiny_cfg).eval()
    cls_model.load_state_dict(model.state_dict())
    assert not torch.allclose(cls_model(batch).pooled, model(batch).pooled)


def test_initializer_range(tiny_cfg: ModelConfig) -> None:
    wide = build_model(dataclasses.replace(tiny_cfg, initializer_range=0.08))
    narrow = build_model(tiny_cfg)
    w = wide.encoder.layers[0].mlp.fc1.weight.detach()
    n = narrow.encoder.layers[0].mlp.fc1.weight.detach()
    assert 0.07 < float(w.std()) < 0.09 and 0.017 < float(n.std()) < 0.023


def test_product_pooler_multiplies_mean_text_and_mean_image(tiny_cfg: ModelConfig) -> None:
    model = build_model(dataclasses.replace(tiny_cfg, pooler="product")).eval()
    batch = random_batch()
    out = model(batch)
    assert out.pooled_text is not None and out.pooled_image is not None
    torch.testing.assert_close(out.pooled, out.pooled_text * out.pooled_image)
    # padding stays out of both means
    padded = dataclasses.replace(batch, region_feats=batch.region_feats.clone())
    padded.region_feats[~batch.region_mask] = 100.0
    torch.testing.assert_close(model(padded).pooled, out.pooled)
