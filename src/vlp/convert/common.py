"""Reading Hugging Face model directories, and the BERT layer mapping every import shares."""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from vlp.config import FieldError, Range, check_value
from vlp.errors import VlpError, input_error
from vlp.models.config import ModelConfig

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
Shape = tuple[int, ...]


def one_line(err: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, cut to ``limit`` characters (torch's and
    safetensors' errors run over several lines)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


def read_safetensors(file: Path) -> dict[str, Tensor]:
    """The tensors of a safetensors file.

    Raises:
        VlpError: the file is missing, empty, truncated or not safetensors, naming it.
    """
    if not file.is_file():
        raise input_error(file, None, "missing (expected a safetensors weights file)")
    if file.stat().st_size == 0:
        raise input_error(file, None, "empty (0 bytes); expected safetensors weights")
    try:
        return load_file(str(file))
    except Exception as err:  # safetensors raises its own error, OSError or others
        raise input_error(file, None, "not a readable safetensors file, truncated or "
                          f"corrupt? ({one_line(err)})") from None


def _unpickle_reason(err: BaseException) -> str:
    """The line of torch's refusal that says what was refused (its message is a page of
    advice around it)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    advice = ("Weights only load failed", "Please file an issue", "Check the documentation")
    reason = [ln for ln in lines if not ln.startswith(advice)]
    return one_line(Exception(" ".join(reason))) if reason else one_line(err)


def _read_pickle(file: Path) -> dict[str, Tensor]:
    # never unpickle arbitrary objects from a downloaded file: weights_only refuses any
    # global but tensors and plain containers, before anything runs
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr
            warnings.simplefilter("ignore")
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # the unpickler's refusal names the offending global
        raise input_error(file, None, "refused: not a plain tensor checkpoint "
                          f"({_unpickle_reason(err)}); vlp never runs code from a weights "
                          "file") from None
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise input_error(file, None, "expected a mapping of weight names to tensors, found "
                          f"{type(state).__name__} holding other things")
    return state


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
    expected: dict[str, Shape] = field(default_factory=dict)

    def has(self, key: str) -> bool:
        """Whether the checkpoint holds ``key``."""
        return key in self.state

    def take(self, key: str, shape: Sequence[int] | None = None) -> Tensor:
        """The tensor called ``key`` (as float32), of ``shape`` when one is given."""
        if key not in self.state:
            raise input_error(self.weights_file, key, "missing weight (expected a "
                              f"{self.config.get('model_type', 'HF')} checkpoint)")
        found = tuple(self.state[key].shape)
        if shape is not None and found != tuple(shape):
            raise input_error(self.weights_file, key, f"shape {found}, expected "
                              f"{tuple(shape)} (from the sizes in config.json)")
        self.used.add(key)
        return self.state[key].float()

    def shape_of(self, ours: str, parts: int = 1) -> Shape | None:
        """The shape the vlp model expects of its weight ``ours`` (see :func:`expect`), or of
        one of ``parts`` equal slices of it along rows (a fused projection); None when
        unknown."""
        want = self.expected.get(ours)
        if want is None or parts == 1:
            return want
        return (want[0] // parts, *want[1:])

    @property
    def config_file(self) -> Path:
        """The directory's ``config.json``."""
        return self.path / "config.json"

    def cfg(self, key: str, default: Any = None) -> Any:
        """A ``config.json`` field; without a default, a missing one is an error. A null
        counts as missing (Hugging Face writes ``"pad_token_id": null`` for "not set")."""
        if self.config.get(key) is not None:
            return self.config[key]
        if default is None:
            raise input_error(self.config_file, key, "missing field")
        return default

    def cfg_int(self, key: str, default: int | None = None, ge: int = 1) -> int:
        """An integer ``config.json`` field of at least ``ge``."""
        value = self.cfg(key, default)
        self._check(key, value, Range(ge=ge), integral=True)
        return int(value)

    def cfg_float(self, key: str, default: float | None = None, **bounds: float) -> float:
        """A finite ``config.json`` number inside ``bounds`` (``ge``, ``gt``, ``le``,
        ``lt``)."""
        value = self.cfg(key, default)
        self._check(key, value, Range(**bounds), integral=False)
        return float(value)

    def cfg_str(self, key: str, default: str | None = None) -> str:
        """A string ``config.json`` field."""
        value = self.cfg(key, default)
        if not isinstance(value, str):
            raise input_error(self.config_file, key, f"expected a string, found {value!r}")
        return value

    def cfg_bool(self, key: str, default: bool) -> bool:
        """A ``config.json`` flag (true or false)."""
        value = self.config.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise input_error(self.config_file, key, f"expected true or false, found {value!r}")
        return value

    def _check(self, key: str, value: Any, rng: Range, integral: bool) -> None:
        try:
            check_value(value, rng, key, integral)
        except FieldError as err:
            raise input_error(self.config_file, key, err.message.replace("got", "found")
                              ) from None

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
            return read_safetensors(file), file
        return _read_pickle(file), file
    raise input_error(path, None, f"no weights found (expected one of {', '.join(WEIGHT_FILES)})")


def _read_config(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise input_error(file, None, "missing (expected the model's config.json)")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise input_error(file, None, f"not UTF-8 text (byte {e.start}); expected JSON") from None
    except json.JSONDecodeError as e:
        raise input_error(file, None, f"not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(config, dict):
        raise input_error(file, None, "expected a JSON object of settings, found "
                          f"{type(config).__name__}")
    return config


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
    config = _read_config(path / "config.json")
    state, file = _load_weights(path)
    if prefix:
        state = {k.removeprefix(prefix): v for k, v in state.items()}
    return HFCheckpoint(path, config, state, file)


def model_config(ck: HFCheckpoint, **fields: Any) -> ModelConfig:
    """The :class:`ModelConfig` a converter read from ``config.json``, checked.

    Raises:
        VlpError: the sizes describe a model vlp cannot build, naming config.json.
    """
    try:
        return ModelConfig(**fields)
    except FieldError as err:
        raise input_error(ck.config_file, None, f"describes a model vlp cannot build "
                          f"({err.key}: {err.message})") from None


def replace_config(ck: HFCheckpoint, cfg: ModelConfig, **changes: Any) -> ModelConfig:
    """``dataclasses.replace`` of a converter's config, checked as :func:`model_config`."""
    return model_config(ck, **{**dataclasses.asdict(cfg), **changes})


def expect(ck: HFCheckpoint, cfg: ModelConfig) -> None:
    """Record on ``ck`` the shape of every weight of the vlp model ``cfg`` describes (and of
    its MLM and ITM heads), so that :meth:`HFCheckpoint.take` refuses a tensor of another
    shape, naming it."""
    ck.expected = expected_shapes(cfg)
    h, v = cfg.hidden_size, ck.expected["text_embed.word.weight"][0]
    # the heads every import may carry, under their objectives' names: MLM and ITM
    ck.expected.update({"head.transform.dense.weight": (h, h), "head.transform.dense.bias": (h,),
                        "head.transform.norm.weight": (h,), "head.transform.norm.bias": (h,),
                        "head.decoder.bias": (v,), "head.weight": (2, h), "head.bias": (2,)})


def expected_shapes(cfg: ModelConfig) -> dict[str, Shape]:
    """Weight name → shape of the vlp model of ``cfg`` (built on the meta device: no
    memory, no time). Sizes left at 0 (filled from data) count as 1."""
    from vlp.models import build_model  # the models import this package's siblings
    from vlp.models.single_stream import build_grid_input

    filled = dataclasses.replace(cfg, vocab_size=cfg.vocab_size or max(1, cfg.pad_id + 1),
                                 region_feature_dim=cfg.region_feature_dim or 1)
    with torch.device("meta"):
        model = build_model(filled)
        if cfg.visual == "grid" and cfg.backbone == "resnet" and cfg.backbone_weights:
            # a grid model on a Hugging Face ResNet has that ResNet's shape
            from vlp.convert.backbones import resnet_shape

            model.visual_input = build_grid_input(filled, resnet_shape(cfg.backbone_weights))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def copy(ck: HFCheckpoint, out: dict[str, Tensor], ours: str, hf: str, bias: bool = True) -> None:
    """``out[ours.weight] = hf.weight`` (and the bias) for a Linear, LayerNorm or Embedding."""
    out[f"{ours}.weight"] = ck.take(f"{hf}.weight", ck.shape_of(f"{ours}.weight"))
    if bias:
        out[f"{ours}.bias"] = ck.take(f"{hf}.bias", ck.shape_of(f"{ours}.bias"))


def _fused(ck: HFCheckpoint, out: dict[str, Tensor], ours: str, hf: str,
           names: Sequence[str]) -> None:
    for part in ("weight", "bias"):
        shape = ck.shape_of(f"{ours}.{part}", len(names))
        out[f"{ours}.{part}"] = torch.cat([ck.take(f"{hf}.{n}.{part}", shape) for n in names])


def fused_qkv(ck: HFCheckpoint, out: dict[str, Tensor], ours: str, hf: str,
              names: tuple[str, str, str] = ("query", "key", "value")) -> None:
    """Separate query/key/value Linears → one fused ``qkv`` Linear (rows q, then k, then v)."""
    _fused(ck, out, ours, hf, names)


def fused_kv(ck: HFCheckpoint, out: dict[str, Tensor], ours: str, hf: str) -> None:
    """Separate key/value Linears → one fused ``kv`` Linear."""
    _fused(ck, out, ours, hf, ("key", "value"))


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
    act = ck.cfg_str(key, "gelu")
    if act != "gelu":
        raise input_error(ck.config_file, key,
                          f"expected 'gelu' (the exact GELU vlp implements), found {act!r}")
