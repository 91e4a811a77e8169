"""Decoded pixels for models that read images rather than region features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from vlp.errors import input_error

# modes Pillow converts to RGB wrongly or not at all: 16- and 32-bit integer and float
# greyscale (``convert("RGB")`` clips them at 255 instead of scaling)
_WIDE_GREY = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")


def load_image(path: str | Path, record: str | None = None, *,
               draft_side: int = 0) -> Image.Image:
    """Open and fully decode an image as upright RGB.

    Decoding happens here, not lazily later, so a truncated or corrupt file fails with its
    name instead of deep inside a data loader worker. The EXIF orientation tag is applied
    (phone photos are stored sideways with a tag saying so), then any mode (palette,
    greyscale with alpha, CMYK, 16-bit) becomes 8-bit RGB; an alpha channel is dropped.

    Args:
        path: a JPEG, PNG or any other format Pillow reads.
        record: the record that wanted the image (e.g. ``captions.json: image 42``), named
            in the error message.
        draft_side: > 0 lets a JPEG decode at 1/2, 1/4 or 1/8 scale as long as both sides
            stay at least this many pixels (much faster on large photos); 0 decodes at full
            size.

    Raises:
        VlpError: the file is missing, not an image, truncated or corrupt.
    """
    path = Path(path)
    wanted = f" (wanted by {record})" if record else ""
    try:
        with Image.open(path) as img:
            if draft_side > 0 and img.format == "JPEG":
                img.draft("RGB", (draft_side, draft_side))
            img.load()
            return to_rgb(ImageOps.exif_transpose(img))
    except FileNotFoundError:
        raise input_error(path, None, f"image file not found{wanted}") from None
    except IsADirectoryError:
        raise input_error(path, None, f"is a directory, not an image file{wanted}") from None
    # UnidentifiedImageError and truncation are OSErrors; Pillow's plugins raise SyntaxError
    # or ValueError for some broken headers and chunks
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise input_error(path, None, f"cannot decode image ({reason}){wanted}") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB: palette (with or without transparency), greyscale with alpha,
    CMYK and 16-bit greyscale included; alpha is dropped. An RGB image is returned as is."""
    if img.mode == "RGB":
        return img
    if img.mode in _WIDE_GREY:
        grey = np.asarray(img, dtype=np.float64)
        if img.mode == "F":  # floats: [0, 1] if they fit, else the 16-bit range
            top = 1.0 if grey.size == 0 or float(grey.max()) <= 1.0 else 65535.0
        else:  # 8-bit values stored wide stay as they are; anything above is 16-bit
            top = 255.0 if grey.size == 0 or float(grey.max()) <= 255 else 65535.0
        grey8 = np.clip(np.rint(grey * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey8).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # Pillow warns when palette transparency meets RGB
    return img.convert("RGB")


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
