"""BERT (``BertModel``, ``BertForPreTraining``, ``BertForMaskedLM``) → vlp text weights."""

from __future__ import annotations

from torch import Tensor

from vlp.errors import input_error
from vlp.models.config import ModelConfig
from vlp.models.convert.common import (
    HFCheckpoint,
    bert_embeddings,
    bert_layer,
    check_activation,
    copy,
)

# keys every BERT checkpoint may carry that vlp has no use for
IGNORED = ("position_ids", "cls.seq_relationship.weight", "cls.seq_relationship.bias",
           "cls.predictions.decoder.weight")  # the decoder is tied to the word embeddings


def bert_config(ck: HFCheckpoint) -> ModelConfig:
    """The :class:`ModelConfig` of a BERT ``config.json`` (text side only)."""
    check_activation(ck)
    pos = ck.cfg("position_embedding_type", "absolute")
    if pos != "absolute":
        raise input_error(ck.path / "config.json", "position_embedding_type",
                          f"expected 'absolute', found {pos!r}")
    return ModelConfig(
        hidden_size=ck.cfg("hidden_size"), num_layers=ck.cfg("num_hidden_layers"),
        num_heads=ck.cfg("num_attention_heads"), intermediate_size=ck.cfg("intermediate_size"),
        dropout=ck.cfg("hidden_dropout_prob", 0.1), max_positions=ck.cfg("max_position_embeddings"),
        type_vocab_size=ck.cfg("type_vocab_size", 2),
        layer_norm_eps=ck.cfg("layer_norm_eps", 1e-12),
        initializer_range=ck.cfg("initializer_range", 0.02), vocab_size=ck.cfg("vocab_size"),
        pad_id=ck.cfg("pad_token_id", 0),
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
    out["head.decoder.bias"] = ck.take("cls.predictions.bias")
    return out
