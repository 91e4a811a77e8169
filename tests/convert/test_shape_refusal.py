"""A checkpoint whose config and weights disagree never imports "with success": every
converter refuses a weight of the wrong shape with one line naming the file, the tensor,
the shape found and the shape expected."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from vlp.convert import convert_hf
from vlp.errors import VlpError

SIZES = dict(vocab_size=30, hidden_size=8, num_attention_heads=2, intermediate_size=16,
             max_position_embeddings=16)


def _lxmert() -> nn.Module:
    from transformers import LxmertConfig, LxmertForPreTraining

    return LxmertForPreTraining(LxmertConfig(
        **SIZES, l_layers=1, x_layers=1, r_layers=1, visual_feat_dim=6, visual_pos_dim=4,
        num_object_labels=5, num_attr_labels=3, num_qa_labels=4))


def _visualbert() -> nn.Module:
    from transformers import VisualBertConfig, VisualBertForPreTraining

    return VisualBertForPreTraining(VisualBertConfig(**SIZES, num_hidden_layers=1,
                                                     visual_embedding_dim=6))


def _vilt() -> nn.Module:
    from transformers import ViltConfig, ViltForMaskedLM

    return ViltForMaskedLM(ViltConfig(**SIZES, num_hidden_layers=1, image_size=16,
                                      patch_size=8))


MODELS: dict[str, Callable[[], nn.Module]] = {"lxmert": _lxmert, "visualbert": _visualbert,
                                              "vilt": _vilt}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for name, make in MODELS.items():
        make().save_pretrained(root / name)  # type: ignore[operator]
        out[name] = root / name
    return out


# model → (weight to reshape, its wrong shape, what the line must name)
CASES = {
    "lxmert-cross_attention_key": ("lxmert", "lxmert.encoder.x_layers.0.visual_attention.att"
                                   ".key.weight", (8, 4), "visual_attention.att.key.weight"),
    "lxmert-box_projection": ("lxmert", "lxmert.encoder.visn_fc.box_fc.weight", (8, 5),
                              "box_fc.weight"),
    "lxmert-object_head": ("lxmert", "obj_predict_head.decoder_dict.obj.weight", (4, 8),
                           "heads.mrc"),
    "lxmert-itm_head": ("lxmert", "cls.seq_relationship.weight", (3, 8), "seq_relationship"),
    "visualbert-visual_projection": ("visualbert", "visual_bert.embeddings.visual_projection"
                                     ".weight", (8, 7), "visual_projection.weight"),
    "visualbert-itm_head": ("visualbert", "cls.seq_relationship.weight", (1, 8),
                            "cls.seq_relationship.weight"),
    "visualbert-mlm_bias": ("visualbert", "cls.predictions.bias", (31,), "cls.predictions.bias"),
    "vilt-patch_positions": ("vilt", "vilt.embeddings.position_embeddings", (1, 3, 8),
                             "position_embeddings"),
    "vilt-modality_rows": ("vilt", "vilt.embeddings.token_type_embeddings.weight", (1, 8),
                           "modality.weight"),
    "vilt-patch_projection": ("vilt", "vilt.embeddings.patch_embeddings.projection.weight",
                              (8, 3, 4, 4), "projection.weight"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_wrong_shape_is_refused(case: str, saved: dict[str, Path], tmp_path: Path) -> None:
    model, key, shape, mention = CASES[case]
    src = tmp_path / model
    shutil.copytree(saved[model], src)
    state = load_file(str(src / "model.safetensors"))
    assert key in state, sorted(state)
    state[key] = torch.zeros(shape)
    save_file(state, str(src / "model.safetensors"))
    with pytest.raises(VlpError) as err:
        convert_hf(src)
    line = str(err.value)
    assert "\n" not in line and "model.safetensors" in line, line
    assert mention in line and f"shape {shape}" in line and "expected" in line, line


@pytest.mark.parametrize("model", list(MODELS))
def test_untouched_checkpoints_import(model: str, saved: dict[str, Path]) -> None:
    assert convert_hf(saved[model]).config.hidden_size == 8
