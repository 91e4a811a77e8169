"""LXMERT (``LxmertModel``, ``LxmertForPreTraining``) → a vlp two-stream model.

LXMERT is vlp's two-stream model with ``cross_block="lxmert"`` (cross-attention, then
self-attention, then the MLP, in each of its X cross-modality layers), one cross-attention
module shared by both directions, ``region_embed="lxmert"`` (mean of the normalised
feature and box embeddings, no type embedding) on 4-d boxes, and the pooled first text
token as the pair representation. Its L language layers are the text stream's plain
layers and its R object-relationship layers the image stream's; the weights map one to one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from vlp.convert.common import (
    HFCheckpoint,
    bert_embeddings,
    bert_layer,
    check_activation,
    copy,
    expect,
    fused_kv,
    model_config,
    transformer_layer,
)
from vlp.errors import input_error
from vlp.models.config import ModelConfig

if TYPE_CHECKING:
    from vlp.convert import Imported

# keys an LXMERT checkpoint may carry that vlp has no use for: buffers, and the MLM
# decoder, which is tied to the word embeddings (its bias is ``cls.predictions.bias``)
IGNORED = ("position_ids", "cls.predictions.decoder.weight")

REGIONS = "visual_input.embedding"
_HEAD = "obj_predict_head"  # LXMERT's visual (object / attribute / feature) heads


def lxmert_config(ck: HFCheckpoint) -> ModelConfig:
    """The :class:`ModelConfig` of an LXMERT ``config.json``."""
    check_activation(ck)
    if ck.cfg_int("visual_pos_dim", 4) != 4:
        raise input_error(ck.config_file, "visual_pos_dim", "expected 4 (normalised box "
                          f"corners), found {ck.cfg('visual_pos_dim')}")
    layers = {name: ck.cfg_int(name, ge=0) for name in ("l_layers", "r_layers")}
    x = ck.cfg_int("x_layers", ge=1)
    obj = ck.has(f"{_HEAD}.decoder_dict.obj.weight")
    return model_config(
        ck, arch="two_stream", hidden_size=ck.cfg_int("hidden_size"),
        num_layers=layers["l_layers"] + x, num_image_layers=layers["r_layers"] + x,
        num_cross_layers=x, num_heads=ck.cfg_int("num_attention_heads"),
        intermediate_size=ck.cfg_int("intermediate_size"),
        dropout=ck.cfg_float("hidden_dropout_prob", 0.1, ge=0, lt=1),
        max_positions=ck.cfg_int("max_position_embeddings"),
        type_vocab_size=ck.cfg_int("type_vocab_size", 2),
        layer_norm_eps=1e-12,  # LXMERT fixes every LayerNorm's epsilon, whatever its config
        initializer_range=ck.cfg_float("initializer_range", 0.02, gt=0, le=10), pooler="cls",
        vocab_size=ck.cfg_int("vocab_size"), pad_id=0,  # LXMERT's padding index is fixed at 0
        region_feature_dim=ck.cfg_int("visual_feat_dim"),
        num_region_classes=ck.cfg_int("num_object_labels") if obj else 0, loc_dim=4,
        region_embed="lxmert", cross_attention="shared", cross_block="lxmert", pooled="text",
    )


def _prefix(ck: HFCheckpoint) -> str:
    # LxmertModel keys start at "embeddings."; the pre-training classes nest it under "lxmert."
    return "lxmert." if ck.has("lxmert.embeddings.word_embeddings.weight") else ""


def _attention(ck: HFCheckpoint, out: dict[str, Tensor], ours: str, hf: str) -> None:
    """``LxmertCrossAttentionLayer`` → :class:`vlp.layers.coattention.CrossAttentionLayer`."""
    copy(ck, out, f"{ours}.attn.q", f"{hf}.att.query")
    fused_kv(ck, out, f"{ours}.attn.kv", f"{hf}.att")
    copy(ck, out, f"{ours}.attn.out", f"{hf}.output.dense")
    copy(ck, out, f"{ours}.norm", f"{hf}.output.LayerNorm")


def _stream_layer(ck: HFCheckpoint, out: dict[str, Tensor], ours: str, hf: str,
                  side: str) -> None:
    """One stream's self-attention + MLP inside an ``LxmertXLayer`` → a TransformerLayer.

    ``side`` is ``lang`` or ``visn``.
    """
    att = f"{hf}.{side}_self_att"
    transformer_layer(ck, out, ours, qkv=f"{att}.self", attn_out=f"{att}.output.dense",
                      norm1=f"{att}.output.LayerNorm", fc1=f"{hf}.{side}_inter.dense",
                      fc2=f"{hf}.{side}_output.dense", norm2=f"{hf}.{side}_output.LayerNorm")


def lxmert_state(ck: HFCheckpoint, cfg: ModelConfig) -> dict[str, Tensor]:
    """The whole encoder (embedders, three layer stacks, pooler) under vlp names."""
    p = _prefix(ck)
    x = cfg.num_cross_layers
    out = bert_embeddings(ck, f"{p}embeddings", "text_embed")
    visn = f"{p}encoder.visn_fc"
    copy(ck, out, f"{REGIONS}.feat_fc", f"{visn}.visn_fc")
    copy(ck, out, f"{REGIONS}.feat_norm", f"{visn}.visn_layer_norm")
    copy(ck, out, f"{REGIONS}.loc_fc", f"{visn}.box_fc")
    copy(ck, out, f"{REGIONS}.loc_norm", f"{visn}.box_layer_norm")
    for i in range(cfg.num_layers - x):
        out.update(bert_layer(ck, f"{p}encoder.layer.{i}", f"text_encoder.layers.{i}"))
    for i in range(cfg.num_image_layers - x):
        out.update(bert_layer(ck, f"{p}encoder.r_layers.{i}", f"image_encoder.layers.{i}"))
    for i in range(x):
        hf, ours = f"{p}encoder.x_layers.{i}", f"blocks.{i}"
        _attention(ck, out, f"{ours}.text_cross", f"{hf}.visual_attention")  # both ways
        _stream_layer(ck, out, f"{ours}.text_layer", hf, "lang")
        _stream_layer(ck, out, f"{ours}.image_layer", hf, "visn")
    copy(ck, out, "text_pooler.dense", f"{p}pooler.dense")
    return out


def _region_head(ck: HFCheckpoint, decoder: str) -> dict[str, Tensor]:
    """LXMERT's visual head (one transform shared by its decoders) → a vlp MRM head."""
    out: dict[str, Tensor] = {}
    copy(ck, out, "head.0.dense", f"{_HEAD}.transform.dense")
    copy(ck, out, "head.0.norm", f"{_HEAD}.transform.LayerNorm")
    copy(ck, out, "head.1", f"{_HEAD}.decoder_dict.{decoder}")
    # each vlp head gets its own copy of the shared transform (safetensors refuses shared
    # tensors when an import is written)
    return {k: v.clone() for k, v in out.items()}


def lxmert_heads(ck: HFCheckpoint) -> dict[str, dict[str, Tensor]]:
    """``LxmertForPreTraining``'s heads under vlp objective names, when present.

    MLM (tied decoder, as vlp's), ITM (a linear layer on the pooled output; class 1 means
    "matches" in both), MRFR (the feature decoder) and MRC / MRC-KL (the object decoder);
    the attribute and answer heads have no vlp objective and stay unused.
    """
    heads: dict[str, dict[str, Tensor]] = {}
    tied = ck.cfg_bool("tie_word_embeddings", True)
    if tied and ck.has("cls.predictions.transform.dense.weight"):
        mlm: dict[str, Tensor] = {}
        copy(ck, mlm, "head.transform.dense", "cls.predictions.transform.dense")
        copy(ck, mlm, "head.transform.norm", "cls.predictions.transform.LayerNorm")
        mlm["head.decoder.bias"] = ck.take("cls.predictions.bias",
                                           ck.shape_of("head.decoder.bias"))
        heads["mlm"] = mlm
    if ck.has("cls.seq_relationship.weight"):
        heads["itm"] = {}
        copy(ck, heads["itm"], "head", "cls.seq_relationship")
    if ck.has(f"{_HEAD}.decoder_dict.feat.weight"):
        heads["mrfr"] = _region_head(ck, "feat")
    if ck.has(f"{_HEAD}.decoder_dict.obj.weight"):
        heads["mrc"] = _region_head(ck, "obj")
        heads["mrc_kl"] = _region_head(ck, "obj")
    return heads


def convert_lxmert(ck: HFCheckpoint) -> Imported:
    """An LXMERT checkpoint → a whole two-stream model, with its pre-training heads."""
    from vlp.convert import Imported  # the package imports this module first

    cfg = lxmert_config(ck)
    expect(ck, cfg)
    state = lxmert_state(ck, cfg)
    heads = lxmert_heads(ck)
    return Imported(cfg, state, heads, text_only=False, unused=ck.unused(IGNORED))
