"""A Hugging Face ViT initialises a vlp patch model's visual side (as ViLT starts from ViT):
on image tokens alone the vlp model then computes transformers' ViTModel."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from transformers import ViTConfig, ViTForImageClassification, ViTModel

from conftest import save_reference
from vlp.convert.vit import load_vit_weights, vit_forward
from vlp.errors import VlpError
from vlp.models import ModelConfig, build_model
from vlp.models.single_stream import SingleStreamModel

TOL = 1e-4
CFG = ModelConfig(arch="single_stream", visual="patches", norm_first=True, modality_embed=True,
                  hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                  image_size=32, patch_size=8, vocab_size=50, dropout=0.0)
VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
           image_size=32, patch_size=8, hidden_dropout_prob=0.0,
           attention_probs_dropout_prob=0.0)


def _scale(name: str) -> float:
    return 0.2 if "norm" in name or name.endswith("bias") or "embeddings" in name else 0.05


def _model(cfg: ModelConfig = CFG) -> SingleStreamModel:
    torch.manual_seed(3)
    model = build_model(cfg)
    assert isinstance(model, SingleStreamModel)
    return model.eval()


def _vit_dir(tmp_path: Path, classifier: bool = False) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    config = ViTConfig(**VIT, num_labels=3)  # type: ignore[arg-type, call-arg]
    ref = ViTForImageClassification(config) if classifier else ViTModel(config)
    return ref, save_reference(ref, _scale, tmp_path / "vit")


@pytest.mark.parametrize("classifier", [False, True])
def test_vit_hidden_states_equal_transformers(classifier: bool, tmp_path: Path) -> None:
    ref, path = _vit_dir(tmp_path, classifier)
    model = _model()
    text_before = model.text_embed.word.weight.clone()
    left = load_vit_weights(model, path)
    assert set(left) == {"modality.weight", "pooler.dense.weight", "pooler.dense.bias",
                         *(f"text_embed.{k}" for k in model.text_embed.state_dict())}
    assert torch.equal(model.text_embed.word.weight, text_before)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got = vit_forward(model, x)
        vit = ref.vit if isinstance(ref, ViTForImageClassification) else ref
        want = vit(pixel_values=x).last_hidden_state
    assert got.shape == want.shape == (2, 1 + 16, 32)
    assert (got - want).abs().max().item() <= TOL


@pytest.mark.parametrize(("field", "value", "setting"), [
    ("hidden_size", 48, "model.hidden_size"),
    ("patch_size", 16, "model.patch_size"),
    ("num_layers", 3, "model.num_layers"),
    ("num_heads", 2, "model.num_heads"),
    ("image_size", 64, "model.image_size"),
])
def test_sizes_that_differ_are_refused(field: str, value: int, setting: str,
                                       tmp_path: Path) -> None:
    _, path = _vit_dir(tmp_path)
    model = _model(dataclasses.replace(CFG, **{field: value}))  # type: ignore[arg-type]
    with pytest.raises(VlpError) as err:
        load_vit_weights(model, path)
    message = str(err.value)
    assert "\n" not in message and "config.json" in message and setting in message


def test_only_a_pre_norm_patch_model_takes_vit(tmp_path: Path) -> None:
    _, path = _vit_dir(tmp_path)
    with pytest.raises(VlpError, match="norm_first"):
        load_vit_weights(_model(dataclasses.replace(CFG, norm_first=False)), path)
    regions = dataclasses.replace(CFG, visual="regions", region_feature_dim=8)
    with pytest.raises(VlpError, match="patch model"):
        load_vit_weights(_model(regions), path)


def test_not_a_vit_is_refused(tmp_path: Path) -> None:
    _, path = _vit_dir(tmp_path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "model_type": "deit"}))
    with pytest.raises(VlpError, match="expected 'vit'"):
        load_vit_weights(_model(), path)


def test_pretraining_starts_its_visual_side_from_vit(tmp_path: Path, dataset: Path) -> None:
    """``train.init_vision``: a run's patch model holds the ViT's weights before step 1,
    and its text side is its own."""
    from vlp.config import load_config
    from vlp.train.config import PretrainConfig
    from vlp.train.pretrain import build_pretraining

    ref, path = _vit_dir(tmp_path)
    overrides = [f"model.{k}={v}" for k, v in (
        ("visual", "patches"), ("norm_first", "true"), ("modality_embed", "true"),
        ("hidden_size", 32), ("num_layers", 2), ("num_heads", 4), ("intermediate_size", 64),
        ("image_size", 32), ("patch_size", 8), ("dropout", 0.0))]
    cfg = load_config(PretrainConfig, None, [
        *overrides, f"data.world={dataset}", f"train.init_vision={path}",
        f"train.out={tmp_path / 'run'}", "train.steps=0", "train.progress=false",
        "train.tensorboard=false", "data.max_text_len=16", "model.max_positions=16",
        "objectives.weights={mlm: 1.0, itm: 1.0}"])
    trainer = build_pretraining(cfg)
    assert trainer.cfg.model.pixel_mean == trainer.cfg.model.pixel_std == [0.5] * 3  # ViT's
    encoder = trainer.model.encoder
    assert isinstance(encoder, SingleStreamModel)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got = vit_forward(encoder.eval(), x)
        want = ref(pixel_values=x).last_hidden_state
    assert (got - want).abs().max() <= TOL
