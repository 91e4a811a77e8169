"""Reading Hugging Face model directories, and the BERT layer mapping every import shares."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from vlp.errors import VlpError, input_error

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass
class HFCheckpoint:
    """A Hugging Face model directory: its ``config.json`` and its weights.

    Weights are taken with :meth:`take`, which names the file and key when one is
    missing and records what was used, so an import can tell which weights it left out.

    Attributes:
        path: the directory.
        config: ``config.json`` as a dict.
        state: parameter name → tensor, with any ``prefix`` stripped.
        weights_file: the file the weights came from.
    """

    path: Path
    config: dict[str, Any]
    state: dict[str, Tensor]
    weights_file: Path
    used: set[str] = field(default_factory=set)

    def has(self, key: str) -> bool:
        """Whether the checkpoint holds ``key``."""
        return key in self.state

    def take(self, key: str) -> Tensor:
        """The tensor called ``key`` (as float32)."""
        if key not in self.state:
            raise input_error(self.weights_file, key, "missing weight (expected a "
                              f"{self.config.get('model_type', 'HF')} checkpoint)")
        self.used.add(key)
        return self.state[key].float()

    def cfg(self, key: str, default: Any = None) -> Any:
        """A ``config.json`` field; without a default, a missing one is an error. A null
        counts as missing (Hugging Face writes ``"pad_token_id": null`` for "not set")."""
        if self.config.get(key) is not None:
            return self.config[key]
        if default is None:
            raise input_error(self.path / "config.json", key, "missing field")
        return default

    def unused(self, ignore: tuple[str, ...] = ()) -> list[str]:
        """Weights no mapping took, except those ending in one of ``ignore``."""
        return sorted(k for k in self.state
                      if k not in self.used and not k.endswith(ignore))


def _load_weights(path: Path) -> tuple[dict[str, Tensor], Path]:
    for name in WEIGHT_FILES:
        file = path / name
        if not file.is_file():
            continue
        if file.suffix == ".safetensors":
            return load_file(str(file)), file
        # never unpickle arbitrary objects from a downloaded file
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as e:  # the unpickler's refusal names the offending global
            raise input_error(file, None, f"not a plain tensor checkpoint ({e})") from e
        return state, file
    raise input_error(path, None, f"no weights found (expected one of {', '.join(WEIGHT_FILES)})")


def read_hf(path: str | Path, prefix: str = "") -> HFCheckpoint:
    """Read a Hugging Face model directory.

    Args:
        path: directory holding ``config.json`` and ``model.safetensors`` or
            ``pytorch_model.bin`` (loaded with ``weights_only=True``).
        prefix: a leading name to strip when every key carries it (``"bert."`` for
            ``BertForPreTraining``); keys without it are kept as they are.

    Raises:
        VlpError: the directory, its config or its weights are missing or unreadable.
    """
    path = Path(path)
    if not path.is_dir():
        raise VlpError(f"{path}: not a directory (expected a Hugging Face model directory)")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise input_error(cfg_file, None, "missing (expected the model's config.json)")
    try:
        config = json.loads(cfg_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise input_error(cfg_file, None, f"not valid JSON ({e.msg} at line {e.lineno})") from e
    state, file = _load_weights(path)
    if prefix:
        state = {k.removeprefix(prefix): v for k, v in state.items()}
    return HFCheckpoint(path, config, state, file)


def copy(ck: HFCheckpoint, out: dict[str, Tensor], ours: str, hf: str, bias: bool = True) -> None:
    """``out[ours.weight] = hf.weight`` (and the bias) for a Linear, LayerNorm or Embedding."""
    out[f"{ours}.weight"] = ck.take(f"{hf}.weight")
    if bias:
        out[f"{ours}.bias"] = ck.take(f"{hf}.bias")


def fused_qkv(ck: HFCheckpoint, out: dict[str, Tensor], ours: str, hf: str,
              names: tuple[str, str, str] = ("query", "key", "value")) -> None:
    """Separate query/key/value Linears → one fused ``qkv`` Linear (rows q, then k, then v)."""
    for part in ("weight", "bias"):
        out[f"{ours}.{part}"] = torch.cat([ck.take(f"{hf}.{n}.{part}") for n in names])


def fused_kv(ck: HFCheckpoint, out: dict[str, Tensor], ours: str, hf: str) -> None:
    """Separate key/value Linears → one fused ``kv`` Linear."""
    for part in ("weight", "bias"):
        out[f"{ours}.{part}"] = torch.cat([ck.take(f"{hf}.{n}.{part}") for n in ("key", "value")])


def transformer_layer(ck: HFCheckpoint, out: dict[str, Tensor], ours: str, *, qkv: str,
                      attn_out: str, norm1: str, fc1: str, fc2: str, norm2: str) -> None:
    """One self-attention layer of any HF model, given the HF names of its parts (``qkv``:
    the module holding ``query``/``key``/``value``) → a
    :class:`vlp.layers.transformer.TransformerLayer` (``norm1`` is the attention's
    LayerNorm and ``norm2`` the MLP's, whether they come after or before)."""
    fused_qkv(ck, out, f"{ours}.attn.qkv", qkv)
    copy(ck, out, f"{ours}.attn.out", attn_out)
    copy(ck, out, f"{ours}.norm1", norm1)
    copy(ck, out, f"{ours}.mlp.fc1", fc1)
    copy(ck, out, f"{ours}.mlp.fc2", fc2)
    copy(ck, out, f"{ours}.norm2", norm2)


def bert_layer(ck: HFCheckpoint, hf: str, ours: str) -> dict[str, Tensor]:
    """One HF ``BertLayer`` → one :class:`vlp.layers.transformer.TransformerLayer`."""
    out: dict[str, Tensor] = {}
    transformer_layer(ck, out, ours, qkv=f"{hf}.attention.self",
                      attn_out=f"{hf}.attention.output.dense",
                      norm1=f"{hf}.attention.output.LayerNorm", fc1=f"{hf}.intermediate.dense",
                      fc2=f"{hf}.output.dense", norm2=f"{hf}.output.LayerNorm")
    return out


def bert_embeddings(ck: HFCheckpoint, hf: str, ours: str) -> dict[str, Tensor]:
    """HF ``BertEmbeddings`` → :class:`vlp.layers.embeddings.TextEmbedding`."""
    out: dict[str, Tensor] = {}
    copy(ck, out, f"{ours}.word", f"{hf}.word_embeddings", bias=False)
    copy(ck, out, f"{ours}.position", f"{hf}.position_embeddings", bias=False)
    copy(ck, out, f"{ours}.token_type", f"{hf}.token_type_embeddings", bias=False)
    copy(ck, out, f"{ours}.norm", f"{hf}.LayerNorm")
    return out


def check_activation(ck: HFCheckpoint, key: str = "hidden_act") -> None:
    """vlp's MLP uses the exact (erf) GELU, as BERT does; anything else would not match."""
    act = ck.cfg(key, "gelu")
    if act != "gelu":
        raise input_error(ck.path / "config.json", key,
                          f"expected 'gelu' (the exact GELU vlp implements), found {act!r}")
