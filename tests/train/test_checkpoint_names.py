"""Checkpoints of runs written before the encoder of a LossModel was named ``encoder``
(its tensors saved as ``model.*``) still load, into the same parameters."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vlp.models import ModelConfig, build_model
from vlp.objectives import LossModel, build_objectives
from vlp.train.checkpoint import load_weights, save_weights


def loss_model(cfg: ModelConfig, seed: int) -> LossModel:
    torch.manual_seed(seed)
    encoder = build_model(cfg)
    return LossModel(encoder, build_objectives(["mlm", "itm"], cfg, encoder))


def test_a_checkpoint_with_model_keys_loads_into_the_encoder(tiny_cfg: ModelConfig,
                                                             tmp_path: Path) -> None:
    saved = loss_model(tiny_cfg, seed=0)
    save_weights(saved, tmp_path / "new.safetensors")
    tensors = load_file(str(tmp_path / "new.safetensors"))
    assert any(k.startswith("encoder.") for k in tensors)
    legacy = {("model." + k[len("encoder."):] if k.startswith("encoder.") else k): v
              for k, v in tensors.items()}
    save_file(legacy, str(tmp_path / "old.safetensors"))
    for name in ("new", "old"):
        fresh = loss_model(tiny_cfg, seed=1)
        load_weights(fresh, tmp_path / f"{name}.safetensors")
        for (key, a), b in zip(saved.state_dict().items(), fresh.state_dict().values(),
                               strict=True):
            assert torch.equal(a, b), (name, key)
