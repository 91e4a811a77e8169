"""The world's pseudo-detector: imperfect region features and class distributions.

Real pre-training reads Faster R-CNN outputs (bottom-up attention): boxes that are close to,
but not exactly on, the objects, some spurious boxes, a pooled feature per box from a CNN
trained with object and attribute heads, and the detector's class distribution per box.
MRFR regresses those features and MRC / MRC-KL predict those distributions, so the world
needs the same kind of targets: real, learned and imperfect, not the ground truth.

:func:`build_world_features` trains a small CNN region classifier on crops of the world's
*train*-split images (annotated boxes, jittered, labelled with their shape and colour;
random boxes far from every object labelled background), then for every image crops the
annotated boxes (jittered ±10 %) and 1–4 spurious boxes, and writes the CNN's pooled
feature and its softmax over ``__background__`` + shapes to a
:class:`~vlp.data.features.RegionStore`. Like BUTD, class 0 is the background and regions
are ordered by confidence (1 − p(background)), most confident first.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from vlp.data.features import Regions, build_store, claim_store
from vlp.data.formats.coco import read_coco_instances
from vlp.data.formats.karpathy import read_karpathy
from vlp.data.images import check_image_size, load_image
from vlp.data.readers import load_json
from vlp.data.records import ImageInfo
from vlp.errors import VlpError, input_error

CROP_SIZE = 32
BACKGROUND = "__background__"
IGNORE = -100  # attribute label of background boxes: no colour to learn
MIN_SAMPLES_PER_EPOCH = 4096  # small worlds see each object several times per epoch
MIN_STEPS_PER_EPOCH = 48  # and take smaller batches: the CNN needs ~100 steps to learn shapes
TRAIN_JITTER = 0.05
DETECT_JITTER = 0.10
NEG_MAX_IOU = 0.3


@dataclass
class WorldObjects:
    """A world's pixels and annotated objects, as tensors.

    Attributes:
        image_ids: the images' ids.
        images: (N, 3, H, W) uint8 pixels (smaller images are zero-padded at the bottom right).
        sizes: (N, 2) int64 width, height of each image.
        boxes: per image, (k, 4) float32 object boxes x1 y1 x2 y2.
        labels: per image, (k,) int64 class index (1 … K; 0 is the background).
        colours: per image, (k,) int64 colour index, or -100 where not annotated.
        splits: per image, its Karpathy split.
        class_names: ``__background__`` and the K category names, in class index order.
        colour_names: the colour names, in colour index order.
    """

    image_ids: list[int]
    images: Tensor
    sizes: Tensor
    boxes: list[Tensor]
    labels: list[Tensor]
    colours: list[Tensor]
    splits: list[str]
    class_names: list[str]
    colour_names: list[str]

    def where(self, split: str) -> list[int]:
        """Rows (not ids) of the images in ``split``."""
        return [i for i, s in enumerate(self.splits) if s == split]


def _colours(path: Path) -> dict[int, str]:
    """annotation id → colour name, from the instances' ``attributes`` (absent: none)."""
    doc = load_json(path)
    colours = {}
    for ann in doc.get("annotations", []) if isinstance(doc, dict) else []:
        colour = (ann.get("attributes") or {}).get("colour") if isinstance(ann, dict) else None
        if isinstance(colour, str):
            colours[int(ann["id"])] = colour
    return colours


def _pixels(world_dir: Path, infos: list[ImageInfo], annotations: Path
            ) -> tuple[Tensor, Tensor]:
    """(N, 3, H, W) uint8 pixels (zero-padded to the largest image) and (N, 2) sizes; each
    image must have the size ``annotations`` gives it."""
    images = []
    for info in infos:
        path = world_dir / "images" / info.file_name
        image = load_image(path)
        check_image_size(path, image, info.width, info.height, annotations)
        images.append(np.array(image))  # (H, W, 3)
    h = max(im.shape[0] for im in images)
    w = max(im.shape[1] for im in images)
    pixels = torch.zeros(len(images), 3, h, w, dtype=torch.uint8)
    for i, im in enumerate(images):
        pixels[i, :, :im.shape[0], :im.shape[1]] = torch.from_numpy(im).permute(2, 0, 1)
    sizes = torch.tensor([[im.shape[1], im.shape[0]] for im in images], dtype=torch.int64)
    return pixels, sizes


def load_world_objects(world_dir: str | Path) -> WorldObjects:
    """Read a world's images, ``instances.json`` and ``dataset_world.json``.

    Args:
        world_dir: the world directory (``images/`` and ``annotations/``).

    Raises:
        VlpError: a missing or malformed file, or an image without a split.
    """
    world_dir = Path(world_dir)
    ann_path = world_dir / "annotations" / "instances.json"
    instances = read_coco_instances(ann_path)
    split_path = world_dir / "annotations" / "dataset_world.json"
    splits = {im.image_id: im.split for im in read_karpathy(split_path)}
    colour_of = _colours(ann_path)
    cat_ids = sorted(instances.categories)
    class_of = {c: k + 1 for k, c in enumerate(cat_ids)}
    colour_names = sorted(set(colour_of.values()))
    colour_idx = {c: k for k, c in enumerate(colour_names)}
    ids = sorted(instances.images)
    missing = [i for i in ids if i not in splits]
    if missing:
        raise input_error(split_path, None, f"image {missing[0]} of {ann_path.name} has no "
                          "split (expected every image listed with a 'split')")
    boxes, labels, colours = [], [], []
    for i in ids:
        anns = instances.annotations[i]
        xywh = torch.tensor([a.bbox for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes.append(torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1))  # (k, 4)
        labels.append(torch.tensor([class_of[a.category_id] for a in anns], dtype=torch.int64))
        colours.append(torch.tensor([colour_idx.get(colour_of.get(a.annotation_id, ""), IGNORE)
                                     for a in anns], dtype=torch.int64))
    pixels, sizes = _pixels(world_dir, [instances.images[i] for i in ids], ann_path)
    names = [BACKGROUND] + [instances.categories[c] for c in cat_ids]
    return WorldObjects(ids, pixels, sizes, boxes, labels, colours, [splits[i] for i in ids],
                        names, colour_names)


# --------------------------------------------------------------------------- boxes


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """(n, m) intersection over union of x1 y1 x2 y2 boxes ``a`` (n, 4) and ``b`` (m, 4)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])  # (n, m, 2)
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])  # (n, m, 2)
    inter = (rb - lt).clamp(min=0).prod(-1)  # (n, m)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-6)


def _clip(boxes: Tensor, size: Tensor) -> Tensor:
    """Clip to the image and keep at least 2 pixels per side."""
    w, h = float(size[0]), float(size[1])
    x1 = boxes[:, 0].clamp(0, w - 2)
    y1 = boxes[:, 1].clamp(0, h - 2)
    x2 = torch.maximum(boxes[:, 2].clamp(0, w), x1 + 2)
    y2 = torch.maximum(boxes[:, 3].clamp(0, h), y1 + 2)
    return torch.stack([x1, y1, x2, y2], dim=1)


def jitter_boxes(boxes: Tensor, frac: float, size: Tensor, gen: torch.Generator) -> Tensor:
    """Move each side of each box by up to ``frac`` of the box's width / height.

    Args:
        boxes: (k, 4) x1 y1 x2 y2.
        frac: the largest move, as a fraction of the box side.
        size: (2,) image width, height (the result is clipped to it).
        gen: the random generator.
    """
    wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)  # (k, 4): w h w h
    noise = (torch.rand(boxes.shape, generator=gen) * 2 - 1) * frac
    return _clip(boxes + noise * wh, size)


def random_boxes(n: int, size: Tensor, gen: torch.Generator, min_frac: float = 0.15,
                 max_frac: float = 0.6) -> Tensor:
    """(n, 4) boxes with sides between ``min_frac`` and ``max_frac`` of the image side."""
    wh = size.float()
    sides = (min_frac + torch.rand(n, 2, generator=gen) * (max_frac - min_frac)) * wh  # (n, 2)
    xy = torch.rand(n, 2, generator=gen) * (wh - sides)
    return _clip(torch.cat([xy, xy + sides], dim=1), size)


def background_boxes(objects: Tensor, n: int, size: Tensor, gen: torch.Generator,
                     max_iou: float = NEG_MAX_IOU, tries: int = 8) -> Tensor:
    """Up to ``n`` random boxes whose IoU with every object is below ``max_iou``."""
    cand = random_boxes(n * tries, size, gen)
    if len(objects):
        cand = cand[box_iou(cand, objects).max(dim=1).values < max_iou]
    return cand[:n]


def spurious_boxes(objects: Tensor, size: Tensor, gen: torch.Generator) -> Tensor:
    """1–4 boxes no annotation asked for: about half random, half shifted off an object
    so that they overlap it partly (the detector's near-duplicates and part-boxes)."""
    n = int(torch.randint(1, 5, (1,), generator=gen))
    boxes = random_boxes(n, size, gen)
    if len(objects):
        partial = torch.rand(n, generator=gen) < 0.5
        pick = objects[torch.randint(len(objects), (n,), generator=gen)]  # (n, 4)
        wh = (pick[:, 2:] - pick[:, :2]).repeat(1, 2)
        sign = torch.where(torch.rand(n, 2, generator=gen) < 0.5, -1.0, 1.0).repeat(1, 2)
        shift = (0.4 + 0.3 * torch.rand(n, 1, generator=gen)) * sign * wh  # 40–70 % off
        boxes = torch.where(partial[:, None], _clip(pick + shift, size), boxes)
    return boxes


# --------------------------------------------------------------------------- crops and CNN


def crop_regions(images: Tensor, rows: Tensor, boxes: Tensor, out: int = CROP_SIZE,
                 chunk_pixels: int = 1 << 24) -> Tensor:
    """Crop boxes and resize them to ``out`` × ``out`` (bilinear, like RoIAlign).

    Args:
        images: (N, 3, H, W) uint8 pixels.
        rows: (R,) which image each box is in.
        boxes: (R, 4) x1 y1 x2 y2 in pixels.
        out: the crop side.
        chunk_pixels: bound on gathered pixels at once (memory for large images).

    Returns:
        (R, 3, out, out) float32 in [0, 1].
    """
    _, _, h, w = images.shape
    scale = torch.tensor([w, h], dtype=torch.float32)
    centre = (boxes[:, :2] + boxes[:, 2:]) / scale  # (R, 2), = 2 · centre / size
    theta = torch.zeros(len(boxes), 2, 3)
    theta[:, 0, 0] = (boxes[:, 2] - boxes[:, 0]) / w
    theta[:, 1, 1] = (boxes[:, 3] - boxes[:, 1]) / h
    theta[:, :, 2] = centre - 1  # normalised [-1, 1] coordinates of the box centre
    step = max(1, chunk_pixels // (3 * h * w))
    crops = []
    for s in range(0, len(boxes), step):
        imgs = images[rows[s:s + step]].float().div_(255.0)  # (r, 3, H, W)
        grid = F.affine_grid(theta[s:s + step], [len(imgs), 3, out, out], align_corners=False)
        crops.append(F.grid_sample(imgs, grid, mode="bilinear", padding_mode="zeros",
                                   align_corners=False))
    return torch.cat(crops) if crops else torch.zeros(0, 3, out, out)


@dataclass
class RegionOutput:
    """What :class:`RegionClassifier` returns.

    Attributes:
        features: (R, D) pooled region features (after ReLU, like BUTD's pool5).
        class_logits: (R, 1 + K) background + object classes.
        attr_logits: (R, A) attribute (colour) logits.
    """

    features: Tensor
    class_logits: Tensor
    attr_logits: Tensor


def _conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class RegionClassifier(nn.Module):
    """A small CNN with BUTD's two heads: object class and attribute.

    Four 3×3 conv / BatchNorm / ReLU blocks (32 → 16 → 8 → 4 pixels), global average pool to
    a ``feature_dim`` vector (the region feature), then linear object and attribute heads;
    the attribute head makes the features carry colour, as BUTD's does.

    Args:
        num_classes: 1 + K (background + object classes).
        num_attributes: A colours (at least 1).
        feature_dim: D, the pooled feature size.
        width: channels of the first block (doubled per block).
    """

    def __init__(self, num_classes: int, num_attributes: int, feature_dim: int = 128,
                 width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(3, width), nn.MaxPool2d(2),  # (R, w, 16, 16)
            _conv(width, 2 * width), nn.MaxPool2d(2),  # (R, 2w, 8, 8)
            _conv(2 * width, 4 * width), nn.MaxPool2d(2),  # (R, 4w, 4, 4)
            _conv(4 * width, feature_dim),  # (R, D, 4, 4)
        )
        self.class_head = nn.Linear(feature_dim, num_classes)
        self.attr_head = nn.Linear(feature_dim, max(1, num_attributes))

    def forward(self, crops: Tensor) -> RegionOutput:
        """crops (R, 3, S, S) in [0, 1] → features (R, D) and logits."""
        feats = self.body(crops - 0.5).mean(dim=(2, 3))  # (R, D)
        return RegionOutput(feats, self.class_head(feats), self.attr_head(feats))


# --------------------------------------------------------------------------- training


def _training_samples(world: WorldObjects, rows: list[int],
                      gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One epoch's (image row, box, class, colour): jittered objects and background boxes."""
    n_obj = sum(len(world.boxes[r]) for r in rows)
    views = max(1, math.ceil(MIN_SAMPLES_PER_EPOCH / max(1, 1.5 * n_obj)))
    img, box, cls, col = [], [], [], []
    for r in rows:
        size, objects = world.sizes[r], world.boxes[r]
        for _ in range(views):
            pos = jitter_boxes(objects, TRAIN_JITTER, size, gen)
            neg = background_boxes(objects, max(1, len(objects) // 2), size, gen)
            img.append(torch.full((len(pos) + len(neg),), r, dtype=torch.int64))
            box.append(torch.cat([pos, neg]))
            cls.append(torch.cat([world.labels[r], torch.zeros(len(neg), dtype=torch.int64)]))
            col.append(torch.cat([world.colours[r],
                                  torch.full((len(neg),), IGNORE, dtype=torch.int64)]))
    return torch.cat(img), torch.cat(box), torch.cat(cls), torch.cat(col)


def train_classifier(world: WorldObjects, feature_dim: int = 128, epochs: int = 3,
                     batch_size: int = 256, seed: int = 0, lr: float = 1e-2,
                     progress: bool = True) -> RegionClassifier:
    """Train a :class:`RegionClassifier` on the world's train-split images only.

    Args:
        world: from :func:`load_world_objects`.
        feature_dim: D, the region feature size.
        epochs: passes over the train split's objects.
        batch_size: crops per step, at most (a small world takes smaller batches so that
            an epoch has at least 48 steps).
        seed: seeds the initial weights and the sampled boxes.
        lr: AdamW learning rate (cosine-decayed to 0).
        progress: show a tqdm progress bar.

    Raises:
        VlpError: the world has no train-split image with an object.
    """
    if epochs < 1 or feature_dim < 1 or batch_size < 1:
        raise VlpError(f"expected epochs, feature_dim and batch_size ≥ 1, got {epochs}, "
                       f"{feature_dim} and {batch_size}")
    rows = [r for r in world.where("train") if len(world.boxes[r])]
    if not rows:
        raise VlpError("the world has no train-split image with an annotated object; "
                       "cannot train the region classifier")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = RegionClassifier(len(world.class_names), len(world.colour_names), feature_dim)
    epoch_data = [_training_samples(world, rows, gen) for _ in range(epochs)]
    batch_size = max(16, min(batch_size, len(epoch_data[0][0]) // MIN_STEPS_PER_EPOCH))
    steps = sum(math.ceil(len(d[0]) / batch_size) for d in epoch_data)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=max(1, steps),
                                                pct_start=0.15)
    model.train()
    # disable=None: a bar on a terminal only, never in a log or pipe
    with tqdm(total=steps, desc="region classifier", unit="step",
              disable=None if progress else True) as bar:
        for img, box, cls, col in epoch_data:
            order = torch.randperm(len(img), generator=gen)
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                crops = crop_regions(world.images, img[idx], box[idx])
                loss = _train_step(model, opt, crops, cls[idx], col[idx])
                sched.step()
                bar.update()
                bar.set_postfix(loss=f"{loss:.3f}")
    return model.eval()


def _train_step(model: RegionClassifier, opt: torch.optim.Optimizer, crops: Tensor,
                cls: Tensor, colour: Tensor) -> float:
    """One step on object class + colour (colour only where annotated, as BUTD's attributes)."""
    out = model(crops)
    loss = F.cross_entropy(out.class_logits, cls)
    if (colour != IGNORE).any():
        loss = loss + F.cross_entropy(out.attr_logits, colour, ignore_index=IGNORE)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


# --------------------------------------------------------------------------- detection


@dataclass
class _Detections:
    """The detected regions of a batch of images, before ordering by confidence."""

    rows: Tensor  # (R,) image row
    boxes: Tensor  # (R, 4)
    truth: Tensor  # (R,) class of an annotated box, -1 for spurious ones
    colour: Tensor  # (R,) colour of an annotated box, IGNORE otherwise


def _propose(world: WorldObjects, rows: list[int], seed: int) -> _Detections:
    gen = torch.Generator()
    parts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
    for r in rows:
        # Seeded per image: an image's boxes do not depend on the others or on training.
        gen.manual_seed(seed * 1_000_003 + world.image_ids[r])
        size, objects = world.sizes[r], world.boxes[r]
        boxes = torch.cat([jitter_boxes(objects, DETECT_JITTER, size, gen),
                           spurious_boxes(objects, size, gen)])
        extra = len(boxes) - len(objects)
        truth = torch.cat([world.labels[r], torch.full((extra,), -1, dtype=torch.int64)])
        colour = torch.cat([world.colours[r], torch.full((extra,), IGNORE, dtype=torch.int64)])
        parts.append((torch.full((len(boxes),), r, dtype=torch.int64), boxes, truth, colour))
    rows_t, boxes_t, truth_t, colour_t = (torch.cat(p) for p in zip(*parts, strict=True))
    return _Detections(rows_t, boxes_t, truth_t, colour_t)


def _batches(world: WorldObjects, model: RegionClassifier, rows: list[int], seed: int,
             batch_size: int) -> Iterator[tuple[list[int], _Detections, RegionOutput]]:
    """Proposals and classifier outputs for ``rows``, a few images per step."""
    images_per_step = max(1, batch_size // 8)  # ~8 boxes per image
    for s in range(0, len(rows), images_per_step):
        step = rows[s:s + images_per_step]
        # Not held across the yield: inference mode is thread state the caller would inherit.
        with torch.inference_mode():
            det = _propose(world, step, seed)
            out = model(crop_regions(world.images, det.rows, det.boxes))
        yield step, det, out


def evaluate(world: WorldObjects, model: RegionClassifier, rows: list[int], seed: int,
             batch_size: int = 256) -> dict[str, Any]:
    """Accuracy on the annotated boxes of ``rows``, proposed exactly as :func:`detect` does.

    Returns:
        ``object_accuracy`` (argmax over background + classes equals the annotated class),
        ``colour_accuracy`` and ``eval_objects`` (annotated boxes counted); accuracies are
        None when there is nothing to count.
    """
    objects = class_hits = coloured = colour_hits = 0
    for _, det, out in _batches(world, model, rows, seed, batch_size):
        annotated, has_colour = det.truth >= 0, det.colour != IGNORE
        objects += int(annotated.sum())
        class_hits += int((out.class_logits.argmax(1) == det.truth)[annotated].sum())
        coloured += int(has_colour.sum())
        colour_hits += int((out.attr_logits.argmax(1) == det.colour)[has_colour].sum())
    return {"eval_objects": objects,
            "object_accuracy": class_hits / objects if objects else None,
            "colour_accuracy": colour_hits / coloured if coloured else None}


def detect(world: WorldObjects, model: RegionClassifier, seed: int, batch_size: int = 256,
           progress: bool = True) -> Iterator[Regions]:
    """Run the classifier over every image's proposed boxes, yielding one image at a time.

    Each image gets its annotated boxes jittered by ±10 % and 1–4 spurious boxes; regions
    are ordered by confidence (1 − p(background)), most confident first, as BUTD's are.
    """
    rows = list(range(len(world.image_ids)))
    with tqdm(total=len(rows), desc="detecting", unit="img",
              disable=None if progress else True) as bar:
        for step, det, out in _batches(world, model, rows, seed, batch_size):
            probs = out.class_logits.float().softmax(dim=1)  # (R, 1 + K)
            for r in step:
                sel = (det.rows == r).nonzero().squeeze(1)
                sel = sel[torch.argsort(probs[sel, 0], stable=True)]  # confident first
                w, h = world.sizes[r].tolist()
                yield Regions(world.image_ids[r], w, h, out.features[sel].numpy(),
                              det.boxes[sel].numpy(), probs[sel].numpy())
                bar.update()


def build_world_features(world_dir: Path, out_dir: Path | None = None, feature_dim: int = 128,
                         epochs: int = 3, seed: int = 0, batch_size: int = 256,
                         progress: bool = True, overwrite: bool = False) -> Path:
    """Train the world's region classifier and write every image's regions to a store.

    The classifier sees train-split images only; its held-out accuracy on the annotated
    boxes of the test split (val if there is no test image) is printed and kept in the
    store's ``meta.json`` (``info.object_accuracy``, ``info.colour_accuracy``, and in
    ``source``). Deterministic for a given ``seed`` (CPU, same thread count): the same
    world and seed give byte-identical stores, ``meta.json`` included.

    Args:
        world_dir: the world directory (``images/``, ``annotations/``).
        out_dir: the store directory (default ``world_dir / "features"``). An existing
            non-empty one is refused before any work unless ``overwrite``; it may not be,
            hold or lie inside the world's ``images/`` or ``annotations/``.
        feature_dim: D, the region feature size.
        epochs: classifier training epochs.
        seed: seeds training and the detection boxes.
        batch_size: crops per step.
        progress: show tqdm progress bars (on a terminal; never in a log or pipe).
        overwrite: replace an existing store at ``out_dir`` (atomically, once the new
            one is complete).

    Returns:
        The store directory.

    Raises:
        VlpError: ``out_dir`` is refused (see above), or the world is malformed.
    """
    world_dir = Path(world_dir)
    out_dir = world_dir / "features" if out_dir is None else Path(out_dir)
    claim_store(out_dir, overwrite=overwrite,
                inputs=[world_dir / "images", world_dir / "annotations"])
    world = load_world_objects(world_dir)
    model = train_classifier(world, feature_dim, epochs, batch_size, seed, progress=progress)
    split = "test" if world.where("test") else "val"
    scores = evaluate(world, model, world.where(split), seed, batch_size)
    acc = scores["object_accuracy"]
    shown = "n/a" if acc is None else f"{acc:.3f}"
    print(f"region classifier: held-out ({split}) object accuracy {shown} "
          f"on {scores['eval_objects']} annotated boxes")
    # the recorded name is the classifier's first module path, kept for byte-identical stores
    info = {"detector": "vlp.data.detector.RegionClassifier", "epochs": epochs, "seed": seed,
            "eval_split": split, **scores, "attribute_names": world.colour_names}
    build_store(detect(world, model, seed, batch_size, progress), out_dir, dtype="float32",
                class_names=world.class_names, info=info, overwrite=overwrite,
                source=f"vlp world pseudo-detector on {world_dir.resolve().name} "
                       f"({split} object accuracy {shown})")
    return out_dir
