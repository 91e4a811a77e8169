"""BERT (``BertModel``, ``BertForPreTraining``, ``BertForMaskedLM``) → vlp text weights."""

from __future__ import annotations

from torch import Tensor

from vlp.convert.common import (
    HFCheckpoint,
    bert_embeddings,
    bert_layer,
    check_activation,
    copy,
    model_config,
)
from vlp.errors import input_error
from vlp.models.config import ModelConfig

# keys every BERT checkpoint may carry that vlp has no use for
IGNORED = ("position_ids", "cls.seq_relationship.weight", "cls.seq_relationship.bias",
           "cls.predictions.decoder.weight")  # the decoder is tied to the word embeddings


def bert_config(ck: HFCheckpoint) -> ModelConfig:
    """The :class:`ModelConfig` of a BERT ``config.json`` (text side only)."""
    check_activation(ck)
    pos = ck.cfg_str("position_embedding_type", "absolute")
    if pos != "absolute":
        raise input_error(ck.config_file, "position_embedding_type",
                          f"expected 'absolute', found {pos!r}")
    return model_config(
        ck, hidden_size=ck.cfg_int("hidden_size"), num_layers=ck.cfg_int("num_hidden_layers"),
        num_heads=ck.cfg_int("num_attention_heads"),
        intermediate_size=ck.cfg_int("intermediate_size"),
        dropout=ck.cfg_float("hidden_dropout_prob", 0.1, ge=0, lt=1),
        max_positions=ck.cfg_int("max_position_embeddings"),
        type_vocab_size=ck.cfg_int("type_vocab_size", 2),
        layer_norm_eps=ck.cfg_float("layer_norm_eps", 1e-12, gt=0, lt=1),
        initializer_range=ck.cfg_float("initializer_range", 0.02, gt=0, le=10),
        vocab_size=ck.cfg_int("vocab_size"), pad_id=ck.cfg_int("pad_token_id", 0, ge=0),
    )


def _prefix(ck: HFCheckpoint) -> str:
    # BertModel keys start at "embeddings."; the pre-training classes nest it under "bert."
    return "bert." if ck.has("bert.embeddings.word_embeddings.weight") else ""


def bert_text_state(ck: HFCheckpoint, num_layers: int, hf: str | None = None
                    ) -> dict[str, Tensor]:
    """BERT's embeddings, layers and pooler under single-stream vlp names.

    The names (``text_embed.*``, ``encoder.layers.{i}.*``, ``pooler.dense.*``) are the
    common currency of text initialisation: every model's ``load_text_weights`` takes them.
    """
    p = _prefix(ck) if hf is None else hf
    out = bert_embeddings(ck, f"{p}embeddings", "text_embed")
    for i in range(num_layers):
        out.update(bert_layer(ck, f"{p}encoder.layer.{i}", f"encoder.layers.{i}"))
    if ck.has(f"{p}pooler.dense.weight"):
        copy(ck, out, "pooler.dense", f"{p}pooler.dense")
    return out


def bert_mlm_head(ck: HFCheckpoint) -> dict[str, Tensor]:
    """BERT's MLM prediction head under :class:`vlp.objectives.mlm.MLM` names, when present."""
    if not ck.has("cls.predictions.transform.dense.weight"):
        return {}
    out: dict[str, Tensor] = {}
    copy(ck, out, "head.transform.dense", "cls.predictions.transform.dense")
    copy(ck, out, "head.transform.norm", "cls.predictions.transform.LayerNorm")
    out["head.decoder.bias"] = ck.take("cls.predictions.bias", ck.shape_of("head.decoder.bias"))
    return out
