"""Decoded pixels for models that read images rather than region features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vlp.errors import input_error


def load_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image as RGB.

    Decoding happens here, not lazily later, so a truncated or corrupt file fails with its
    name instead of deep inside a data loader worker.

    Args:
        path: a JPEG, PNG or any other format Pillow reads.

    Raises:
        VlpError: the file is missing, not an image, truncated or corrupt.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise input_error(path, None, "image file not found") from None
    # UnidentifiedImageError and truncation are OSErrors; Pillow's plugins raise SyntaxError
    # or ValueError for some broken headers and chunks
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise input_error(path, None, f"cannot decode image ({reason})") from None


def image_to_tensor(img: Image.Image, size: int | None = None) -> torch.Tensor:
    """Convert a Pillow image to a float tensor in [0, 1].

    Args:
        img: any Pillow image; converted to RGB.
        size: if given, resize to ``size`` × ``size`` with bilinear filtering first.

    Returns:
        A ``(3, H, W)`` float32 tensor.
    """
    img = img.convert("RGB")
    if size is not None:
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.array(img, dtype=np.uint8)  # (H, W, 3); a copy, so torch may own it
    return torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255.0)  # (3, H, W)


def check_image_size(path: str | Path, image: Image.Image, width: int, height: int,
                     annotations: str | Path) -> None:
    """The decoded ``image`` must have the size its annotations give, or their boxes would
    not fit it.

    Raises:
        VlpError: naming the image, both sizes and the annotation file.
    """
    if image.size != (width, height):
        raise input_error(path, None, f"is {image.size[0]}x{image.size[1]} pixels, but "
                          f"{Path(annotations).name} gives {width}x{height}; its boxes would "
                          "not fit the image (was the image replaced or resized?)")
