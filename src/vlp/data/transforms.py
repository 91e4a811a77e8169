# TEMPORARY stand-in for helper H1's module (not committed)
from __future__ import annotations
from dataclasses import dataclass
from typing import Literal
import numpy as np
import torch
from PIL import Image
from torch import Tensor


@dataclass(frozen=True)
class ImageTransform:
    size: int = 384
    resize: Literal["shorter", "square"] = "square"
    max_size: int = 0
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    augment: bool = False
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    jitter: float = 0.0
    flip: Literal["none", "swap"] = "none"

    def __call__(self, image: Image.Image, gen: torch.Generator | None = None) -> tuple[Tensor, bool]:
        flipped = False
        if self.augment and gen is not None and self.flip == "swap":
            flipped = bool(torch.rand((), generator=gen) < 0.5)
            if flipped:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float() / 255
        x = (x - torch.tensor(self.mean)[:, None, None]) / torch.tensor(self.std)[:, None, None]
        return x, flipped


def pad_images(images: list[Tensor], multiple: int = 1) -> tuple[Tensor, Tensor | None]:
    h = max(i.shape[1] for i in images); w = max(i.shape[2] for i in images)
    h = -(-h // multiple) * multiple; w = -(-w // multiple) * multiple
    out = torch.zeros(len(images), images[0].shape[0], h, w)
    mask = torch.zeros(len(images), h, w, dtype=torch.bool)
    for k, i in enumerate(images):
        out[k, :, :i.shape[1], :i.shape[2]] = i
        mask[k, :i.shape[1], :i.shape[2]] = True
    return out, (None if bool(mask.all()) else mask)


def swap_left_right_ids(ids: list[int], pairs: list[tuple[int, int]]) -> list[int]:
    m = {}
    for a, b in pairs:
        m[a] = b; m[b] = a
    return [m.get(t, t) for t in ids]


class DecodedImageCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
