"""Two-stream model (ViLBERT- and LXMERT-style): shapes, padding, gradients, over-fitting,
text initialisation from BERT, and a short pre-training run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

from conftest import make_dataset, overfit_losses, random_batch, save_reference
from vlp.config import load_config
from vlp.convert import read_hf
from vlp.convert.bert import bert_text_state
from vlp.data.batch import Batch
from vlp.errors import VlpError
from vlp.models import ModelConfig, build_model
from vlp.models.two_stream import TwoStreamModel
from vlp.objectives import LossModel, build_objectives
from vlp.train.config import PretrainConfig
from vlp.train.pretrain import build_pretraining

ALL = ["mlm", "mrfr", "mrc", "mrc_kl", "itm", "itc"]
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def vilbert(tiny: ModelConfig) -> ModelConfig:
    """ViLBERT-style: 1 plain text layer, 2 co-attention blocks, a narrower image stream."""
    return dataclasses.replace(tiny, arch="two_stream", num_layers=3, image_hidden_size=24,
                               image_num_heads=2, image_intermediate_size=48,
                               num_image_layers=2, num_cross_layers=2)


def lxmert(tiny: ModelConfig) -> ModelConfig:
    """LXMERT-style: L=1, R=1, X=2, one shared cross-attention, 4-d boxes, text pooled."""
    return dataclasses.replace(tiny, arch="two_stream", num_layers=3, num_image_layers=3,
                               num_cross_layers=2, cross_attention="shared",
                               cross_block="lxmert", pooled="text", region_embed="lxmert",
                               loc_dim=4)


STYLES = {"vilbert": vilbert, "lxmert": lxmert}


def batch_for(cfg: ModelConfig, **kw: int) -> Batch:
    """``conftest.random_batch`` with locations of the config's size."""
    batch = random_batch(**kw)
    if cfg.loc_dim == 4 and batch.region_loc is not None:
        batch.region_loc = batch.region_loc[..., :4]  # x1/W, y1/H, x2/W, y2/H
    return batch


@pytest.fixture(params=list(STYLES))
def cfg(request: pytest.FixtureRequest, tiny_cfg: ModelConfig) -> ModelConfig:
    return STYLES[request.param](tiny_cfg)


def test_forward_shapes_and_finite(cfg: ModelConfig) -> None:
    model = build_model(cfg).eval()
    assert isinstance(model, TwoStreamModel)
    out = model(batch_for(cfg))
    width = 24 if cfg.cross_block == "vilbert" else 32
    assert out.text.shape == (4, 7, 32) and out.image.shape == (4, 5, width)
    assert out.text_mask.shape == (4, 7) and out.image_mask.shape == (4, 5)
    assert out.pooled.shape == (4, 32) and out.pooled_text is not None
    assert out.pooled_text.shape == (4, 32)
    if cfg.pooled == "product":
        assert out.pooled_image is not None and out.pooled_image.shape == (4, 32)
        torch.testing.assert_close(out.pooled, out.pooled_text * out.pooled_image)
    else:
        assert out.pooled_image is None and torch.equal(out.pooled, out.pooled_text)
    for t in (out.text, out.image, out.pooled):
        assert torch.isfinite(t).all()


def test_layer_counts(tiny_cfg: ModelConfig) -> None:
    v = build_model(vilbert(tiny_cfg))
    assert isinstance(v, TwoStreamModel)
    assert (len(v.text_encoder.layers), len(v.image_encoder.layers), len(v.blocks)) == (1, 0, 2)
    assert all(b.image_cross is not None for b in v.blocks)
    x = build_model(lxmert(tiny_cfg))
    assert isinstance(x, TwoStreamModel)
    assert (len(x.text_encoder.layers), len(x.image_encoder.layers), len(x.blocks)) == (1, 1, 2)
    assert all(b.image_cross is None for b in x.blocks)


def test_streams_never_see_each_others_padding(cfg: ModelConfig) -> None:
    """Padded regions and tokens, whatever they hold, move no real output."""
    model = build_model(cfg).eval()
    batch = batch_for(cfg, b=2)
    g = torch.Generator().manual_seed(5)
    assert batch.region_feats is not None and batch.region_loc is not None
    padded = dataclasses.replace(
        batch,
        input_ids=torch.cat([batch.input_ids, torch.randint(5, 50, (2, 3), generator=g)], 1),
        text_mask=torch.cat([batch.text_mask, torch.zeros(2, 3, dtype=torch.bool)], 1),
        region_feats=torch.cat([batch.region_feats, torch.randn(2, 2, 12, generator=g)], 1),
        region_loc=torch.cat([batch.region_loc,
                              torch.rand(2, 2, cfg.loc_dim, generator=g)], 1),
        region_mask=torch.cat([batch.region_mask, torch.zeros(2, 2, dtype=torch.bool)], 1),
    )
    # the padded region already in the batch (row 1, last) gets other features too
    padded.region_feats[1, 4] = 100.0
    a, b = model(batch), model(padded)
    real_t, real_i = batch.text_mask, batch.region_mask
    torch.testing.assert_close(a.text[real_t], b.text[:, :7][real_t], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.image[real_i], b.image[:, :5][real_i], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.pooled, b.pooled, atol=1e-5, rtol=1e-5)


def test_every_parameter_gets_a_gradient(cfg: ModelConfig) -> None:
    model = build_model(cfg)
    pm = LossModel(model, build_objectives(ALL, cfg, model))
    pm(batch_for(cfg), ALL).loss.backward()
    missing = [n for n, p in pm.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert missing == [], missing


def test_region_heads_take_the_image_width(tiny_cfg: ModelConfig) -> None:
    cfg = vilbert(tiny_cfg)
    model = build_model(cfg)
    objectives = build_objectives(["mrfr", "mrc", "mlm"], cfg, model)
    assert objectives["mrfr"].head[0].dense.in_features == 24
    assert objectives["mrc"].head[1].out_features == 5
    assert objectives["mlm"].head.decoder.weight is model.word_embeddings.weight


@pytest.mark.slow  # training
@pytest.mark.parametrize("style", list(STYLES))
@pytest.mark.parametrize("name", ALL)
def test_overfits_one_batch(tiny_cfg: ModelConfig, style: str, name: str) -> None:
    torch.manual_seed(0)
    cfg = STYLES[style](tiny_cfg)
    model = build_model(cfg)
    pm = LossModel(model, build_objectives([name], cfg, model))
    batch = batch_for(cfg, b=8, seed=1)
    losses = overfit_losses(pm, batch, [name], 40, lr=3e-3)
    assert losses[-1] < 0.3 * losses[0], (name, losses[0], losses[-1])


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    ref = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=3,
                               num_attention_heads=4, intermediate_size=64,
                               max_position_embeddings=32)).eval()
    out = tmp_path_factory.mktemp("hf") / "bert"
    # LayerNorms off their (1, 0) start, so that a mix-up would show
    return save_reference(ref, lambda name: 0.1 if "LayerNorm" in name else 0.0, out)


def test_load_text_weights_sets_the_text_stream(tiny_cfg: ModelConfig, tiny_bert: Path) -> None:
    """BERT's 3 layers fill the plain text layer and the text layer of both blocks; the
    text stream alone then computes BERT, and nothing else is touched."""
    cfg = vilbert(tiny_cfg)
    model = build_model(cfg).eval()
    assert isinstance(model, TwoStreamModel)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = bert_text_state(read_hf(tiny_bert), 3)
    left = model.load_text_weights(state, "tiny bert")
    after = model.state_dict()
    text = ("text_embed.", "text_encoder.", "text_pooler.", "blocks.0.text_layer.",
            "blocks.1.text_layer.")
    assert [k for k in after if k.startswith(text) and k in left] == []
    assert all(torch.equal(after[k], before[k]) for k in left)
    assert torch.equal(after["text_encoder.layers.0.attn.qkv.weight"],
                       state["encoder.layers.0.attn.qkv.weight"])
    assert torch.equal(after["blocks.1.text_layer.norm2.bias"],
                       state["encoder.layers.2.norm2.bias"])
    ref = BertModel.from_pretrained(tiny_bert).eval()
    batch = random_batch()
    with torch.no_grad():
        got = model.encode_text(batch)
        want = ref(input_ids=batch.input_ids, attention_mask=batch.text_mask.long())
        real = batch.text_mask
        assert (got[real] - want.last_hidden_state[real]).abs().max() <= 1e-4
        assert (model.text_pooler(got, real) - want.pooler_output).abs().max() <= 1e-4
    with pytest.raises(VlpError, match="text layer 3 has no place"):
        model.load_text_weights(bert_text_state(read_hf(tiny_bert), 3) | {
            "encoder.layers.3.norm1.bias": torch.zeros(32)}, "tiny bert")


def test_layouts_that_cannot_be_built_name_the_field(tiny_cfg: ModelConfig) -> None:
    cases = {
        "model.num_cross_layers": dict(num_cross_layers=0),
        "model.num_image_layers": dict(num_image_layers=1),
        "model.cross_attention": dict(cross_attention="shared"),
        "model.region_embed": dict(region_embed="visualbert"),
    }
    for field, change in cases.items():
        with pytest.raises(VlpError, match=field):
            build_model(dataclasses.replace(vilbert(tiny_cfg), **change))  # type: ignore[arg-type]


@pytest.mark.slow  # training
@pytest.mark.parametrize("style", ["vilbert_world", "lxmert"])
def test_pretrainer_runs_two_stream(style: str, tmp_path: Path) -> None:
    """A few steps of the real trainer from configs/vilbert_world.yaml, shrunk; and an
    LXMERT-style variant fed 4-d boxes by the data pipeline."""
    world = make_dataset(tmp_path / "world", n_images=10, val_images=2)
    overrides = [
        f"data.world={world}", "data.eval_split=val", "data.token_budget=60",
        "data.bucket_size=8", "model.hidden_size=32", "model.num_heads=2",
        "model.intermediate_size=64", "model.image_hidden_size=16",
        "model.image_num_heads=2", "model.image_intermediate_size=32",
        f"train.out={tmp_path / 'run'}", "train.steps=3", "train.warmup_steps=1",
        "train.precision=fp32", "train.log_every=1", "train.save_every=3",
        "train.tensorboard=false", "train.progress=false",
    ]
    if style == "lxmert":
        overrides += ["model.image_hidden_size=0", "model.image_num_heads=0",
                      "model.num_image_layers=3", "model.cross_attention=shared",
                      "model.cross_block=lxmert", "model.pooled=text",
                      "model.region_embed=lxmert", "model.loc_dim=4"]
    cfg = load_config(PretrainConfig, CONFIGS / "vilbert_world.yaml", overrides)
    assert cfg.model.arch == "two_stream"
    trainer = build_pretraining(cfg)
    metrics = trainer.run()
    assert trainer.step == 3 and isinstance(trainer.model.encoder, TwoStreamModel)
    assert {"eval/mlm_acc", "eval/itm_acc", "eval/loss/mrfr"} <= metrics.keys()
    assert all(np.isfinite(v) for v in metrics.values())
    assert (tmp_path / "run" / "checkpoints" / "step_00000003" / "model.safetensors").is_file()
