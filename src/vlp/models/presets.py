"""Named model presets: the published sizes of each architecture, as timm registers models.

A preset is a builder ``name(**overrides) -> ModelConfig`` registered under its name;
fields given as overrides replace the preset's values. In code::

    cfg = preset_config("uniter_base", num_layers=2)   # or vlp.models.create_model(...)

In YAML, ``model.preset: uniter_base`` makes the preset's values the defaults of the
``model`` section, and the fields given beside it override them.

Presets carry the published data-side sizes (BERT's 30522-token uncased vocabulary, 2048-d
Faster R-CNN region features, Visual Genome's 1600 object classes) so that a preset builds
as it is; training through vlp replaces them with those of the tokenizer and feature store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from vlp.config import FieldError
from vlp.models.config import ModelConfig

F = TypeVar("F", bound=Callable[..., ModelConfig])

PRESETS: dict[str, Callable[..., ModelConfig]] = {}

# BERT-base and BERT-large (Devlin et al. 2019, §3: "L=12, H=768, A=12, Total
# Parameters=110M" and "L=24, H=1024, A=16, Total Parameters=340M"; the MLP is 4H wide),
# with the uncased WordPiece vocabulary
_BERT_BASE: dict[str, Any] = {"hidden_size": 768, "num_layers": 12, "num_heads": 12,
                              "intermediate_size": 3072, "vocab_size": 30522,
                              "max_positions": 512, "initializer_range": 0.02, "dropout": 0.1}
_BERT_LARGE: dict[str, Any] = {**_BERT_BASE, "hidden_size": 1024, "num_layers": 24,
                               "num_heads": 16, "intermediate_size": 4096}
# bottom-up attention regions (Anderson et al. 2018): 2048-d features of a Faster R-CNN
# trained on Visual Genome's 1600 object classes (+ background in UNITER's and ViLBERT's
# soft labels)
_BUTD = {"region_feature_dim": 2048, "num_region_classes": 1601}


def register_preset(fn: F) -> F:
    """Register ``fn`` under its own name in :data:`PRESETS` (a decorator)."""
    PRESETS[fn.__name__] = fn
    return fn


def preset_config(name: str, **overrides: Any) -> ModelConfig:
    """The config of preset ``name``, with ``overrides`` replacing its fields.

    Raises:
        FieldError: ``model.preset`` for an unknown name (listing the known ones), or the
            field of an override that is unknown or out of range.
    """
    if name not in PRESETS:
        raise FieldError("model.preset", f"unknown preset '{name}' "
                         f"(known: {', '.join(sorted(PRESETS))})")
    return PRESETS[name](**overrides)


def _config(name: str, fields: dict[str, Any], overrides: dict[str, Any]) -> ModelConfig:
    """``ModelConfig(**fields)`` with ``overrides`` replacing fields, recording ``name``."""
    known = ModelConfig.__dataclass_fields__
    for key in overrides:
        if key not in known or key == "preset":
            raise FieldError(f"model.{key}", f"not a field that preset '{name}' can "
                             f"override (known: {', '.join(sorted(known))})")
    return ModelConfig(**{**fields, **overrides, "preset": name})


@register_preset
def uniter_base(**overrides: Any) -> ModelConfig:
    """UNITER-base (Chen et al. 2020, §4.1: "L=12, H=768, A=12, Total Parameters=86M", the
    transformer's): BERT-base over text and regions, UNITER's region embedding on 7-d
    locations, [CLS] pooling."""
    return _config("uniter_base", {**_BERT_BASE, **_BUTD, "arch": "single_stream",
                                   "loc_dim": 7, "region_embed": "uniter", "pooler": "cls"},
                   overrides)


@register_preset
def uniter_large(**overrides: Any) -> ModelConfig:
    """UNITER-large (Chen et al. 2020, §4.1: "L=24, H=1024, A=16, Total Parameters=303M",
    the transformer's): BERT-large over text and regions."""
    return _config("uniter_large", {**_BERT_LARGE, **_BUTD, "arch": "single_stream",
                                    "loc_dim": 7, "region_embed": "uniter", "pooler": "cls"},
                   overrides)


@register_preset
def vilbert_base(**overrides: Any) -> ModelConfig:
    """ViLBERT (Lu et al. 2019; the released ``bert_base_6layer_6conect.json``): a BERT-base
    text stream of 12 layers, the last 6 after a co-attention exchange; an image stream of
    6 layers, 1024 wide with 8 heads and a 1024-wide MLP, each after an exchange; 5-d
    region locations; ITM on pooled text ⊙ pooled image.

    vlp's co-attention attends at the querying stream's width and heads, where ViLBERT
    projects both directions to ``bi_hidden_size`` 1024 with 8 heads, so the cross-attention
    weights of the text side differ in shape from the released checkpoint's.
    """
    return _config("vilbert_base", {
        **_BERT_BASE, **_BUTD, "arch": "two_stream", "num_image_layers": 6,
        "num_cross_layers": 6, "image_hidden_size": 1024, "image_num_heads": 8,
        "image_intermediate_size": 1024, "cross_attention": "separate",
        "cross_block": "vilbert", "pooled": "product", "pooler": "cls", "loc_dim": 5,
        "region_embed": "uniter"}, overrides)


@register_preset
def lxmert_base(**overrides: Any) -> ModelConfig:
    """LXMERT (Tan & Bansal 2019, §4: N_L, N_X, N_R = 9, 5, 5, hidden 768; as HF's
    ``LxmertConfig`` defaults): 9 language layers, 5 object-relationship layers and 5
    cross-modality layers (one attention module shared by both directions, then
    self-attention, then the MLP); regions as the mean of feature and 4-d box embeddings;
    the pair is the pooled first text token. 1600 object classes (no background)."""
    return _config("lxmert_base", {
        **_BERT_BASE, **_BUTD, "num_region_classes": 1600, "arch": "two_stream",
        "num_layers": 9 + 5, "num_image_layers": 5 + 5, "num_cross_layers": 5,
        "cross_attention": "shared", "cross_block": "lxmert", "pooled": "text",
        "pooler": "cls", "loc_dim": 4, "region_embed": "lxmert"}, overrides)


@register_preset
def visualbert_base(**overrides: Any) -> ModelConfig:
    """VisualBERT (Li et al. 2019; HF ``uclanlp/visualbert-vqa-coco-pre``): BERT-base
    (110M parameters with its embeddings and pooler) over text and 2048-d region
    features, embedded without locations but with their own type and position
    embeddings; [CLS] pooling."""
    return _config("visualbert_base", {**_BERT_BASE, **_BUTD, "arch": "single_stream",
                                       "region_embed": "visualbert", "pooler": "cls"},
                   overrides)


@register_preset
def vilt_base(**overrides: Any) -> ModelConfig:
    """ViLT-B/32 (Kim et al. 2021: 87.4M parameters; HF
    ``dandelin/vilt-b32-mlm``): ViT-B/32 — 12 pre-LayerNorm layers, 768 wide, 12 heads —
    over text and 32-pixel patches of 384-pixel images, with modality type embeddings;
    40 text positions; [CLS] pooling."""
    return _config("vilt_base", {
        **_BERT_BASE, "max_positions": 40, "arch": "single_stream", "visual": "patches",
        "image_size": 384, "patch_size": 32, "num_channels": 3, "norm_first": True,
        "modality_embed": True, "pooler": "cls", "pixel_mean": [0.5] * 3,
        "pixel_std": [0.5] * 3}, overrides)


__all__ = ["PRESETS", "preset_config", "register_preset"]
