"""ViLT (``ViltModel``, ``ViltForMaskedLM`` and the task classes) → a vlp single-stream model.

ViLT is one pre-LayerNorm (ViT) transformer over BERT-embedded text and ViT-embedded
patches, each plus a modality type embedding, with a final LayerNorm and BERT's pooler on
the first token. That is vlp's single-stream model with ``visual: patches``,
``norm_first`` and ``modality_embed``; the weights map one to one.

One behaviour differs by design: with ``max_image_length`` > 0 Hugging Face keeps a random
subset of the patches on every call. vlp keeps every patch, so the model is deterministic.
With the default (-1) Hugging Face keeps them all too, in a random order that changes
nothing but the order of the image outputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor

from vlp.convert.bert import bert_config
from vlp.convert.common import (
    HFCheckpoint,
    bert_embeddings,
    copy,
    expect,
    replace_config,
)
from vlp.convert.vit import vit_encoder
from vlp.errors import input_error
from vlp.models.config import ModelConfig

if TYPE_CHECKING:
    from vlp.convert import Imported

# buffers, and the MLM decoder weight, which is tied to the word embeddings
IGNORED = ("position_ids", "token_type_ids", "mlm_score.decoder.weight")

PATCHES = "visual_input.embedding"


def vilt_config(ck: HFCheckpoint) -> ModelConfig:
    """The :class:`ModelConfig` of a ViLT ``config.json`` (and of its
    ``preprocessor_config.json``'s pixel normalisation, when the directory has one)."""
    mean, std = _normalisation(ck.path / "preprocessor_config.json")
    return replace_config(
        ck, bert_config(ck), arch="single_stream", pooler="cls", visual="patches",
        image_size=ck.cfg_int("image_size"), patch_size=ck.cfg_int("patch_size"),
        num_channels=ck.cfg_int("num_channels", 3), norm_first=True, modality_embed=True,
        pixel_mean=mean, pixel_std=std)


def _normalisation(file: Path) -> tuple[list[float], list[float]]:
    """``image_mean`` and ``image_std`` of an image processor's settings; without the file,
    ViltImageProcessor's default (0.5 for every channel)."""
    if not file.is_file():
        return [0.5] * 3, [0.5] * 3
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise input_error(file, None, f"not valid JSON ({err})") from None
    values = []
    for key in ("image_mean", "image_std"):
        value = doc.get(key, [0.5] * 3) if isinstance(doc, dict) else None
        if not (isinstance(value, list) and len(value) == 3 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)):
            raise input_error(file, key, f"expected 3 numbers, one per channel, found {value!r}")
        values.append([float(x) for x in value])
    if min(values[1]) <= 0:
        raise input_error(file, "image_std", f"expected positive numbers, found {values[1]}")
    return values[0], values[1]


def _prefix(ck: HFCheckpoint) -> str:
    # ViltModel keys start at "embeddings."; the task classes nest it under "vilt."
    return "vilt." if ck.has("vilt.embeddings.cls_token") else ""


def vilt_state(ck: HFCheckpoint, num_layers: int) -> dict[str, Tensor]:
    """The whole encoder (embedders, layers, final LayerNorm, pooler) under vlp names."""
    p = _prefix(ck)
    out = bert_embeddings(ck, f"{p}embeddings.text_embeddings", "text_embed")
    copy(ck, out, f"{PATCHES}.proj", f"{p}embeddings.patch_embeddings.projection")
    out[f"{PATCHES}.cls"] = ck.take(f"{p}embeddings.cls_token", ck.shape_of(f"{PATCHES}.cls"))
    out[f"{PATCHES}.position"] = ck.take(f"{p}embeddings.position_embeddings",
                                         ck.shape_of(f"{PATCHES}.position"))
    # rows 0 (text) and 1 (image); NLVR2's ViLT has a row 2 for a second image, which
    # vlp does not need: it encodes each image of a pair in its own row of the batch
    out["modality.weight"] = ck.take(f"{p}embeddings.token_type_embeddings.weight")[:2]
    vit_encoder(ck, out, p, num_layers)  # ViLT's transformer is ViT's
    copy(ck, out, "pooler.dense", f"{p}pooler.dense")
    return out


def vilt_heads(ck: HFCheckpoint) -> dict[str, dict[str, Tensor]]:
    """``ViltForMaskedLM``'s MLM head under :class:`vlp.objectives.mlm.MLM` names, when
    present and tied to the word embeddings (as vlp's decoder is)."""
    if not ck.has("mlm_score.transform.dense.weight") or not ck.cfg_bool("tie_word_embeddings",
                                                                         True):
        return {}
    out: dict[str, Tensor] = {}
    copy(ck, out, "head.transform.dense", "mlm_score.transform.dense")
    copy(ck, out, "head.transform.norm", "mlm_score.transform.LayerNorm")
    out["head.decoder.bias"] = ck.take("mlm_score.decoder.bias",
                                      ck.shape_of("head.decoder.bias"))
    return {"mlm": out}


def convert_vilt(ck: HFCheckpoint) -> Imported:
    """A ViLT checkpoint → a whole single-stream patch model, with its MLM head."""
    from vlp.convert import Imported  # the package imports this module first

    cfg = vilt_config(ck)
    expect(ck, cfg)
    return Imported(cfg, vilt_state(ck, cfg.num_layers), vilt_heads(ck), text_only=False,
                    unused=ck.unused(IGNORED))
