"""The model config: one dataclass for every architecture, one default per field."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from vlp.config import check, check_fields, limits, ranged

# model fields that change no weight: a run started from another model (train.init) may
# choose them, as Hugging Face's from_pretrained takes them as overrides, and a resumed run
# may change them
ADJUSTABLE_FIELDS = ("dropout",)


@dataclass
class ModelConfig:
    """Architecture hyper-parameters.

    Fields left at 0 (vocabulary size, region feature size, region classes) are
    filled from the tokenizer and the feature store when the model is built.

    Two-stream fields (``arch: two_stream``; single-stream models ignore them). The text
    stream has ``num_layers`` self-attention layers and the image stream
    ``num_image_layers``; the last ``num_cross_layers`` of each follow a cross-attention
    exchange between the streams, the others run on each stream alone before it.
    ViLBERT (base): ``num_layers 12, num_image_layers 6, num_cross_layers 6`` (6 plain
    BERT layers, then 6 co-attention blocks). LXMERT: ``num_layers 9+5, num_image_layers
    5+5, num_cross_layers 5`` (L=9, R=5, X=5).

    Every instance is checked when it is made (each field's range, heads that divide their
    width, a two-stream layout that can be built): a bad value raises
    :class:`vlp.config.FieldError` naming ``model.<field>``.

    Attributes:
        preset: the named preset (:mod:`vlp.models.presets`) these values started from. In
            YAML its values are the defaults of the fields not given beside it
            (:meth:`with_defaults`); in code use :func:`vlp.models.presets.preset_config`.
            "" — none: the defaults below.
        initializer_range: std of the normal initialisation of every weight. BERT's 0.02
            suits wide models and checkpoints; a 256-wide model trained from scratch
            grounds far sooner with 0.05 and ``dropout: 0`` (the world configs'
            setting; see :func:`vlp.models.single_stream.init_bert_weights`).
        pooler: how the pair is pooled for ITM and task heads. "cls" — the first token
            through dense + tanh (BERT, UNITER); "mean" — the mean of all real tokens;
            "product" (single-stream) — mean text ⊙ mean image, each through dense + tanh,
            a bilinear text-image term from the first step. Two-stream models pool the
            text stream with "cls" or "mean" and combine the streams by ``pooled``.
        image_hidden_size: image-stream width; 0 = ``hidden_size``.
        image_num_heads: image-stream attention heads; 0 = ``num_heads``.
        image_intermediate_size: image-stream MLP width; 0 = ``intermediate_size``.
        num_image_layers: image-stream self-attention layers in all (incl. cross blocks).
        num_cross_layers: cross-attention blocks (ViLBERT's K co-attention, LXMERT's X).
        cross_attention: "separate" — each direction has its own cross-attention
            (ViLBERT); "shared" — one module serves both directions (LXMERT; needs equal
            widths and heads).
        cross_block: "vilbert" — cross-attention then its own MLP (Co-TRM), then a
            self-attention layer; "lxmert" — cross-attention, then self-attention, then
            the MLP (no MLP between them).
        pooled: pair representation for ITM and task heads. "product" — pooled text ⊙
            pooled image (ViLBERT's alignment head input); "text" — pooled first text
            token alone (LXMERT).
        region_embed: "uniter" — ``LN(LN(FC(feat)) + LN(FC(loc)) + type)``; "visualbert"
            — feature only, with its own type and position embeddings; "lxmert" —
            ``(LN(FC(feat)) + LN(FC(loc))) / 2``, no type embedding.
        loc_dim: region location features: 7 (UNITER), 5 (ViLBERT), 4 (LXMERT: the
            normalised corners).
        visual: what the image arrives as: "regions" (detector features), "patches"
            (pixels cut into ``patch_size`` squares, ViLT) or "grid" (pixels through a CNN
            backbone, a 1×1 conv and a 2×2 max-pool into grid tokens, SOHO); pixel models
            are single-stream.
        image_size: pixels — the image side the pipeline resizes to (patches: the size the
            position embeddings are laid out for; other sizes get them resized).
        patch_size: patches — side of a square patch, in pixels.
        num_channels: pixels — image channels.
        pixel_mean: pixels — per-channel mean subtracted from pixels in [0, 1]; [] — the
            backbone's own (grid: ImageNet's, or EfficientNet-lite's 127/255), or ImageNet's
            (patches; imported ViLT models set 0.5). A run records the values it used.
        pixel_std: pixels — per-channel standard deviation pixels are divided by; [] — as
            ``pixel_mean``.
        backbone: grid — the CNN (:mod:`vlp.layers.backbones`): "convnet" (a small plain
            CNN trained from scratch), "efficientnet_lite0", "resnet" (a Hugging Face
            ``ResNetModel`` directory in ``backbone_weights``).
        backbone_weights: grid — where the backbone's pretrained weights are: a path, or
            "" for the backbone's packaged weights (EfficientNet-lite0) or none.
        vd_size: grid — entries of the visual dictionary (SOHO: 2048); 0 — none.
        vd_momentum: grid — moving-average momentum γ of the dictionary's update.
        norm_first: LayerNorm before attention and MLP, and a final LayerNorm over the
            sequence (ViT / ViLT), instead of after them (BERT).
        modality_embed: add a learned modality embedding (row 0 text, row 1 image) to each
            token after its embedder's LayerNorm (ViLT's ``token_type_embeddings``).
    """

    preset: str = ""
    arch: str = "single_stream"
    hidden_size: int = ranged(256, ge=1)
    num_layers: int = ranged(4, ge=1)
    num_heads: int = ranged(4, ge=1)
    intermediate_size: int = ranged(1024, ge=1)
    dropout: float = ranged(0.1, ge=0, lt=1)
    max_positions: int = ranged(512, ge=1)
    type_vocab_size: int = ranged(2, ge=1)
    layer_norm_eps: float = ranged(1e-12, gt=0, lt=1)
    initializer_range: float = ranged(0.02, gt=0, le=10)
    pooler: Literal["cls", "mean", "product"] = "cls"
    vocab_size: int = ranged(0, ge=0)
    pad_id: int = ranged(0, ge=0)
    visual: Literal["regions", "patches", "grid"] = "regions"
    image_size: int = ranged(384, ge=1)
    patch_size: int = ranged(32, ge=1)
    num_channels: int = ranged(3, ge=1)
    pixel_mean: list[float] = field(default_factory=list)
    pixel_std: list[float] = field(default_factory=list, metadata=limits(gt=0))
    backbone: str = "convnet"
    backbone_weights: str = ""
    vd_size: int = ranged(2048, ge=0)
    vd_momentum: float = ranged(0.99, ge=0, lt=1)
    norm_first: bool = False
    modality_embed: bool = False
    region_feature_dim: int = ranged(0, ge=0)
    num_region_classes: int = ranged(0, ge=0)
    loc_dim: Literal[4, 5, 7] = 7
    # how regions are embedded: UNITER (feature + location), VisualBERT (feature only,
    # with its own type and position embeddings) or LXMERT (mean of feature and location)
    region_embed: Literal["uniter", "visualbert", "lxmert"] = "uniter"
    image_hidden_size: int = ranged(0, ge=0)
    image_num_heads: int = ranged(0, ge=0)
    image_intermediate_size: int = ranged(0, ge=0)
    num_image_layers: int = ranged(0, ge=0)
    num_cross_layers: int = ranged(0, ge=0)
    cross_attention: Literal["separate", "shared"] = "separate"
    cross_block: Literal["vilbert", "lxmert"] = "vilbert"
    pooled: Literal["product", "text"] = "product"

    def __post_init__(self) -> None:
        check_fields(self, "model")
        self._check_arch()
        self._check_preset()
        check(self.hidden_size % self.num_heads == 0, "model.num_heads",
              f"{self.num_heads} heads do not divide model.hidden_size {self.hidden_size}")
        check(self.vocab_size == 0 or self.pad_id < self.vocab_size, "model.pad_id",
              f"{self.pad_id} is not below model.vocab_size {self.vocab_size}")
        check(self.visual != "patches" or self.patch_size <= self.image_size, "model.patch_size",
              f"{self.patch_size} is larger than model.image_size {self.image_size}")
        for name in ("pixel_mean", "pixel_std"):
            check(len(getattr(self, name)) in (0, self.num_channels), f"model.{name}",
                  f"{len(getattr(self, name))} values for model.num_channels "
                  f"{self.num_channels} channels (or [] for the backbone's own)")
        heads = self.image_num_heads or self.num_heads
        if self.image_hidden_size or self.image_num_heads:
            check(self.image_width % heads == 0, "model.image_num_heads",
                  f"{heads} heads do not divide the image width {self.image_width} "
                  "(model.image_hidden_size, or model.hidden_size when it is 0)")
        if self.arch == "two_stream":
            self._check_two_stream(heads)
        if self.visual == "grid":
            self._check_grid()

    def _check_grid(self) -> None:
        """A grid model names a registered backbone (imported here: layers sit below)."""
        from vlp.layers.backbones import BACKBONES

        check(self.backbone in BACKBONES, "model.backbone", f"unknown backbone "
              f"'{self.backbone}' (known: {', '.join(sorted(BACKBONES))})")

    def _check_two_stream(self, heads: int) -> None:
        """A two-stream layout that can be built (each rule names its field)."""
        k = self.num_cross_layers
        check(self.visual == "regions" and not self.norm_first and not self.modality_embed,
              "model.arch", "two_stream runs on detector regions with post-LayerNorm layers "
              "(visual: regions, norm_first: false, modality_embed: false)")
        check(k >= 1, "model.num_cross_layers", "a two-stream model needs at least 1 "
              f"cross-attention block, got {k}")
        for name in ("num_layers", "num_image_layers"):
            check(getattr(self, name) >= k, f"model.{name}", f"{getattr(self, name)} layers "
                  f"in all, but each of the {k} cross blocks (model.num_cross_layers) holds one")
        check(self.cross_attention != "shared"
              or (self.image_width, heads) == (self.hidden_size, self.num_heads),
              "model.cross_attention", "'shared' needs the image stream as wide as the text "
              "stream, with as many heads (image_hidden_size, image_num_heads)")
        check(self.region_embed in ("uniter", "lxmert"), "model.region_embed",
              "a two-stream model embeds regions as 'uniter' or 'lxmert', not "
              f"{self.region_embed!r}")

    def _check_arch(self) -> None:
        """The architecture is registered (imported here: the registry imports this file)."""
        from vlp.models import MODELS

        check(self.arch in MODELS, "model.arch", f"unknown architecture '{self.arch}' "
              f"(known: {', '.join(sorted(MODELS))})")

    def _check_preset(self) -> None:
        """The preset, when named, is registered (imported here: presets import this file)."""
        from vlp.models.presets import PRESETS

        check(not self.preset or self.preset in PRESETS, "model.preset", f"unknown preset "
              f"'{self.preset}' (known: {', '.join(sorted(PRESETS))})")

    def check_given(self, given: set[str]) -> None:
        """Remember which fields the config set itself (``vlp.config.from_dict`` calls it):
        a run started from another model (``train.init``) takes that model's section, except
        for what the user chose here (:func:`vlp.train.build.start`). Not a field: it is
        neither written to ``config.yaml`` nor kept by ``dataclasses.replace``."""
        object.__setattr__(self, "given", frozenset(given))

    @classmethod
    def with_defaults(cls, given: dict[str, Any]) -> dict[str, Any]:
        """The fields given in a config file, completed by the named preset's values.

        Called by :func:`vlp.config.from_dict` before the config is built: with
        ``preset: NAME`` the preset's values stand for every field not given.

        Raises:
            FieldError: ``model.preset`` naming an unknown preset.
        """
        if not given.get("preset"):
            return given
        from vlp.models.presets import preset_config

        return {**dataclasses.asdict(preset_config(str(given["preset"]))), **given}

    @property
    def image_width(self) -> int:
        """Width of the image states a model outputs (``VLOutput.image``)."""
        return self.image_hidden_size or self.hidden_size
