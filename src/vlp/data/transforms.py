"""The image pipeline of pixel models (ViLT's patches, SOHO's CNN grid), in torch and Pillow.

One :class:`ImageTransform` turns a decoded image into normalised pixels: resize (ViLT's
shorter side 384 with the longer capped at 639, or a square), and for training a random
resized crop, colour jitter and a horizontal flip. A flip turns "left" into "right", so the
transform reports it and the caption is swapped with :func:`swap_left_right` (text) or
:func:`swap_left_right_ids` (token ids). :func:`pad_images` batches images of different
sizes with a pixel mask, and :class:`DecodedImageCache` keeps decoded images in memory.

All randomness comes from the ``torch.Generator`` passed in, so a batch key's seed gives
the same pixels in any worker process and after a resume.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from vlp.config import check, check_fields, limits, ranged
from vlp.data.images import load_image, to_rgb

# Detectron's default test size (800 shorter, 1333 longer): the longer side's cap when
# max_size is 0 keeps that ratio
_LONGER_PER_SHORTER = 1333 / 800
_CROP_TRIES = 10
# ITU-R 601 luma weights of R, G, B, as Pillow's "L" conversion
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def longer_cap(shorter: int) -> int:
    """The longer side's default cap for a shorter side of ``shorter`` pixels, rounded
    down as ViLT's code and Hugging Face's ``ViltImageProcessor`` round it (384: 639)."""
    return int(shorter * _LONGER_PER_SHORTER)


@dataclass(frozen=True)
class ImageTransform:
    """Decoded image → normalised ``(3, H, W)`` float32 pixels, augmented for training.

    Evaluation (``augment`` false, or no generator): resize only. "shorter" scales the
    shorter side to ``size`` and keeps the aspect ratio, unless the longer side would pass
    ``max_size``, when that side gets ``max_size`` (ViLT: 384 / 639), and with
    ``size_divisor`` rounds each side down to a multiple of it (ViLT and Hugging Face's
    ``ViltImageProcessor``: 32, the patch size); "square" gives ``size`` × ``size``.
    Resampling is torch's antialiased bicubic on uint8, which matches Pillow's BICUBIC to
    within one level and is about four times faster here.

    Training (``augment`` and a generator): a random resized crop first (area fraction
    uniform in ``crop_scale``, aspect ratio log-uniform in ``crop_ratio``; a centre crop of
    the nearest allowed ratio when 10 draws do not fit), resized as above; then brightness,
    contrast and saturation, each by a factor in [1 - ``jitter``, 1 + ``jitter``], in that
    order; then, with ``flip`` "swap", a horizontal flip with probability 0.5, which the
    caller must mirror in the text (:func:`swap_left_right`).

    Attributes:
        size: pixels — the shorter side ("shorter") or the side ("square").
        resize: "shorter" (aspect ratio kept, ViLT) or "square".
        max_size: "shorter" — cap on the longer side; 0 — ``int(size * 1333 / 800)``
            (639 for 384, as ViLT's code and Hugging Face's processor compute it).
        size_divisor: "shorter" — each side rounded down to a multiple of this (ViLT: 32),
            which must divide ``size``; 0 — as scaled (the collator pads to whole patches).
        mean: per-channel mean subtracted from pixels in [0, 1].
        std: per-channel standard deviation the pixels are then divided by.
        augment: crop, jitter and flip when called with a generator.
        crop_scale: the crop's area as a fraction of the image's, lowest and highest.
        crop_ratio: the crop's width / height, lowest and highest.
        jitter: colour jitter strength in [0, 1]; 0 — none.
        flip: "none", or "swap" — flip half the images horizontally; the caller swaps
            "left" and "right" in their text.
    """

    size: int = ranged(384, ge=1)
    resize: Literal["shorter", "square"] = "shorter"
    max_size: int = ranged(0, ge=0)
    size_divisor: int = ranged(0, ge=0)
    mean: tuple[float, float, float] = field(default=(0.485, 0.456, 0.406), metadata=limits())
    std: tuple[float, float, float] = field(default=(0.229, 0.224, 0.225),
                                            metadata=limits(gt=0))
    augment: bool = False
    crop_scale: tuple[float, float] = field(default=(0.5, 1.0), metadata=limits(gt=0, le=1))
    crop_ratio: tuple[float, float] = field(default=(3 / 4, 4 / 3), metadata=limits(gt=0))
    jitter: float = ranged(0.0, ge=0, le=1)
    flip: Literal["none", "swap"] = "none"

    def __post_init__(self) -> None:
        check(self.resize in ("shorter", "square"), "data.resize",
              f"expected shorter or square, got {self.resize!r}")
        check(self.flip in ("none", "swap"), "data.flip",
              f"expected none or swap, got {self.flip!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            check(isinstance(value, (tuple, list)) and len(value) == 3, f"data.{name}",
                  f"expected 3 numbers (one per RGB channel), got {value!r}")
        for name in ("crop_scale", "crop_ratio"):
            value = getattr(self, name)
            check(isinstance(value, (tuple, list)) and len(value) == 2, f"data.{name}",
                  f"expected 2 numbers [lowest, highest], got {value!r}")
        check_fields(self, "data")
        for name in ("crop_scale", "crop_ratio"):
            low, high = getattr(self, name)
            check(low <= high, f"data.{name}", f"lowest {low} is above highest {high}")
        check(self.resize == "square" or self.longer_cap >= self.size, "data.max_size",
              f"{self.max_size} is below data.size {self.size}; the longer side cannot be "
              "shorter than the shorter one (0 picks size * 1333 / 800)")
        if self.size_divisor:
            check(self.resize == "shorter", "data.size_divisor",
                  f"{self.size_divisor} rounds the sides of resize: shorter; resize: square "
                  "gives data.size on both sides (0: leave it out)")
            # a multiple: an image resized once is the size it would be resized to again
            # (the decoded-image cache keeps resized images and passes them through again)
            check(self.size % self.size_divisor == 0, "data.size_divisor",
                  f"data.size {self.size} is not a multiple of {self.size_divisor}")

    @property
    def longer_cap(self) -> int:
        """The longer side's cap under "shorter" (``max_size``, or its default)."""
        return self.max_size or longer_cap(self.size)

    @property
    def decode_side(self) -> int:
        """The fewest pixels each side of a decoded image needs so that no output pixel is
        upsampled where the original had more (for :func:`load_image`'s ``draft_side``)."""
        if not self.augment:
            return self.size
        # the smallest crop keeps about sqrt(lowest scale) of each side
        return math.ceil(self.size / math.sqrt(self.crop_scale[0]))

    def load(self, path: str | Path, record: str | None = None) -> Image.Image:
        """Decode ``path`` for this transform (upright RGB; a large JPEG at a reduced scale
        that still covers :attr:`decode_side`). See :func:`vlp.data.images.load_image`."""
        return load_image(path, record, draft_side=self.decode_side)

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """The ``(width, height)`` an image (or crop) of this size is resized to."""
        if self.resize == "square":
            return self.size, self.size
        scale = self.size / min(width, height)
        if max(width, height) * scale > self.longer_cap:
            scale = self.longer_cap / max(width, height)
        # half up, as ViLT's and Hugging Face's processors round
        sides = [max(1, int(width * scale + 0.5)), max(1, int(height * scale + 0.5))]
        if self.size_divisor:
            sides = [max(self.size_divisor, s // self.size_divisor * self.size_divisor)
                     for s in sides]
        return sides[0], sides[1]

    def crop_box(self, width: int, height: int,
                 gen: torch.Generator) -> tuple[int, int, int, int]:
        """A random resized crop of a ``width`` × ``height`` image, drawn from ``gen``.

        Returns:
            ``(left, top, right, bottom)`` in pixels (Pillow's box).
        """
        area = width * height
        low, high = math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])
        for _ in range(_CROP_TRIES):
            u = torch.rand(2, generator=gen).tolist()
            target = area * (self.crop_scale[0] + u[0] * (self.crop_scale[1] - self.crop_scale[0]))
            ratio = math.exp(low + u[1] * (high - low))
            w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 0 < w <= width and 0 < h <= height:
                left = int(torch.randint(width - w + 1, (1,), generator=gen))
                top = int(torch.randint(height - h + 1, (1,), generator=gen))
                return left, top, left + w, top + h
        # a centre crop of the allowed ratio nearest the image's
        ratio = min(max(width / height, self.crop_ratio[0]), self.crop_ratio[1])
        w, h = (width, max(1, round(width / ratio))) if width / height <= ratio \
            else (max(1, round(height * ratio)), height)
        left, top = (width - w) // 2, (height - h) // 2
        return left, top, left + w, top + h

    def __call__(self, image: Image.Image,
                 gen: torch.Generator | None = None) -> tuple[Tensor, bool]:
        """Resize (and with ``augment`` and ``gen``, augment) and normalise ``image``.

        Args:
            image: a decoded image, any mode (made RGB).
            gen: the only source of randomness; None — evaluation, deterministic.

        Returns:
            The ``(3, H, W)`` float32 pixels, and whether they were flipped horizontally.
        """
        pixels = torch.from_numpy(np.array(to_rgb(image), dtype=np.uint8))  # (H, W, 3)
        pixels = pixels.permute(2, 0, 1)  # (3, H, W), a view
        if not (self.augment and gen is not None):
            return self._normalise(self.resized(pixels)), False
        box = self.crop_box(image.width, image.height, gen)
        pixels = self.resized(pixels, box)
        factors = (1 - self.jitter + 2 * self.jitter * torch.rand(3, generator=gen)).tolist() \
            if self.jitter > 0 else None
        flipped = self.flip == "swap" and bool(torch.rand(1, generator=gen) < 0.5)
        if flipped:
            pixels = pixels.flip(-1)
        return self._normalise(pixels, factors), flipped

    def resized(self, pixels: Tensor, box: tuple[int, int, int, int] | None = None) -> Tensor:
        """Crop ``box`` (``left, top, right, bottom``; None — all) of uint8 ``(3, H, W)``
        pixels and resize it to :meth:`output_size` with antialiased bicubic filtering
        (Pillow's BICUBIC to within one level, several times faster)."""
        if box is not None:
            pixels = pixels[:, box[1]: box[3], box[0]: box[2]]  # (3, h, w)
        width, height = self.output_size(pixels.shape[2], pixels.shape[1])
        if (height, width) == pixels.shape[1:]:
            return pixels
        # torch's fast uint8 path wants channels-last (B, C, H, W)
        batch = pixels[None].contiguous(memory_format=torch.channels_last)  # (1, 3, h, w)
        return F.interpolate(batch, size=(height, width), mode="bicubic", antialias=True,
                             align_corners=False)[0]  # (3, H', W')

    def _normalise(self, pixels: Tensor, jitter: list[float] | None = None) -> Tensor:
        """uint8 ``(3, H, W)`` → ``(pixel / 255 - mean) / std``, contiguous float32, after
        the brightness, contrast and saturation factors ``jitter`` if given."""
        x = torch.from_numpy(pixels.contiguous().numpy().astype(np.float32))  # (3, H, W)
        if jitter is not None:
            _jitter(x, *jitter)
        std = torch.tensor(self.std, dtype=torch.float64)
        scale = (1.0 / (255.0 * std)).float().view(3, 1, 1)
        shift = (torch.tensor(self.mean, dtype=torch.float64) / std).float().view(3, 1, 1)
        return x.mul_(scale).sub_(shift)


def _jitter(x: Tensor, brightness: float, contrast: float, saturation: float) -> Tensor:
    """Colour jitter in place on ``(3, H, W)`` pixels in [0, 255], clipped after each step:
    scale (brightness), blend with the mean grey (contrast), blend with each pixel's grey
    (saturation); 1 leaves the image as it is."""
    x.mul_(brightness).clamp_(0, 255)
    flat = x.view(3, -1)  # (3, H * W)
    mean_grey = float(_LUMA @ flat.mean(dim=1))
    x.mul_(contrast).add_((1 - contrast) * mean_grey).clamp_(0, 255)
    grey = (_LUMA[None] @ flat).view(1, *x.shape[1:])  # (1, H, W)
    return x.mul_(saturation).add_(grey.mul_(1 - saturation)).clamp_(0, 255)


def pad_images(images: list[Tensor], multiple: int = 1) -> tuple[Tensor, Tensor | None]:
    """Stack images of different sizes, padding each at the bottom and right with zeros.

    Args:
        images: ``(C, H_i, W_i)`` tensors, the same C and dtype.
        multiple: the padded height and width are rounded up to a multiple of this (the
            patch size or the backbone's stride).

    Returns:
        ``(B, C, H, W)`` pixels, and a ``(B, H, W)`` mask True on real pixels — None when no
        image needed padding.

    Raises:
        ValueError: no images, ``multiple`` below 1, or images that are not ``(C, H, W)``
            with one C.
    """
    if not images:
        raise ValueError("pad_images: no images")
    if multiple < 1:
        raise ValueError(f"pad_images: multiple must be at least 1, got {multiple}")
    channels = images[0].shape[0]
    if any(x.dim() != 3 or x.shape[0] != channels for x in images):
        shapes = sorted({tuple(x.shape) for x in images})
        raise ValueError(f"pad_images: expected (C, H, W) images with one C, got {shapes}")
    height = -(-max(x.shape[1] for x in images) // multiple) * multiple
    width = -(-max(x.shape[2] for x in images) // multiple) * multiple
    if all(x.shape[1:] == (height, width) for x in images):
        return torch.stack(images), None  # (B, C, H, W)
    out = images[0].new_zeros(len(images), channels, height, width)  # (B, C, H, W)
    mask = torch.zeros(len(images), height, width, dtype=torch.bool)  # (B, H, W)
    for i, x in enumerate(images):
        out[i, :, : x.shape[1], : x.shape[2]] = x
        mask[i, : x.shape[1], : x.shape[2]] = True
    return out, mask


_LEFT_RIGHT = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def swap_left_right(text: str) -> str:
    """Swap the whole words "left" and "right" in ``text``, keeping their case ("Left" →
    "Right", "LEFT" → "RIGHT", "left-hand" → "right-hand"; "leftover" stays), as a
    horizontal flip of the image requires."""
    return _LEFT_RIGHT.sub(_swapped, text)


def _swapped(match: re.Match[str]) -> str:
    word = match.group(0)
    other = "right" if word.lower() == "left" else "left"
    if word.isupper():
        return other.upper()
    return other.capitalize() if word[0].isupper() else other


def swap_left_right_ids(ids: list[int], pairs: list[tuple[int, int]]) -> list[int]:
    """Swap token ids of a tokenised caption for a flipped image.

    Args:
        ids: the caption's token ids.
        pairs: the vocabulary ids of each pair to swap, e.g. ``[(id("left"),
            id("right"))]`` (add cased or other variants as further pairs).

    Returns:
        A new list, each id of a pair replaced by the other.
    """
    swap: dict[int, int] = {}
    for a, b in pairs:
        swap[a], swap[b] = b, a
    return [swap.get(i, i) for i in ids]


class DecodedImageCache:
    """Decoded images kept in memory, least recently used evicted past a byte budget.

    What is cached is the work before any augmentation: decoding, EXIF orientation and
    RGB conversion, and for an evaluation transform (``augment`` false) the resize too, so a
    cached image goes through the same transform call with the same result.

    In a ``DataLoader`` every worker process has its own cache, budget and hits (a worker
    sees its copy of the dataset); the budget is per worker, so the memory used is up to
    ``max_bytes`` × ``num_workers``. A pickled cache (``spawn`` workers) travels empty.
    Safe to share between threads.

    Args:
        max_bytes: the most bytes of pixels kept (H × W × 3 each).
    """

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        if max_bytes < 0:
            raise ValueError(f"DecodedImageCache: max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def load(self, path: str | Path, transform: ImageTransform,
             record: str | None = None) -> Image.Image:
        """The image at ``path`` ready for ``transform`` (decoded and, for evaluation,
        resized), from memory when it was loaded before with the same settings.

        Raises:
            VlpError: the file cannot be read (see :func:`vlp.data.images.load_image`).
        """
        key = (str(path), *self._settings(transform))
        with self._lock:
            pixels = self._items.get(key)
            if pixels is not None:
                self._items.move_to_end(key)
                self.hits += 1
        if pixels is None:
            pixels = self._decode(path, transform, record)
            self._put(key, pixels)
        return Image.fromarray(pixels)

    @staticmethod
    def _settings(transform: ImageTransform) -> tuple[Any, ...]:
        if transform.augment:
            return ("decoded", transform.decode_side)
        return ("resized", transform.resize, transform.size, transform.longer_cap,
                transform.size_divisor)

    @staticmethod
    def _decode(path: str | Path, transform: ImageTransform,
                record: str | None) -> np.ndarray:
        image = transform.load(path, record)
        if transform.augment:
            pixels = np.array(image, dtype=np.uint8)  # (H, W, 3)
        else:
            chw = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)
            pixels = transform.resized(chw).permute(1, 2, 0).numpy().copy()  # (H, W, 3)
        pixels.flags.writeable = False  # shared by every hit: nobody may change it
        return pixels

    def _put(self, key: tuple[Any, ...], pixels: np.ndarray) -> None:
        with self._lock:
            self.misses += 1
            if pixels.nbytes > self.max_bytes or key in self._items:
                return
            self._items[key] = pixels
            self.nbytes += pixels.nbytes
            while self.nbytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self.nbytes -= old.nbytes

    def __getstate__(self) -> dict[str, Any]:
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        DecodedImageCache.__init__(self, state["max_bytes"])
