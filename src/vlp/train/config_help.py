"""Every config field with its type, default and meaning (``vlp config show``), and
commented starting configs (``vlp config new``)."""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Iterator
from typing import Any

from vlp.config import to_dict
from vlp.models.config import ModelConfig
from vlp.tasks.config import TaskConfig
from vlp.train.config import DataConfig, ObjectivesConfig, RunConfig, TrainConfig

# one line for each field the classes' docstrings do not give one in their Attributes
FIELD_HELP = {
    "model.arch": "single_stream (UNITER, VisualBERT, ViLT, SOHO) or two_stream "
                  "(ViLBERT, LXMERT); dual-encoder and decoder heads sit on either",
    "model.hidden_size": "transformer width (text stream width for two_stream)",
    "model.num_layers": "transformer layers (text stream layers for two_stream)",
    "model.num_heads": "attention heads; must divide hidden_size",
    "model.intermediate_size": "MLP width inside each layer (BERT: 4 × hidden_size)",
    "model.dropout": "dropout on embeddings, attention weights and layer outputs",
    "model.max_positions": "text positions the position embedding holds",
    "model.type_vocab_size": "token-type (segment) embeddings",
    "model.layer_norm_eps": "LayerNorm epsilon",
    "model.vocab_size": "WordPieces; 0 = from the tokenizer",
    "model.pad_id": "the padding token's id in the vocabulary",
    "model.region_feature_dim": "region feature size; 0 = from the region store",
    "model.num_region_classes": "detector classes (MRC targets); 0 = from the region store",
    "data.world": "a 'vlp world' directory that fills captions, features, vocab, images "
                  "and image_root left empty",
    "data.captions": "caption file: Karpathy, COCO captions, ALBEF/BLIP list or JSONL",
    "data.caption_format": "auto (told apart by content), karpathy, coco, caption_list or "
                           "jsonl",
    "data.split_files": "one caption file per split, {train: a.json, val: b.json}; "
                        "replaces captions",
    "data.features": "region store directory (region models)",
    "data.vocab": "WordPiece vocab.txt (a BERT one works)",
    "data.images": "image list for pixel models: COCO images list, caption list or a folder",
    "data.image_root": "folder the image file names are relative to",
    "data.resize": "square (image_size on both sides) or shorter (ViLT: shorter side "
                   "image_size, longer capped)",
    "data.max_image_size": "cap on the longer side with resize: shorter; 0 = image_size × "
                           "1333 / 800",
    "data.size_divisor": "with resize: shorter, round each side down to a multiple of this "
                         "(ViLT and HF ViltImageProcessor: 32); 0 = pad to whole patches",
    "data.augment": "random resized crops and colour jitter on training batches",
    "data.crop_scale": "[smallest, largest] share of the image area a crop keeps",
    "data.jitter": "brightness, contrast and saturation jitter strength (0: none)",
    "data.flip": "swap: mirror images in pre-training with 'left' ↔ 'right' swapped in "
                 "the text; none",
    "data.image_cache_mb": "MB of decoded images kept in memory per loader worker",
    "data.train_splits": "caption splits trained on",
    "data.eval_split": "the split evaluated (held-out losses, task metrics)",
    "data.eval_pairs": "held-out pairs evaluated in pre-training",
    "data.max_text_len": "tokens kept per text, [CLS] and [SEP] included",
    "data.max_regions": "regions kept per image",
    "data.token_budget": "padded positions per batch (dynamic batching); 0 = batch_size rows",
    "data.batch_size": "rows per batch when token_budget is 0",
    "data.bucket_size": "examples sorted by length together before batching (0: the whole "
                        "epoch — least padding, but captions of one image then often share "
                        "a batch, in-batch negatives for ITC included)",
    "data.num_workers": "DataLoader worker processes (0: the main process)",
    "data.verify_features": "check the region store's sha256 sums when opening it",
    "data.strict": "data warnings become errors",
    "train.out": "the run directory (config, metrics, curves, checkpoints)",
    "train.init_text": "start the text side from BERT: a HF directory, a vlp import or minilm",
    "train.init_vision": "start a patch model's visual side from a HF ViT directory",
    "train.init": "start the whole model from a run, a vlp import or a HF directory",
    "train.seed": "seed of initialisation, batches, masks and negatives",
    "train.steps": "optimizer steps; 0 builds the run without training",
    "train.lr": "peak learning rate (AdamW)",
    "train.weight_decay": "AdamW weight decay (not on biases and LayerNorm)",
    "train.betas": "AdamW betas",
    "train.warmup_steps": "linear warm-up steps, then linear decay to 0",
    "train.grad_accum": "micro-batches per optimizer step",
    "train.grad_clip": "gradient norm clip; 0 = none",
    "train.freeze_backbone_steps": "grid models: steps the CNN backbone stays frozen",
    "train.precision": "bf16 (autocast; fp32 on CPUs without bf16 units), fp16 (CUDA) or fp32",
    "train.compile": "torch.compile each transformer layer (inductor, dynamic shapes)",
    "train.device": "auto, cpu, cuda or cuda:N",
    "train.log_every": "steps between metrics.jsonl rows and progress updates",
    "train.eval_every": "steps between held-out evaluations; 0 = at the end only",
    "train.save_every": "steps between checkpoints; 0 = at the end only",
    "train.keep_checkpoints": "checkpoints kept (the newest)",
    "train.verify_checkpoint": "check the sha256 of every file of the checkpoint resumed from",
    "train.tensorboard": "write TensorBoard event files",
    "train.progress": "progress bars and the start-up summary",
    "objectives.weights": "objective → sampling ratio (mix: sample) or loss weight (mix: sum)",
    "objectives.mix": "sample: one objective per batch (UNITER); sum: all on every batch",
    "objectives.masking": "conditional: mask one modality at a time (UNITER); joint: both",
    "objectives.mask_prob": "share of text tokens / regions masked",
    "objectives.itm_neg_prob": "share of pairs given a foreign image for ITM",
    "objectives.sampling": "pairs (UNITER) or soho (each image with 2 true and 2 foreign "
                           "texts)",
    "objectives.itm_hard_negatives": "ITM's foreign images chosen by ITC similarity (ALBEF)",
}

SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig,
                             "objectives": ObjectivesConfig, "task": TaskConfig}


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One config field: ``section.name``, its type, default and meaning."""

    key: str
    type: str
    default: Any
    meaning: str


def _docstring_entries(cls: type) -> dict[str, str]:
    """``name → first sentence`` of the entries of a class docstring's ``Attributes:``
    (an entry's continuation lines are indented deeper)."""
    doc = inspect.getdoc(cls) or ""
    found: dict[str, str] = {}
    for match in re.finditer(r"^ {4}(\w+): (.+(?:\n {8,}.+)*)", doc, re.M):
        text = " ".join(match.group(2).split())
        found.setdefault(match.group(1), re.split(r"(?<=[.;])\s", text, maxsplit=1)[0])
    return found


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return " | ".join(str(a) for a in typing.get_args(tp))
    return str(tp).replace("typing.", "") if not isinstance(tp, type) else tp.__name__


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def fields_of(section: str) -> Iterator[FieldInfo]:
    """Every field of a config section, in declaration order."""
    cls = SECTIONS[section]
    hints = typing.get_type_hints(cls)
    docs = _docstring_entries(cls)
    for f in dataclasses.fields(cls):
        key = f"{section}.{f.name}"
        meaning = FIELD_HELP.get(key) or docs.get(f.name, "")
        yield FieldInfo(key, _type_name(hints[f.name]), _default(f), meaning)


def show(cfg: RunConfig) -> str:
    """Every field of ``cfg``'s sections: key, type, value (and default where it differs)
    and meaning, one line each."""
    values = to_dict(cfg)
    lines = []
    for section in values:
        for info in fields_of(section):
            value = values[section][info.key.split(".", 1)[1]]
            default = to_dict_value(info.default)
            shown = f"{value!r}" + (f" (default {default!r})" if value != default else "")
            lines.append(f"{info.key:32s} {info.type:24s} {shown:28s} {info.meaning}")
    return "\n".join(lines)


def to_dict_value(value: Any) -> Any:
    """A default as :func:`vlp.config.to_dict` writes values (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


# what `vlp config new FAMILY` starts from: a model preset, its objectives and masking
FAMILIES: dict[str, dict[str, Any]] = {
    "uniter": {"model": {"preset": "uniter_base"},
               "objectives": {"weights": {"mlm": 2.0, "mrfr": 1.0, "mrc_kl": 1.0, "itm": 1.0,
                                          "wra": 1.0}, "mix": "sample",
                              "masking": "conditional"}},
    "vilbert": {"model": {"preset": "vilbert_base"},
                "objectives": {"weights": {"mlm": 1.0, "mrc_kl": 1.0, "itm": 1.0},
                               "mix": "sum", "masking": "joint"}},
    "lxmert": {"model": {"preset": "lxmert_base"},
               "objectives": {"weights": {"mlm": 1.0, "mrfr": 1.0, "mrc": 1.0, "itm": 1.0},
                              "mix": "sum", "masking": "joint"}},
    "visualbert": {"model": {"preset": "visualbert_base"},
                   "objectives": {"weights": {"mlm": 1.0, "itm": 1.0}, "mix": "sum"}},
    "vilt": {"model": {"preset": "vilt_base"},
             "data": {"images": "", "image_root": "", "resize": "shorter",
                      "size_divisor": 32, "augment": True, "flip": "swap"},
             "objectives": {"weights": {"mlm": 1.0, "itm": 1.0, "wra": 1.0}, "mix": "sum"},
             "train": {"init_vision": ""}},
    "soho": {"model": {"preset": "", "visual": "grid", "backbone": "efficientnet_lite0",
                       "image_size": 384, "vd_size": 2048, "vd_momentum": 0.99},
             "data": {"images": "", "image_root": "", "resize": "shorter",
                      "max_image_size": 640},
             "objectives": {"weights": {"mlm": 1.0, "mvm": 1.0, "itm": 1.0}, "mix": "sum",
                            "sampling": "soho"},
             "train": {"freeze_backbone_steps": 2000}},
}


def new_config(family: str) -> str:
    """A commented pre-training YAML for ``family`` (:data:`FAMILIES`): the family's model
    preset and objectives, the data fields a user must fill, the training fields."""
    from vlp.errors import VlpError

    if family not in FAMILIES:
        raise VlpError(f"vlp config new: no family '{family}' (one of "
                       f"{', '.join(sorted(FAMILIES))})")
    chosen = FAMILIES[family]
    data = {"captions": "", "features": "", "vocab": "", **chosen.get("data", {})}
    if "images" in data:
        data.pop("features")
    train = {"out": f"runs/{family}", "steps": 100000, "lr": 1e-4, "warmup_steps": 10000,
             "precision": "bf16", "save_every": 5000, **chosen.get("train", {})}
    sections = {"model": chosen["model"], "data": data, "objectives": chosen["objectives"],
                "train": train}
    lines = [f"# {family} pre-training: fill in the data paths, then",
             "#   vlp pretrain --config THIS.yaml",
             "# every field: vlp config show --config THIS.yaml"]
    for section, values in sections.items():
        lines.append(f"{section}:")
        for name, value in values.items():
            meaning = next((i.meaning for i in fields_of(section) if i.key.endswith(
                f".{name}")), "")
            lines.append(f"  {name}: {_yaml(value)}" + (f"  # {meaning}" if meaning else ""))
    return "\n".join(lines) + "\n"


def _yaml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value or '""'
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    return repr(value)


__all__ = ["FAMILIES", "FIELD_HELP", "FieldInfo", "fields_of", "new_config", "show"]
