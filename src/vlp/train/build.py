"""The steps every run starts with, whatever it trains: the model it starts from, the
tokenizer and region store it reads, the encoder sized to them, and the batch sampler.

Pre-training and fine-tuning call these in the same order (:func:`start`, then their own
data and objectives, then :func:`build_encoder` and :func:`load_init`).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from vlp.convert import Imported, load_imported, with_text_config
from vlp.convert.backbones import pretrained_backbone, resnet_shape
from vlp.convert.vit import load_vit_weights, vit_normalisation
from vlp.data.batching import ResumableBatchSampler, fixed_size_batches, token_budget_batches
from vlp.data.features import RegionStore
from vlp.data.formats.caption_files import detect_caption_format, parse_captioned_images
from vlp.data.formats.karpathy import parse_karpathy
from vlp.data.image_files import ImageFile, ImageIndex
from vlp.data.readers import parse_json, read_text
from vlp.data.tokenizer import Tokenizer
from vlp.data.transforms import DecodedImageCache, ImageTransform, longer_cap
from vlp.data.visuals import PixelSource, RegionSource, Visuals
from vlp.errors import VlpError, is_strict, strict_mode
from vlp.layers.backbones import Backbone, build_backbone
from vlp.models import build_model
from vlp.models.config import ADJUSTABLE_FIELDS, ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.models.single_stream import SingleStreamModel, build_grid_input
from vlp.models.weights import load_partial
from vlp.objectives.base import Objective
from vlp.train.config import DataConfig, PretrainConfig, RunConfig
from vlp.train.runtime import Env, make_env

RunT = TypeVar("RunT", bound=RunConfig)


@dataclass
class Start:
    """What a run starts from.

    Attributes:
        cfg: the config with the imported model's sections applied, data paths resolved
            and the precision that runs here.
        env: rank, device and precision.
        tokenizer: the run's vocabulary.
        visuals: the images as the model reads them: a region store's regions, or
            decoded pixels.
        text_init: BERT weights for the text side (``train.init_text``), or None.
        init: a whole vision-language model to start from (``train.init``), or None.
    """

    cfg: RunConfig
    env: Env
    tokenizer: Tokenizer
    visuals: Visuals
    text_init: Imported | None
    init: Imported | None


def start(cfg: RunT) -> tuple[RunT, Start]:
    """Resolve ``train.init`` / ``train.init_text``, join the process group, seed, and open
    the tokenizer and the images (a region store, or image files for pixel models);
    returns the resolved config and the start."""
    text_init = load_imported(cfg.train.init_text) if cfg.train.init_text else None
    if text_init is not None:
        cfg = _with_text_init(cfg, text_init)
    init = load_imported(cfg.train.init) if cfg.train.init else None
    if init is not None:
        cfg = _with_init(cfg, init)
    env = make_env(cfg.train.device, cfg.train.precision)
    # config.yaml records what runs
    cfg = dataclasses.replace(cfg, data=cfg.data.resolved(), train=dataclasses.replace(
        cfg.train, precision=env.precision))
    torch.manual_seed(cfg.train.seed)
    data = cfg.data
    if cfg.model.visual != "regions" and not (cfg.model.pixel_mean and cfg.model.pixel_std):
        cfg = dataclasses.replace(cfg, model=with_pixel_normalisation(cfg.model,
                                                                      cfg.train.init_vision))
    with strict_mode(data.strict or is_strict()):
        tokenizer = Tokenizer.from_vocab(data.require("vocab"), field="data.vocab")
        visuals = open_visuals(cfg, flip=isinstance(cfg, PretrainConfig))
    return cfg, Start(cfg, env, tokenizer, visuals, text_init, init)


def open_visuals(cfg: RunConfig, flip: bool = False) -> Visuals:
    """The images of a run as its model reads them: the region store (``data.features``),
    or image files (``data.images`` / ``data.image_root``) through the pixel pipeline.

    Args:
        cfg: the run's resolved config.
        flip: whether augmentation may mirror images (``data.flip``; pre-training only).
    """
    data, model = cfg.data, cfg.model
    if model.visual == "regions":
        store = RegionStore.open(data.require("features"), verify=data.verify_features)
        return RegionSource(store, data.max_regions, model.loc_dim)
    index = image_index(data)
    # one visual token covers a patch, or a 2×2 max-pooled cell of the backbone's map
    token_pixels = (model.patch_size if model.visual == "patches"
                    else 2 * grid_backbone(model).stride)
    side = math.ceil(model.image_size / token_pixels)
    if data.resize == "shorter":  # the longer side: a 4:3 photo's, within the cap
        longer = data.max_image_size or longer_cap(model.image_size)
        tokens = side * math.ceil(min(longer, model.image_size * 4 / 3) / token_pixels)
    else:
        tokens = side * side
    tokens += model.visual == "patches"  # ViLT's image [CLS]
    if model.num_channels != 3:
        raise VlpError(f"model.num_channels: {model.num_channels}; image files are read as "
                       "RGB, 3 channels")
    mean, std = model.pixel_mean, model.pixel_std

    def transform(augment: bool) -> ImageTransform:
        return ImageTransform(
            size=model.image_size, resize=data.resize, max_size=data.max_image_size,
            size_divisor=data.size_divisor,
            mean=(mean[0], mean[1], mean[2]), std=(std[0], std[1], std[2]), augment=augment,
            crop_scale=(data.crop_scale[0], data.crop_scale[1]), jitter=data.jitter,
            flip=data.flip if flip else "none")

    cache = DecodedImageCache(data.image_cache_mb << 20) if data.image_cache_mb else None
    return PixelSource(index, transform(data.augment), transform(False), token_pixels, tokens,
                       augment=data.augment, cache=cache)


def with_pixel_normalisation(model: ModelConfig, vit: str = "") -> ModelConfig:
    """``model`` with the pixel normalisation its visual input expects where the config
    leaves it empty: a grid's backbone's own (EfficientNet-lite0: 127/255 and 128/255), the
    ViT's that starts a patch model (``train.init_vision``), otherwise ImageNet's."""
    if vit:
        mean, std = vit_normalisation(vit)
    else:
        reference = (grid_backbone(model) if model.visual == "grid"
                     else Backbone())  # the base class holds ImageNet's values
        mean, std = list(reference.pixel_mean), list(reference.pixel_std)
    return dataclasses.replace(model, pixel_mean=model.pixel_mean or mean,
                               pixel_std=model.pixel_std or std)


def grid_backbone(model: ModelConfig) -> Backbone:
    """The CNN a grid model names, with random weights: its shape (stride, channels) and
    normalisation. A Hugging Face ResNet directory gives its own shape (its config.json)."""
    if model.backbone == "resnet" and model.backbone_weights:
        return resnet_shape(model.backbone_weights)
    return build_backbone(model.backbone)


def image_index(data: DataConfig) -> ImageIndex:
    """Where a run's image files are: ``data.images`` (a COCO-style list, a caption list or
    a folder); else the images of its caption files (``data.captions`` or
    ``data.split_files``, any caption format) under ``data.image_root`` (a Karpathy file's
    ``filepath/filename`` need it; the others default to the file's folder); else the
    files of ``data.image_root``."""
    if data.images:
        return ImageIndex.read(data.images, data.image_root or None)
    paths = list(dict.fromkeys(data.split_files.values())) or \
        ([data.captions] if data.captions else [])
    if not paths:
        return ImageIndex.from_folder(data.require("image_root"))
    indices = [_caption_file_images(Path(path), data) for path in paths]
    if len(indices) == 1:
        return indices[0]
    merged: dict[int, ImageFile] = {}
    for index in indices:  # the same id must name the same file in every caption file
        for image_id, f in index.files.items():
            known = merged.setdefault(image_id, f)
            if known.path != f.path:
                raise VlpError(f"data.split_files: image id {image_id} is {known.path} in "
                               f"{known.listed} but {f.path} in {f.listed}; ids must name "
                               "one image across the split files")
    return ImageIndex(merged.values(), ", ".join(index.source for index in indices))


def _caption_file_images(path: Path, data: DataConfig) -> ImageIndex:
    """The images one caption file names (see :func:`image_index`)."""
    text = read_text(path, "a caption file")
    fmt = data.caption_format if data.caption_format != "auto" else \
        detect_caption_format(path, text)
    if fmt == "jsonl":
        base = Path(data.image_root) if data.image_root else path.parent
        return ImageIndex([ImageFile(im.image_id, base / im.file, listed=f"{path.name}, image "
                                     f"{im.file}")
                            for im in parse_captioned_images(path, text, fmt)],
                          str(path))
    doc = parse_json(path, text)
    if fmt == "karpathy":
        return ImageIndex.from_karpathy(path, parse_karpathy(path, doc),
                                        data.require("image_root"))
    return ImageIndex.from_document(path, doc, data.image_root or None)


def _with_init_vocab(data: DataConfig, init: Imported, key: str, src: str) -> DataConfig:
    """``data`` reading the imported model's ``vocab.txt`` unless ``data.vocab`` is set."""
    if data.vocab:
        return data
    if init.vocab is None:
        raise VlpError(f"train.{key}: {src} has no vocab.txt; "
                       "set data.vocab to the vocabulary it was trained with")
    return dataclasses.replace(data, vocab=str(init.vocab))


def _with_text_init(cfg: RunT, init: Imported) -> RunT:
    if not init.text_only:
        raise VlpError(f"train.init_text: {cfg.train.init_text} is a whole vision-language "
                       "model, not a text encoder")
    data = _with_init_vocab(cfg.data, init, "init_text", cfg.train.init_text)
    return dataclasses.replace(cfg, data=data, model=with_text_config(cfg.model, init.config))


# fields not compared with the init's: the sizes a run fills in itself (from the vocabulary
# and the region store), and the preset, a name for defaults (compared apart: an import
# records none)
_NOT_COMPARED = frozenset({"preset", "vocab_size", "pad_id", "region_feature_dim",
                           "num_region_classes"})


def _with_init(cfg: RunT, init: Imported) -> RunT:
    """The model section becomes the imported model's, but for the fields of
    :data:`ADJUSTABLE_FIELDS` the config sets; any other field the config sets to a different
    value gets a warning naming both values (the weights were made for the init's)."""
    if cfg.train.init_text:
        raise VlpError("train.init and train.init_text are both set; the whole model "
                       "named by train.init already holds its text side")
    if init.text_only:
        raise VlpError(f"train.init: {cfg.train.init} is a text encoder, not a whole "
                       "vision-language model (start from it with train.init_text)")
    data = _with_init_vocab(cfg.data, init, "init", cfg.train.init)
    given: frozenset[str] = getattr(cfg.model, "given", frozenset())
    chosen = {name: getattr(cfg.model, name) for name in ADJUSTABLE_FIELDS if name in given}
    if "preset" in given and init.config.preset and cfg.model.preset != init.config.preset:
        print(f"warning: model.preset: {cfg.model.preset!r} in the config is not used: "
              f"train.init ({cfg.train.init}) brings its model, made as "
              f"{init.config.preset!r}", file=sys.stderr, flush=True)
    for name in sorted(given - _NOT_COMPARED - set(ADJUSTABLE_FIELDS)):
        mine, theirs = getattr(cfg.model, name), getattr(init.config, name)
        if mine != theirs:
            print(f"warning: model.{name}: {mine!r} in the config is not used: train.init "
                  f"({cfg.train.init}) brings its model, with {theirs!r} (only "
                  f"{', '.join(ADJUSTABLE_FIELDS)} may change when starting from a model)",
                  file=sys.stderr, flush=True)
    return dataclasses.replace(cfg, data=data,
                               model=dataclasses.replace(init.config, **chosen))


def build_encoder(cfg: RunT, begin: Start) -> tuple[RunT, VLEncoder]:
    """The encoder of ``cfg.model`` sized to the tokenizer and the store; returns the
    config with those sizes filled in."""
    source = begin.init or begin.text_init
    if source is not None and source.config.pad_id != begin.tokenizer.pad_id:
        # the tokenizer pads the batches: its [PAD] id is the one the model must skip
        name = cfg.train.init or cfg.train.init_text
        print(f"warning: model.pad_id: {name} pads with id {source.config.pad_id}, the "
              f"vocabulary's [PAD] is id {begin.tokenizer.pad_id}; the model uses "
              f"{begin.tokenizer.pad_id}", file=sys.stderr, flush=True)
    mcfg = dataclasses.replace(cfg.model, vocab_size=begin.tokenizer.vocab_size,
                               pad_id=begin.tokenizer.pad_id)
    if isinstance(begin.visuals, RegionSource):
        store = begin.visuals.store
        mcfg = dataclasses.replace(mcfg, region_feature_dim=store.feature_dim,
                                   num_region_classes=store.num_classes)
    if begin.init is not None:
        _check_init_sizes(cfg, mcfg, begin.init.config)
    encoder = build_model(mcfg)
    if mcfg.visual == "grid" and _has_pretrained_backbone(mcfg):
        # the CNN with its weights (and, for a ResNet directory, its shape); a whole model
        # to start from brings its own weights, so only the shape is read then
        backbone = (resnet_shape(mcfg.backbone_weights)
                    if begin.init is not None and mcfg.backbone == "resnet"
                    else None if begin.init is not None
                    else pretrained_backbone(mcfg.backbone, mcfg.backbone_weights))
        if backbone is not None:
            encoder.visual_input = build_grid_input(mcfg, backbone)
    return dataclasses.replace(cfg, model=mcfg), encoder


def _has_pretrained_backbone(model: ModelConfig) -> bool:
    """Whether ``model.backbone`` comes with weights: a path, or packaged ones."""
    return bool(model.backbone_weights) or model.backbone == "efficientnet_lite0"


def _check_init_sizes(cfg: RunConfig, mcfg: ModelConfig, init: ModelConfig) -> None:
    """The data must fit the imported model: its feature size and its vocabulary."""
    src, data = cfg.train.init, cfg.data
    if mcfg.region_feature_dim != init.region_feature_dim:
        raise VlpError(f"train.init: {src} expects region features of size "
                       f"{init.region_feature_dim}, but {data.features} holds features of "
                       f"size {mcfg.region_feature_dim} (data.features)")
    if mcfg.vocab_size != init.vocab_size:
        raise VlpError(f"train.init: {src} has a vocabulary of {init.vocab_size} tokens, "
                       f"but {data.vocab} has {mcfg.vocab_size} (data.vocab)")


def load_init(cfg: RunConfig, begin: Start, encoder: VLEncoder,
              objectives: dict[str, Objective]) -> list[str]:
    """Start from ``train.init_vision`` (ViT's weights on a patch model's visual side and
    layers), ``train.init_text`` (BERT's weights on the text side) or ``train.init`` (a
    whole model), and load the heads the source has for objectives of the same name.

    Returns:
        One line for each source: what it loaded and what starts random (for the run's
        start-up summary); none when everything starts random.
    """
    notes: list[str] = []
    total = len(encoder.state_dict())
    if cfg.train.init_vision:
        if cfg.train.init:
            raise VlpError("train.init and train.init_vision are both set; the whole model "
                           "named by train.init already holds its visual side")
        if not isinstance(encoder, SingleStreamModel):
            raise VlpError(f"train.init_vision: {cfg.train.init_vision} starts a "
                           "single-stream patch model (model.visual: patches)")
        load_vit_weights(encoder, cfg.train.init_vision)
        notes.append(f"train.init_vision: the patch embedding and the layers from ViT "
                     f"({cfg.train.init_vision})")
    loaded: set[str] = set()
    if begin.text_init is not None:
        kept = _untied(encoder, encoder.load_text_weights(begin.text_init.model,
                                                          cfg.train.init_text))
        loaded |= _load_heads(objectives, begin.text_init, cfg.train.init_text)
        notes.append(f"train.init_text: {total - len(kept)} of {total} encoder tensors from "
                     f"{cfg.train.init_text}; random: {_groups(kept)}")
    if begin.init is not None:
        kept = _untied(encoder, load_partial(encoder, begin.init.model, cfg.train.init))
        loaded |= _load_heads(objectives, begin.init, cfg.train.init)
        notes.append(f"train.init: {total - len(kept)} of {total} encoder tensors from "
                     f"{cfg.train.init}" + (f"; random: {_groups(kept)}" if kept else ""))
    if notes:
        fresh = sorted(set(objectives) - loaded)
        notes.append("heads: " + (f"{', '.join(sorted(loaded))} loaded" if loaded else "") +
                     ("; " if loaded and fresh else "") +
                     (f"{', '.join(fresh)} start random" if fresh else ""))
    return notes


def _untied(module: torch.nn.Module, kept: list[str]) -> list[str]:
    """Of the names a load left as they were, those not tied to a loaded tensor (a
    checkpoint stores a tied weight once, under one of its names)."""
    state = module.state_dict(keep_vars=True)
    loaded = {state[n].data_ptr() for n in state if n not in set(kept)}
    return [n for n in kept if state[n].data_ptr() not in loaded]


def _groups(names: list[str]) -> str:
    """Parameter names summed up by their first two parts (``visual_input.proj``)."""
    if not names:
        return "nothing"
    groups = sorted({".".join(n.split(".")[:2]) for n in names})
    return ", ".join(groups[:8]) + (f" and {len(groups) - 8} more" if len(groups) > 8 else "")


def _load_heads(objectives: dict[str, Objective], source: Imported, name: str) -> set[str]:
    """Load the source's heads into the objectives of the same name; returns their names."""
    loaded = set()
    for head_name, head in source.heads.items():
        if head_name in objectives:
            load_partial(objectives[head_name], head, name)
            loaded.add(head_name)
    return loaded


def batch_sampler(cfg: RunConfig, lengths: np.ndarray, env: Env) -> ResumableBatchSampler:
    """The resumable sampler of training batches: by token budget (``data.token_budget``
    > 0) or ``data.batch_size`` rows, this rank's share of each epoch."""
    data = cfg.data
    if data.token_budget > 0:
        make = token_budget_batches(lengths, data.token_budget, data.bucket_size)
    else:
        make = fixed_size_batches(data.batch_size)
    return ResumableBatchSampler(len(lengths), make, cfg.train.seed, rank=env.rank,
                                 world_size=env.world_size)


def run_inputs(cfg: RunConfig) -> list[str]:
    """The paths a run reads: ``train.out`` may not be or hold one of them."""
    t, d = cfg.train, cfg.data
    # the run's own copy of its vocabulary (a resumed run reads it) is the run's, not an input
    own = d.vocab and t.out and Path(d.vocab).resolve() == (Path(t.out) / "vocab.txt").resolve()
    return [t.init, t.init_text, t.init_vision, d.world, d.captions, d.features,
            "" if own else d.vocab, d.images, d.image_root, *d.split_files.values()]
