"""ViT (``ViTModel``, ``ViTForImageClassification``) → the visual side of a vlp patch model.

ViLT starts its single-stream transformer from ViT: the patch projection, [CLS] token,
position embeddings, every transformer layer and the final LayerNorm are ViT's, while the
text embeddings (and the modality embeddings and pooler) start fresh. vlp's single-stream
model with ``visual: patches`` and ``norm_first`` is that layout, so ViT's weights map one
to one onto those parts (:func:`load_vit_weights`), and on image tokens alone, without the
modality embedding, the vlp model computes ViT (:func:`vit_forward`).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from vlp.convert.common import (
    HFCheckpoint,
    check_activation,
    copy,
    read_hf,
    transformer_layer,
)
from vlp.data.readers import load_json
from vlp.errors import VlpError, input_error
from vlp.layers.embeddings import PatchEmbedding
from vlp.layers.transformer import TransformerEncoder, TransformerLayer
from vlp.models.single_stream import SingleStreamModel
from vlp.models.visual import PatchInput
from vlp.models.weights import load_partial

PATCHES = "visual_input.embedding"
# a ViT's weights that have no counterpart in the patch encoder (ViLT starts them fresh)
IGNORED = ("pooler.dense.weight", "pooler.dense.bias", "classifier.weight", "classifier.bias")


def _parts(model: nn.Module) -> tuple[PatchEmbedding, TransformerEncoder]:
    """The patch embedder and pre-LayerNorm transformer of a vlp patch model."""
    if not isinstance(model, SingleStreamModel) or not isinstance(model.visual_input,
                                                                  PatchInput):
        raise VlpError(f"ViT weights go into a single-stream patch model (model.visual: "
                       f"patches), not a {type(model).__name__}")
    if model.encoder.norm is None:
        raise VlpError("ViT weights need a pre-LayerNorm transformer (model.norm_first: true)")
    return model.visual_input.embedding, model.encoder


def vit_forward(model: SingleStreamModel, pixels: Tensor) -> Tensor:
    """ViT's function inside a vlp patch model: patch embedding, the transformer's layers
    and its final LayerNorm over image tokens alone (no text, no modality embedding).

    Args:
        model: a single-stream model with ``visual: patches`` and ``norm_first``.
        pixels: (B, C, H, W) normalised pixels.

    Returns:
        (B, 1 + (H // P) · (W // P), D): ViT's ``last_hidden_state``.
    """
    embedding, encoder = _parts(model)
    out: Tensor = encoder(embedding(pixels))  # (B, 1 + N, D), every token real
    return out


def _check_sizes(ck: HFCheckpoint, embedding: PatchEmbedding, encoder: TransformerEncoder
                 ) -> None:
    """Refuse a ViT whose sizes differ from the model's, naming the config.json field
    and the model's setting."""
    layer = encoder.layers[0]
    assert isinstance(layer, TransformerLayer)
    ours = {
        ("hidden_size", "hidden_size"): embedding.proj.out_channels,
        ("num_hidden_layers", "num_layers"): len(encoder.layers),
        ("num_attention_heads", "num_heads"): layer.attn.num_heads,
        ("intermediate_size", "intermediate_size"): layer.mlp.fc1.out_features,
        ("patch_size", "patch_size"): embedding.patch_size,
        ("num_channels", "num_channels"): embedding.channels,
    }
    for (key, field), value in ours.items():
        found = ck.cfg_int(key, 3 if key == "num_channels" else None)
        if found != value:
            raise input_error(ck.config_file, key, f"{found}, but the model's is {value} "
                              f"(model.{field})")
    grid = ck.cfg_int("image_size") // embedding.patch_size
    if grid != embedding.grid:
        raise input_error(ck.config_file, "image_size", f"{ck.cfg_int('image_size')} "
                          f"({grid}×{grid} patches), but the model's positions are laid out "
                          f"for {embedding.grid}×{embedding.grid} (model.image_size)")
    eps = ck.cfg_float("layer_norm_eps", 1e-12, gt=0)
    assert encoder.norm is not None
    if eps != encoder.norm.eps:
        raise input_error(ck.config_file, "layer_norm_eps", f"{eps}, but the model's is "
                          f"{encoder.norm.eps} (model.layer_norm_eps)")
    check_activation(ck)


def vit_state(ck: HFCheckpoint, num_layers: int) -> dict[str, Tensor]:
    """A ViT's patch embedder, layers and final LayerNorm under the vlp patch model's names."""
    p = "vit." if ck.has("vit.embeddings.cls_token") else ""  # ViTForImageClassification
    out: dict[str, Tensor] = {}
    copy(ck, out, f"{PATCHES}.proj", f"{p}embeddings.patch_embeddings.projection")
    out[f"{PATCHES}.cls"] = ck.take(f"{p}embeddings.cls_token", ck.shape_of(f"{PATCHES}.cls"))
    out[f"{PATCHES}.position"] = ck.take(f"{p}embeddings.position_embeddings",
                                         ck.shape_of(f"{PATCHES}.position"))
    vit_encoder(ck, out, p, num_layers)
    return out


def vit_encoder(ck: HFCheckpoint, out: dict[str, Tensor], prefix: str, num_layers: int) -> None:
    """ViT's pre-LayerNorm layers and final LayerNorm (``{prefix}encoder.layer.N``,
    ``{prefix}layernorm``, as ViLT has them too) into ``out`` under vlp's names."""
    for i in range(num_layers):
        hf = f"{prefix}encoder.layer.{i}"
        transformer_layer(ck, out, f"encoder.layers.{i}", qkv=f"{hf}.attention.attention",
                          attn_out=f"{hf}.attention.output.dense",
                          norm1=f"{hf}.layernorm_before", fc1=f"{hf}.intermediate.dense",
                          fc2=f"{hf}.output.dense", norm2=f"{hf}.layernorm_after")
    copy(ck, out, "encoder.norm", f"{prefix}layernorm")


def load_vit_weights(model: SingleStreamModel, path: str | Path) -> list[str]:
    """Initialise the visual side of a vlp patch model from a Hugging Face ViT directory,
    as ViLT does: patch projection, [CLS], positions, every layer and the final LayerNorm.

    Args:
        model: a single-stream model with ``visual: patches`` and ``norm_first``, of the
            ViT's sizes (hidden size, layers, heads, MLP width, patch and image size).
        path: a ``ViTModel`` or ``ViTForImageClassification`` directory.

    Returns:
        The names of the model's weights left as they were (the text embeddings, the
        modality embeddings, the pooler).

    Raises:
        VlpError: a model that is not a patch model, a ViT of other sizes (naming the
            config.json field and the model's), missing or unreadable weights.
    """
    embedding, encoder = _parts(model)
    ck = read_hf(path)
    if ck.cfg_str("model_type", "") != "vit":
        raise input_error(ck.config_file, "model_type", "expected 'vit' (a Hugging Face "
                          f"ViTModel), found {ck.config.get('model_type')!r}")
    _check_sizes(ck, embedding, encoder)
    ck.expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = vit_state(ck, len(encoder.layers))
    unused = ck.unused(IGNORED)
    if unused:
        raise input_error(ck.weights_file, unused[0], f"a ViT weight the patch model has no "
                          f"place for ({len(unused)} such)")
    return load_partial(model, state, str(ck.weights_file))


__all__ = ["load_vit_weights", "vit_forward", "vit_state"]


def vit_normalisation(path: str | Path) -> tuple[list[float], list[float]]:
    """The pixel mean and std a ViT directory's weights expect: its
    ``preprocessor_config.json``'s ``image_mean`` / ``image_std`` when it has them,
    otherwise ``ViTImageProcessor``'s default, 0.5 and 0.5 (pixels scaled to [-1, 1]).

    Raises:
        VlpError: the preprocessor file is not JSON, or its values are not three numbers.
    """
    file = Path(path) / "preprocessor_config.json"
    mean, std = [0.5] * 3, [0.5] * 3
    if file.is_file():
        config = load_json(file)
        for key, default in (("image_mean", mean), ("image_std", std)):
            value = config.get(key, default) if isinstance(config, dict) else default
            if not (isinstance(value, list) and len(value) == 3
                    and all(isinstance(v, (int, float)) for v in value)):
                raise input_error(file, key, f"expected three numbers, found {value!r}")
            default[:] = [float(v) for v in value]
    return mean, std
