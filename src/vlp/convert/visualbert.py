"""VisualBERT (``VisualBertModel``, ``VisualBertForPreTraining``) → a vlp single-stream model.

VisualBERT is BERT with a second embedder for regions: ``visual_projection(feature)`` plus
its own type (row 1) and position (row 0) embeddings, concatenated after the text and
normalised by the text embedding's LayerNorm. That is vlp's single-stream model with
``region_embed="visualbert"``; the weights map one to one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from vlp.convert.bert import bert_config, bert_mlm_head, bert_text_state
from vlp.convert.common import HFCheckpoint, copy, expect, replace_config
from vlp.errors import input_error
from vlp.models.config import ModelConfig

if TYPE_CHECKING:
    from vlp.convert import Imported

# keys a VisualBERT checkpoint may carry that vlp has no use for: buffers, and the MLM
# decoder, which is tied to the word embeddings (its bias is ``cls.predictions.bias``)
IGNORED = ("position_ids", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias")

REGIONS = "visual_input.embedding"


def visual_bert_config(ck: HFCheckpoint) -> ModelConfig:
    """The :class:`ModelConfig` of a VisualBERT ``config.json``."""
    if ck.cfg_bool("bypass_transformer", False):
        raise input_error(ck.config_file, "bypass_transformer",
                          "expected false (vlp runs text and regions through one encoder)")
    return replace_config(ck, bert_config(ck), arch="single_stream", pooler="cls",
                          region_feature_dim=ck.cfg_int("visual_embedding_dim"),
                          region_embed="visualbert")


def _prefix(ck: HFCheckpoint) -> str:
    # VisualBertModel keys start at "embeddings."; the task classes nest it under "visual_bert."
    return "visual_bert." if ck.has("visual_bert.embeddings.word_embeddings.weight") else ""


def visual_bert_state(ck: HFCheckpoint, num_layers: int) -> dict[str, Tensor]:
    """The whole encoder (text and region embedders, layers, pooler) under vlp names."""
    p = _prefix(ck)
    out = bert_text_state(ck, num_layers, hf=p)
    emb = f"{p}embeddings"
    copy(ck, out, f"{REGIONS}.proj", f"{emb}.visual_projection")
    copy(ck, out, f"{REGIONS}.token_type", f"{emb}.visual_token_type_embeddings", bias=False)
    copy(ck, out, f"{REGIONS}.position", f"{emb}.visual_position_embeddings", bias=False)
    # the region embedder shares the text LayerNorm; a separate copy keeps safetensors happy
    out[f"{REGIONS}.norm.weight"] = out["text_embed.norm.weight"].clone()
    out[f"{REGIONS}.norm.bias"] = out["text_embed.norm.bias"].clone()
    return out


def visual_bert_heads(ck: HFCheckpoint) -> dict[str, dict[str, Tensor]]:
    """``VisualBertForPreTraining``'s heads under vlp objective names, when present.

    The MLM head is BERT's (``mlm``), used only when the decoder is tied to the word
    embeddings as vlp's is. The sentence-image head is a linear layer on the pooled
    output, as vlp's ITM head is, but VisualBERT's class 0 means "matches" and vlp's
    class 1 does, so its two rows are swapped.
    """
    heads: dict[str, dict[str, Tensor]] = {}
    if ck.cfg_bool("tie_word_embeddings", True):
        mlm = bert_mlm_head(ck)
        if mlm:
            heads["mlm"] = mlm
    if ck.has("cls.seq_relationship.weight"):
        swap = torch.tensor([1, 0])
        heads["itm"] = {
            "head.weight": ck.take("cls.seq_relationship.weight", ck.shape_of("head.weight")
                                   or (2, ck.cfg_int("hidden_size")))[swap],
            "head.bias": ck.take("cls.seq_relationship.bias", (2,))[swap]}
    return heads


def convert_visual_bert(ck: HFCheckpoint) -> Imported:
    """A VisualBERT checkpoint → a whole single-stream model, with its pre-training heads."""
    from vlp.convert import Imported  # the package imports this module first

    cfg = visual_bert_config(ck)
    expect(ck, cfg)
    state = visual_bert_state(ck, cfg.num_layers)
    heads = visual_bert_heads(ck)
    return Imported(cfg, state, heads, text_only=False, unused=ck.unused(IGNORED))
