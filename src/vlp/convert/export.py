"""Export a vlp model to a Hugging Face directory: the import, run backwards.

There is one mapping between vlp's weights and each Hugging Face family's, and it is the
import's (:data:`vlp.convert.CONVERTERS`). Export runs that converter on a *traced*
checkpoint: the Hugging Face model of the wanted config, built on the meta device, with
every element of every weight holding its own index. The import's output then says,
element by element, where each vlp weight comes from, and export writes each vlp value
back to that place. What the import reads twice (VisualBERT's LayerNorm shared by text and
regions, LXMERT's visual-head transform) must agree, and the directory written is read
back through the import before it is kept, so an export always imports to the same model.

``transformers`` is needed to build the target's config and weight names.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from vlp.convert.common import HFCheckpoint, Shape
from vlp.errors import VlpError
from vlp.fileio import atomic_path, claim_output
from vlp.models.config import ModelConfig

# the ModelConfig fields that decide what a family's model computes, compared between the
# model exported and the one its config.json describes
_TEXT = ("arch", "hidden_size", "num_layers", "num_heads", "intermediate_size",
         "max_positions", "type_vocab_size", "layer_norm_eps", "vocab_size", "pad_id",
         "norm_first", "modality_embed")
FIELDS: dict[str, tuple[str, ...]] = {
    "bert": _TEXT,
    "visual_bert": (*_TEXT, "visual", "pooler", "region_feature_dim", "region_embed"),
    "lxmert": (*_TEXT, "visual", "pooler", "pooled", "region_feature_dim", "region_embed",
               "loc_dim", "num_image_layers", "num_cross_layers", "image_hidden_size",
               "image_num_heads", "image_intermediate_size", "cross_attention",
               "cross_block"),
    "vilt": (*_TEXT, "visual", "pooler", "image_size", "patch_size", "num_channels"),
}
PREPROCESSOR = "preprocessor_config.json"  # the image processor's settings (ViLT)
# the names of a text encoder's weights: what a BERT export takes of a single-stream model
_TEXT_WEIGHTS = ("text_embed.", "encoder.layers.", "pooler.")


@dataclass
class Exported:
    """What :func:`export_hf` wrote.

    Attributes:
        out: the Hugging Face directory.
        family: its ``model_type``.
        architecture: the ``transformers`` class it is written for.
        fresh: Hugging Face weights vlp has no value for (``transformers`` initialises
            them on loading), shortened to their modules.
        left: the vlp heads (objective or task names) with no place in the family.
        overruled: vlp head weights the family shares with another head, whose value was
            written instead (LXMERT's visual heads share one transform; vlp's have one
            each), shortened likewise.
    """

    out: Path
    family: str
    architecture: str
    fresh: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    overruled: list[str] = field(default_factory=list)


def hf_config(cfg: ModelConfig, family: str, heads: Sequence[str]) -> dict[str, Any]:
    """The ``config.json`` settings of ``family`` for the model ``cfg`` with the objective
    heads ``heads`` (LXMERT's config says which pre-training heads it has)."""
    text = {"vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
            "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
            "intermediate_size": cfg.intermediate_size, "hidden_act": "gelu",
            "hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.dropout,
            "max_position_embeddings": cfg.max_positions,
            "type_vocab_size": cfg.type_vocab_size,
            "initializer_range": cfg.initializer_range, "layer_norm_eps": cfg.layer_norm_eps,
            "pad_token_id": cfg.pad_id, "tie_word_embeddings": True}
    if family == "bert":
        return {**text, "position_embedding_type": "absolute"}
    if family == "visual_bert":
        return {**text, "visual_embedding_dim": cfg.region_feature_dim,
                "bypass_transformer": False}
    if family == "vilt":
        return {**text, "image_size": cfg.image_size, "patch_size": cfg.patch_size,
                "num_channels": cfg.num_channels, "modality_type_vocab_size": 2,
                "max_image_length": -1, "num_images": -1}
    x = cfg.num_cross_layers
    obj, feat = bool({"mrc", "mrc_kl"} & set(heads)), "mrfr" in heads
    return {**{k: v for k, v in text.items() if k != "num_hidden_layers"},
            "l_layers": cfg.num_layers - x, "x_layers": x, "r_layers": cfg.num_image_layers - x,
            "visual_feat_dim": cfg.region_feature_dim, "visual_pos_dim": 4,
            "num_object_labels": cfg.num_region_classes or 1, "task_mask_lm": "mlm" in heads,
            "task_matched": "itm" in heads, "task_obj_predict": obj or feat, "task_qa": False,
            "visual_obj_loss": obj, "visual_attr_loss": False, "visual_feat_loss": feat}


def vilt_processor(cfg: ModelConfig) -> dict[str, Any]:
    """A ``ViltImageProcessor``'s ``preprocessor_config.json`` for the patch model ``cfg``:
    its pixel normalisation (ImageNet's where the config leaves it empty), the shorter
    side resized to ``image_size`` and padded to whole patches."""
    from vlp.layers.backbones import Backbone

    imagenet = Backbone()  # the base class holds ImageNet's values
    return {"image_processor_type": "ViltImageProcessor", "do_resize": True,
            "size": {"shortest_edge": cfg.image_size}, "size_divisor": cfg.patch_size,
            "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255,
            "do_normalize": True,
            "image_mean": [float(x) for x in cfg.pixel_mean or imagenet.pixel_mean],
            "image_std": [float(x) for x in cfg.pixel_std or imagenet.pixel_std],
            "do_pad": True}


def family_of(cfg: ModelConfig) -> str:
    """The Hugging Face family a vlp model exports to by default."""
    if cfg.arch == "two_stream":
        return "lxmert"
    if cfg.visual == "patches":
        return "vilt"
    if cfg.visual == "regions":
        return "visual_bert"
    raise VlpError(f"a {cfg.visual} model has no Hugging Face family; export its text side "
                   "with --family bert")


# the transformers class of each family: (encoder only, with its pre-training heads)
_CLASSES = {"bert": ("BertModel", "BertForPreTraining"),
            "visual_bert": ("VisualBertModel", "VisualBertForPreTraining"),
            "lxmert": ("LxmertModel", "LxmertForPreTraining"),
            "vilt": ("ViltModel", "ViltForMaskedLM")}


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise VlpError("exporting to Hugging Face needs transformers "
                       "(pip install 'transformers>=5')") from None
    return transformers


@dataclass
class _Target:
    """The Hugging Face model a vlp model is written as."""

    config: dict[str, Any]  # its full config.json
    arch: str  # its transformers class
    shapes: dict[str, Shape]  # its state dict: weight name → shape
    parameters: set[str]  # its parameters, a tied one under one name only


def _target(cfg: ModelConfig, family: str, heads: Sequence[str]) -> _Target:
    transformers = _transformers()
    pretraining = "mlm" in heads or (family == "lxmert" and bool(
        {"itm", "mrfr", "mrc", "mrc_kl"} & set(heads)))
    arch = _CLASSES[family][pretraining]
    config = transformers.AutoConfig.for_model(family, **hf_config(cfg, family, heads))
    config.architectures = [arch]
    with torch.device("meta"):
        model = getattr(transformers, arch)(config)
    return _Target(config.to_dict(), arch,
                   {k: tuple(v.shape) for k, v in model.state_dict().items()},
                   {name for name, _ in model.named_parameters()})


class _Traced(HFCheckpoint):
    """A checkpoint whose weights hold their own element indices, returned as they are
    (an ordinary checkpoint returns float32)."""

    def take(self, key: str, shape: Sequence[int] | None = None) -> Tensor:
        super().take(key, shape)  # its checks, and its record of what was used
        return self.state[key]


def _trace(config: dict[str, Any], shapes: dict[str, Shape], family: str
           ) -> tuple[Any, dict[str, tuple[int, int]]]:
    """Run the family's import on indices: (the Imported of index tensors, HF key →
    (offset, size) of its elements)."""
    from vlp.convert import CONVERTERS

    spans: dict[str, tuple[int, int]] = {}
    state: dict[str, Tensor] = {}
    offset = 0
    for key, shape in shapes.items():
        size = int(torch.Size(shape).numel())
        spans[key] = (offset, size)
        state[key] = torch.arange(offset, offset + size, dtype=torch.int64).view(shape)
        offset += size
    traced = _Traced(Path("<export>"), config, state, Path("<export>/model.safetensors"))
    return CONVERTERS[family](traced), spans


def _modules(names: Sequence[str]) -> list[str]:
    """Weight names shortened to their modules (``a.b.weight`` → ``a.b.*``), in order."""
    return list(dict.fromkeys(n.rpartition(".")[0] + ".*" if "." in n else n for n in names))


def _check_config(cfg: ModelConfig, traced_cfg: ModelConfig, family: str) -> None:
    for name in FIELDS[family]:
        ours, theirs = getattr(cfg, name), getattr(traced_cfg, name)
        if ours != theirs:
            raise VlpError(f"model.{name}: {ours!r}, but a Hugging Face {family} model has "
                           f"{theirs!r}; this model cannot be exported as {family}"
                           + ("" if family == "bert" or cfg.arch == "two_stream"
                              else " (its text side can: --family bert)"))


def _invert(values: dict[str, Tensor], traced: dict[str, Tensor], total: int
            ) -> tuple[Tensor, Tensor, list[str]]:
    """Scatter each vlp value to the HF elements its trace names: (flat HF values, which
    are set, the vlp weights overruled: those that would set an element another weight set
    first to a different value — the first one's value stands)."""
    flat = torch.zeros(total, dtype=torch.float32)
    seen = torch.zeros(total, dtype=torch.bool)
    overruled: list[str] = []
    for name, index in traced.items():
        where = index.reshape(-1)
        value = values[name].detach().to(torch.float32).reshape(-1)
        again = seen[where]
        if again.any() and not torch.equal(flat[where[again]], value[again]):
            overruled.append(name)
            where, value = where[~again], value[~again]
        flat[where] = value
        seen[where] = True
    return flat, seen, overruled


@dataclass
class _Written:
    """A vlp model as a Hugging Face state dict, and what did not carry over."""

    target: _Target
    state: dict[str, Tensor]  # HF name → value
    fresh: list[str]  # HF parameters vlp has no value for
    left: list[str]  # vlp weights (heads only) the family has no place for
    overruled: list[str]  # vlp head weights another head's value stands in for


def _hf_state(cfg: ModelConfig, values: dict[str, Tensor], family: str) -> _Written:
    heads = sorted({k.split(".")[1] for k in values if k.startswith("heads.")})
    target = _target(cfg, family, heads)
    imported, spans = _trace(target.config, target.shapes, family)
    _check_config(cfg, imported.config, family)
    if family == "bert":  # the text side, and every head (only MLM's has a place)
        values = {k: v for k, v in values.items()
                  if k.startswith(_TEXT_WEIGHTS) or k.startswith("heads.")}
        if cfg.pooler != "cls":  # BERT pools [CLS]: this pooler's weights would mislead
            values = {k: v for k, v in values.items() if not k.startswith("pooler.")}
    placed = {k: v for k, v in imported.tensors().items() if k in values}
    for name, index in placed.items():
        if tuple(index.shape) != tuple(values[name].shape):
            raise VlpError(f"{name}: shape {tuple(values[name].shape)}, but the Hugging Face "
                           f"{family} model has {tuple(index.shape)} there")
    left = [k for k in values if k not in placed and not _tied_decoder(k, values)]
    stray = [k for k in left if not k.startswith("heads.")]
    if stray:
        raise VlpError(f"{stray[0]}: a weight a Hugging Face {family} model has no place for "
                       f"({len(stray)} such); this model cannot be exported as {family}")
    flat, seen, overruled = _invert(values, placed, sum(n for _, n in spans.values()))
    shared = [k for k in overruled if not k.startswith("heads.")]
    if shared:
        raise VlpError(f"{shared[0]}: differs from the weight Hugging Face {family} shares it "
                       "with; this model cannot be exported as it is")
    state, fresh = {}, []
    for key, (start, size) in spans.items():
        part = seen[start:start + size]
        if part.all():
            state[key] = flat[start:start + size].view(target.shapes[key]).clone()
        elif part.any():
            raise VlpError(f"{key}: the import sets only part of it (a bug in vlp's "
                           f"{family} converter)")
        elif key in target.parameters:
            fresh.append(key)
    return _Written(target, state, fresh, left, overruled)


def _tied_decoder(name: str, values: dict[str, Tensor]) -> bool:
    """The MLM decoder's weight, when it is the word embedding (tied, as in every family)."""
    return name == "heads.mlm.head.decoder.weight" and torch.equal(
        values[name], values.get("text_embed.word.weight", torch.empty(0)))


def export_hf(src: str | Path, out: str | Path, family: str | None = None,
              overwrite: bool = False) -> Exported:
    """``vlp export SRC OUT --format hf``: a Hugging Face directory for the model at
    ``src`` (a run, a checkpoint or a vlp import).

    Args:
        src: what :func:`vlp.convert.load_imported` reads.
        out: the directory to write (``config.json``, ``model.safetensors``, the
            vocabulary as ``vocab.txt`` with a ``tokenizer_config.json``, and for ViLT the
            pixel normalisation in ``preprocessor_config.json``).
        family: ``bert`` (the text side), ``visual_bert``, ``lxmert`` or ``vilt``; None —
            the model's own (:func:`family_of`).
        overwrite: replace an existing ``out``.

    Raises:
        VlpError: the model does not fit the family, naming the first field or weight
            that does not.
    """
    from vlp.convert import convert_hf, load_imported

    out = Path(out)
    claim_output(out, overwrite=overwrite, inputs=[src])
    imported = load_imported(src)
    cfg = imported.config
    if imported.text_only:
        family = family or "bert"
    family = family or family_of(cfg)
    if family not in FIELDS:
        raise VlpError(f"--family: expected one of {', '.join(FIELDS)}, found {family!r}")
    values = imported.tensors()
    written = _hf_state(cfg, values, family)
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "config.json").write_text(json.dumps(written.target.config, indent=2) + "\n",
                                         encoding="utf-8")
        save_file({k: v.contiguous() for k, v in written.state.items()},
                  str(tmp / "model.safetensors"),
                  metadata={"format": "pt"})  # transformers reads only "pt" safetensors
        processor = vilt_processor(cfg) if family == "vilt" else None
        if processor is not None:  # how pixels are normalised is the processor's part
            (tmp / PREPROCESSOR).write_text(json.dumps(processor, indent=2) + "\n",
                                            encoding="utf-8")
        if imported.vocab is not None:
            shutil.copyfile(imported.vocab, tmp / "vocab.txt")
            tokenizer = {"tokenizer_class": "BertTokenizer", "do_lower_case": True,
                         "model_max_length": cfg.max_positions}
            (tmp / "tokenizer_config.json").write_text(json.dumps(tokenizer, indent=2) + "\n",
                                                       encoding="utf-8")
        back = convert_hf(tmp)
        _check_round_trip(back, values, skip=written.overruled)
        if processor is not None and (back.config.pixel_mean, back.config.pixel_std) != (
                processor["image_mean"], processor["image_std"]):
            raise VlpError(f"{tmp / PREPROCESSOR}: does not import back to the model's pixel "
                           "normalisation (a bug in vlp's export)")
    left = list(dict.fromkeys(k.split(".")[1] for k in written.left))
    return Exported(out, family, written.target.arch, _modules(written.fresh), left,
                    _modules(written.overruled))


def _check_round_trip(back: Any, values: dict[str, Tensor], skip: Sequence[str]) -> None:
    """What was written imports to the very values exported (before it is kept)."""
    for name, value in back.tensors().items():
        if name in values and name not in skip and not torch.equal(
                value, values[name].detach().float()):
            raise VlpError(f"{name}: the export does not import back to the same value "
                           "(a bug in vlp's export)")


__all__ = ["FIELDS", "Exported", "export_hf", "family_of", "hf_config"]
