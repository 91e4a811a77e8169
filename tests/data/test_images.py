"""Decoded pixels: real JPEGs load, broken files fail with their name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import COCO_IMAGES
from vlp.data.images import image_to_tensor, load_image
from vlp.errors import VlpError


def _error(path: Path) -> str:
    with pytest.raises(VlpError) as e:
        load_image(path)
    message = str(e.value)
    assert str(path) in message and "\n" not in message
    return message


def test_real_jpeg() -> None:
    path = sorted(COCO_IMAGES.glob("*.jpg"))[0]
    img = load_image(path)
    assert img.mode == "RGB" and min(img.size) > 100
    x = image_to_tensor(img, 32)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) < float(x.max()) <= 1.0


def test_grey_png_becomes_rgb_tensor(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.new("L", (5, 3), color=255).save(path)
    img = load_image(path)
    assert img.mode == "RGB"
    x = image_to_tensor(img)
    assert x.shape == (3, 3, 5) and torch.equal(x, torch.ones(3, 3, 5))


def test_tensor_layout_is_channels_first() -> None:
    img = Image.new("RGB", (4, 2), color=(255, 0, 51))
    img.putpixel((3, 1), (0, 255, 0))
    x = image_to_tensor(img)
    assert x[:, 0, 0].tolist() == pytest.approx([1.0, 0.0, 0.2])
    assert x[:, 1, 3].tolist() == [0.0, 1.0, 0.0]


def test_truncated_png(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.effect_noise((64, 64), 40).convert("RGB").save(good)
    bad = tmp_path / "world_000000000001.png"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "cannot decode image" in _error(bad)


def test_truncated_jpeg(tmp_path: Path) -> None:
    real = sorted(COCO_IMAGES.glob("*.jpg"))[0].read_bytes()
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(real[: len(real) // 3])
    assert "cannot decode image" in _error(bad)


def test_not_an_image_and_missing(tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    assert "cannot decode image" in _error(text)
    assert "image file not found" in _error(tmp_path / "absent.png")


def test_every_mode_becomes_8bit_rgb(tmp_path: Path) -> None:
    # 16-bit greyscale is scaled, not clipped at 255 (Pillow's own convert clips it)
    wide = tmp_path / "wide.png"
    Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16)).save(wide)
    assert np.asarray(load_image(wide))[0, :, 0].tolist() == [0, 128, 255]
    # palette with a transparent entry, greyscale with alpha, CMYK: colours kept, alpha dropped
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 200, 100, 50])
    palette.putpixel((1, 0), 1)
    cases = {"p.png": (palette, {"transparency": 0}),
             "la.png": (Image.new("LA", (2, 1), (200, 10)), {}),
             "cmyk.jpg": (Image.new("CMYK", (2, 1), (0, 255, 255, 0)), {"quality": 100})}
    expected = {"p.png": (200, 100, 50), "la.png": (200, 200, 200), "cmyk.jpg": (255, 0, 0)}
    for name, (img, options) in cases.items():
        img.save(tmp_path / name, **options)
        rgb = load_image(tmp_path / name)
        assert rgb.mode == "RGB"
        assert np.abs(np.asarray(rgb)[0, -1].astype(int) - expected[name]).max() <= 3, name
