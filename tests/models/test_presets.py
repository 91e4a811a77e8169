"""Named presets: each builds at a tiny size, the full sizes count the published parameters
(on the meta device: no memory, no time), YAML's ``model.preset`` fills the fields not
given beside it, and an unknown name is one line."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from conftest import random_batch
from vlp.config import from_dict, load_config, to_dict
from vlp.data.batch import Batch
from vlp.errors import VlpError
from vlp.models import PRESETS, ModelConfig, create_model, preset_config
from vlp.train.config import PretrainConfig

# small enough for a CPU test, sized for conftest's random batches
TINY = {"hidden_size": 16, "num_heads": 2, "intermediate_size": 32, "num_layers": 2,
        "vocab_size": 50, "region_feature_dim": 12, "num_region_classes": 5,
        "max_positions": 32, "image_size": 32, "patch_size": 16}
TWO_STREAM_TINY = {"num_image_layers": 2, "num_cross_layers": 1, "image_hidden_size": 0,
                   "image_num_heads": 0, "image_intermediate_size": 0}


def tiny(name: str) -> dict[str, int]:
    """Overrides that make preset ``name`` tiny (two-stream: image stream as the text)."""
    extra = TWO_STREAM_TINY if PRESETS[name]().arch == "two_stream" else {}
    return {**TINY, **extra}


def count(model: nn.Module, *prefixes: str) -> int:
    """Parameters whose names start with one of ``prefixes`` (all when none given)."""
    return sum(p.numel() for n, p in model.named_parameters()
               if not prefixes or n.startswith(prefixes))


def meta_model(name: str) -> nn.Module:
    """Preset ``name`` at its full size, on the meta device (shapes only)."""
    with torch.device("meta"):
        return create_model(name)


def batch_for(cfg: ModelConfig) -> Batch:
    batch = random_batch(b=2, seed=0, loc_dim=cfg.loc_dim)
    if cfg.visual == "patches":
        g = torch.Generator().manual_seed(0)
        batch.pixel_values = torch.randn(2, 3, cfg.image_size, cfg.image_size, generator=g)
    return batch


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_preset_builds_and_runs_at_a_tiny_size(name: str) -> None:
    cfg = preset_config(name, **tiny(name))
    assert cfg.preset == name and cfg.hidden_size == 16
    assert cfg.arch == PRESETS[name]().arch and cfg.visual == PRESETS[name]().visual
    torch.manual_seed(0)
    out = create_model(name, **tiny(name))(batch_for(cfg))
    assert out.pooled.shape == (2, 16)
    assert bool(torch.isfinite(out.text).all()) and bool(torch.isfinite(out.pooled).all())


def test_published_sizes() -> None:
    """The counts the papers state, within 1 % (they round, and count their own parts)."""
    uniter = meta_model("uniter_base")
    # UNITER: "Total Parameters=86M" (base), 303M (large): the transformer and its pooler
    assert count(uniter, "encoder.", "pooler.") == pytest.approx(86e6, rel=0.01)
    large = meta_model("uniter_large")
    assert count(large, "encoder.", "pooler.") == pytest.approx(303e6, rel=0.01)
    # VisualBERT is BERT-base (110M) plus its region embedding
    visualbert = meta_model("visualbert_base")
    assert count(visualbert, "text_embed.", "encoder.", "pooler.") == pytest.approx(
        110e6, rel=0.01)
    # ViLT-B/32: 87.4M, ViT-B/32's patch embedding and transformer
    vilt = meta_model("vilt_base")
    assert count(vilt, "visual_input.", "encoder.") == pytest.approx(87.4e6, rel=0.01)


def test_two_stream_layouts() -> None:
    """ViLBERT: 12 text layers (6 plain + 6 in exchanges), 6 image layers 1024 wide, all in
    exchanges; LXMERT: 9 language, 5 object, 5 cross layers sharing one attention."""
    vilbert = meta_model("vilbert_base")
    assert len(vilbert.text_encoder.layers) == 6 and len(vilbert.image_encoder.layers) == 0
    assert len(vilbert.blocks) == 6
    assert vilbert.visual_input.embedding.feat_fc.weight.shape == (1024, 2048)
    lxmert = meta_model("lxmert_base")
    assert len(lxmert.text_encoder.layers) == 9 and len(lxmert.image_encoder.layers) == 5
    assert len(lxmert.blocks) == 5 and lxmert.blocks[0].image_cross is None


@pytest.mark.slow  # imports transformers
def test_full_sizes_count_as_the_reference_implementations() -> None:
    """LXMERT, VisualBERT and ViLT hold exactly the parameters of transformers' models."""
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        references = {
            "lxmert_base": transformers.LxmertModel(transformers.LxmertConfig()),
            "visualbert_base": transformers.VisualBertModel(
                transformers.VisualBertConfig(visual_embedding_dim=2048)),
            "vilt_base": transformers.ViltModel(transformers.ViltConfig()),
        }
    for name, reference in references.items():
        assert count(meta_model(name)) == count(reference), name


def test_yaml_preset_values_are_the_defaults_of_the_fields_not_given() -> None:
    data = {"model": {"preset": "vilt_base", "num_layers": 2, "norm_first": False}}
    cfg = from_dict(PretrainConfig, data, "x.yaml").model
    # given beside the preset: kept, even when equal to ModelConfig's own default
    assert cfg.num_layers == 2 and cfg.norm_first is False
    assert cfg == preset_config("vilt_base", num_layers=2, norm_first=False)
    assert cfg.visual == "patches" and cfg.hidden_size == 768
    # a dumped config reads back as it was; replace changes only what it names
    again = from_dict(PretrainConfig, to_dict(from_dict(PretrainConfig, data, "x.yaml")))
    assert again.model == cfg
    assert dataclasses.replace(cfg, hidden_size=384).num_layers == 2


def test_overrides_on_the_command_line_beat_the_preset() -> None:
    cfg = load_config(PretrainConfig, None, ["model.preset=lxmert_base",
                                             "model.num_cross_layers=2"])
    assert cfg.model.num_cross_layers == 2 and cfg.model.num_layers == 14


def test_unknown_preset_is_one_line() -> None:
    with pytest.raises(VlpError) as err:
        preset_config("uniter_huge")
    assert str(err.value) == ("field 'model.preset': unknown preset 'uniter_huge' (known: "
                              "lxmert_base, uniter_base, uniter_large, vilbert_base, "
                              "vilt_base, visualbert_base)")
    with pytest.raises(VlpError, match=r"^x.yaml: field 'model.preset': unknown preset 'u'"):
        from_dict(PretrainConfig, {"model": {"preset": "u"}}, "x.yaml")
    with pytest.raises(VlpError, match=r"^field 'model.preset': unknown preset 'u' \(known"):
        ModelConfig(preset="u")
    with pytest.raises(VlpError, match=r"^field 'model.hidden': not a field"):
        create_model("uniter_base", hidden=3)
