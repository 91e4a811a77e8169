"""The pixel pipeline: upright RGB decoding, exact resize sizes, normalisation, seeded
augmentation, flips mirrored in the text, padding with a mask, the decoded-image cache and
one-line errors for every unreadable image."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import COCO_IMAGES
from vlp.config import FieldError
from vlp.data.images import load_image
from vlp.data.transforms import (
    DecodedImageCache,
    ImageTransform,
    _jitter,
    pad_images,
    swap_left_right,
    swap_left_right_ids,
)
from vlp.errors import VlpError

RAW = ImageTransform(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # pixels in [0, 1]


def _coco() -> list[Path]:
    paths = sorted(COCO_IMAGES.glob("*.jpg"))
    assert len(paths) == 6, f"expected the six COCO photos in {COCO_IMAGES}"
    return paths


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _gradient(side: int) -> Image.Image:
    """Red is the column, green the row: a pixel says where it came from."""
    x = np.arange(side, dtype=np.uint8)
    pixels = np.stack([np.tile(x, (side, 1)), np.tile(x[:, None], (1, side)),
                       np.zeros((side, side), np.uint8)], axis=-1)  # (H, W, 3)
    return Image.fromarray(pixels)


# --- decoding -----------------------------------------------------------------------------

@pytest.mark.parametrize(("orientation", "top", "bottom"), [
    (6, (255, 0, 0), (0, 0, 255)),  # stored sideways, shown turned 90° clockwise
    (8, (0, 0, 255), (255, 0, 0)),  # turned 90° anticlockwise
])
def test_exif_rotated_jpeg_comes_out_upright(tmp_path: Path, orientation: int,
                                             top: tuple[int, ...],
                                             bottom: tuple[int, ...]) -> None:
    stored = Image.new("RGB", (40, 20), (255, 0, 0))  # wide: red left half, blue right
    stored.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[274] = orientation
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (20, 40)  # tall, as the camera was held
    pixels = np.asarray(img).astype(int)
    assert np.abs(pixels[5, 10] - top).max() < 10
    assert np.abs(pixels[35, 10] - bottom).max() < 10
    x, _ = RAW(img)
    assert x.shape == (3, 639, 320)  # the upright image's shorter side is its width


def test_exif_upside_down(tmp_path: Path) -> None:
    stored = Image.new("RGB", (30, 30), (0, 255, 0))
    stored.paste((255, 255, 255), (0, 0, 30, 10))  # white band at the top as stored
    exif = Image.Exif()
    exif[274] = 3
    path = tmp_path / "flipped.jpg"
    stored.save(path, exif=exif, quality=95)
    pixels = np.asarray(load_image(path)).astype(int)
    assert pixels[25, 15].min() > 240 and pixels[2, 15][0] < 20  # white band now at the bottom


def _error(path: Path, record: str | None = None) -> str:
    with pytest.raises(VlpError) as e:
        load_image(path, record)
    message = str(e.value)
    assert str(path) in message and "\n" not in message
    if record is not None:
        assert message.endswith(f"(wanted by {record})")
    return message


@pytest.mark.parametrize("record", [None, "captions.json: image 42"])
def test_every_unreadable_image_is_one_line_naming_file_and_record(
        tmp_path: Path, record: str | None) -> None:
    assert "image file not found" in _error(tmp_path / "absent.jpg", record)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert "cannot decode image" in _error(empty, record)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image\nat all")
    assert "cannot decode image" in _error(text, record)
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    assert "is a directory" in _error(folder, record)
    good = tmp_path / "good.jpg"
    _noise(64, 48).save(good, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    assert "cannot decode image" in _error(cut, record)


def test_transform_and_cache_loads_name_the_record(tmp_path: Path) -> None:
    missing = tmp_path / "gone.jpg"
    for load in (lambda: RAW.load(missing, "vqa.json: question 7"),
                 lambda: DecodedImageCache().load(missing, RAW, "vqa.json: question 7")):
        with pytest.raises(VlpError, match=r"gone\.jpg: image file not found \(wanted by "
                                           r"vqa\.json: question 7\)$"):
            load()


# --- resizing and normalisation ------------------------------------------------------------

@pytest.mark.parametrize(("size", "expected"), [
    ((640, 480), (512, 384)),  # landscape: shorter side to 384
    ((480, 640), (384, 512)),  # portrait
    ((300, 300), (384, 384)),  # square, upsampled
    ((1000, 200), (639, 128)),  # panorama: the longer side is capped at 639
    ((200, 1000), (128, 639)),
    ((640, 427), (576, 384)),  # COCO's most common size: 640 * 384 / 427 = 575.6 → 576
])
def test_shorter_side_sizes(size: tuple[int, int], expected: tuple[int, int]) -> None:
    transform = ImageTransform(size=384)
    assert transform.longer_cap == 639  # int(384 * 1333 / 800), as ViLT and HF
    assert transform.output_size(*size) == expected
    x, flipped = transform(_noise(*size))
    assert x.shape == (3, expected[1], expected[0]) and x.dtype == torch.float32
    assert not flipped and x.is_contiguous()


def test_square_and_explicit_max_size() -> None:
    assert ImageTransform(size=224, resize="square")(_noise(640, 427))[0].shape == (3, 224, 224)
    capped = ImageTransform(size=100, max_size=150)
    assert capped(_noise(400, 200))[0].shape == (3, 75, 150)
    assert capped(_noise(300, 200))[0].shape == (3, 100, 150)


def test_normalisation_by_hand() -> None:
    img = Image.new("RGB", (2, 2), (255, 0, 51))
    img.putpixel((1, 0), (0, 255, 102))
    transform = ImageTransform(size=2, resize="square", mean=(0.5, 0.4, 0.3),
                               std=(0.5, 0.2, 0.1))
    x, _ = transform(img)  # already 2 × 2: no resampling
    assert x.shape == (3, 2, 2)
    assert x[:, 0, 0].tolist() == pytest.approx([(1 - 0.5) / 0.5, (0 - 0.4) / 0.2,
                                                 (0.2 - 0.3) / 0.1], abs=1e-6)
    assert x[:, 0, 1].tolist() == pytest.approx([(0 - 0.5) / 0.5, (1 - 0.4) / 0.2,
                                                 (0.4 - 0.3) / 0.1], abs=1e-6)


def test_resize_matches_pillow_bicubic() -> None:
    img = _noise(97, 61)
    x, _ = ImageTransform(size=40, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))(img)
    pil = np.asarray(img.resize((64, 40), Image.Resampling.BICUBIC)).astype(np.float32) / 255
    assert x.shape == (3, 40, 64)
    assert float((x - torch.from_numpy(pil).permute(2, 0, 1)).abs().max()) <= 1.5 / 255


def test_any_mode_is_made_rgb() -> None:
    grey = Image.new("L", (8, 8), 128)
    x, _ = RAW(grey.convert("P"))
    assert x.shape == (3, 384, 384) and torch.allclose(x, torch.full_like(x, 128 / 255))


# --- augmentation -----------------------------------------------------------------------------

AUGMENT = ImageTransform(size=64, augment=True, jitter=0.4, flip="swap")


def test_same_seed_same_pixels_different_seed_different() -> None:
    img = _noise(120, 90)
    a, fa = AUGMENT(img, torch.Generator().manual_seed(7))
    b, fb = AUGMENT(img, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and fa == fb
    c, _ = AUGMENT(img, torch.Generator().manual_seed(8))
    assert a.shape != c.shape or not torch.equal(a, c)


def test_evaluation_is_deterministic() -> None:
    img = _noise(120, 90)
    plain = ImageTransform(size=64)
    expected, _ = plain(img)
    assert torch.equal(AUGMENT(img)[0], expected)  # no generator: no augmentation
    assert torch.equal(plain(img, torch.Generator().manual_seed(1))[0], expected)


def test_random_resized_crop_stays_within_scale_and_ratio() -> None:
    transform = ImageTransform(size=40, resize="square", augment=True, crop_scale=(0.3, 0.6),
                               crop_ratio=(0.5, 2.0), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    side = 200
    img = _gradient(side)
    for seed in range(30):
        left, top, right, bottom = transform.crop_box(side, side,
                                                      torch.Generator().manual_seed(seed))
        w, h = right - left, bottom - top
        assert 0 <= left < right <= side and 0 <= top < bottom <= side
        assert 0.3 - 0.02 <= w * h / side**2 <= 0.6 + 0.02
        assert 0.5 * 0.95 <= w / h <= 2.0 * 1.05
        # the pixels come from that box: red counts columns, green rows
        x, _ = transform(img, torch.Generator().manual_seed(seed))
        cols, rows = x[0] * 255, x[1] * 255
        assert left - 1 <= float(cols.min()) <= left + w / 20 + 2
        assert right - w / 20 - 3 <= float(cols.max()) <= right
        assert top - 1 <= float(rows.min()) <= top + h / 20 + 2
        assert bottom - h / 20 - 3 <= float(rows.max()) <= bottom
        seen = (float(cols.max() - cols.min()) + 1) * (float(rows.max() - rows.min()) + 1)
        assert 0.3 * 0.85 <= seen / side**2 <= 0.6 * 1.02


def test_crop_falls_back_to_a_centre_crop() -> None:
    # a 1000 × 10 strip has no square crop of 90 % of its area: ten draws fail
    transform = ImageTransform(augment=True, crop_scale=(0.9, 1.0), crop_ratio=(1.0, 1.0))
    assert transform.crop_box(1000, 10, torch.Generator().manual_seed(0)) == (495, 0, 505, 10)
    wide = ImageTransform(augment=True, crop_scale=(0.9, 1.0), crop_ratio=(1.0, 2.0))
    assert wide.crop_box(10, 1000, torch.Generator().manual_seed(0)) == (0, 495, 10, 505)


def test_flip_flag_means_mirrored_pixels() -> None:
    img = _noise(16, 12)
    # the crop is the whole image and no resampling happens, so only the flip can differ
    flipping = ImageTransform(size=12, max_size=16, augment=True, crop_scale=(1.0, 1.0),
                              crop_ratio=(16 / 12, 16 / 12), flip="swap")
    upright, _ = ImageTransform(size=12, max_size=16)(img)
    flags = []
    for seed in range(20):
        x, flipped = flipping(img, torch.Generator().manual_seed(seed))
        assert torch.equal(x, upright.flip(-1) if flipped else upright)
        flags.append(flipped)
    assert any(flags) and not all(flags)
    never = ImageTransform(size=12, max_size=16, augment=True, crop_scale=(1.0, 1.0),
                           crop_ratio=(16 / 12, 16 / 12))
    assert not any(never(img, torch.Generator().manual_seed(s))[1] for s in range(20))


def test_jitter() -> None:
    x = torch.from_numpy(np.asarray(_noise(8, 6)).astype(np.float32)).permute(2, 0, 1)
    assert torch.allclose(_jitter(x.clone(), 1.0, 1.0, 1.0), x)
    grey = _jitter(x.clone(), 1.0, 1.0, 0.0)  # no saturation: R = G = B
    assert torch.allclose(grey[0], grey[1], atol=1e-3) and torch.allclose(grey[1], grey[2],
                                                                          atol=1e-3)
    flat = _jitter(x.clone(), 1.0, 0.0, 1.0)  # no contrast: one grey everywhere
    assert float(flat.std()) < 1e-3
    bright = _jitter(x.clone(), 2.0, 1.0, 1.0)
    assert torch.equal(bright, (2 * x).clamp(0, 255))
    # the transform's jitter changes colours, not the image's layout
    img = _noise(64, 64)
    base = ImageTransform(size=64, augment=True, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    jittered = ImageTransform(size=64, augment=True, crop_scale=(1.0, 1.0),
                              crop_ratio=(1.0, 1.0), jitter=0.5)
    a, _ = base(img, torch.Generator().manual_seed(0))
    b, _ = jittered(img, torch.Generator().manual_seed(0))
    assert a.shape == b.shape and not torch.equal(a, b)
    # factors drawn on both sides of 1: some images come out brighter, some darker
    shifts = [float(jittered(img, torch.Generator().manual_seed(s))[0].mean() - a.mean())
              for s in range(12)]
    assert min(shifts) < -0.05 and max(shifts) > 0.05


# --- text side of a flip ---------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("a dog on the left of a car", "a dog on the right of a car"),
    ("Left of the Right door", "Right of the Left door"),
    ("TURN LEFT", "TURN RIGHT"),
    ("his left-hand glove, right?", "his right-hand glove, left?"),
    ("the left's and the right.", "the right's and the left."),
    ("leftover bright rightly cleft", "leftover bright rightly cleft"),  # whole words only
    ("", ""),
])
def test_swap_left_right(text: str, expected: str) -> None:
    assert swap_left_right(text) == expected
    assert swap_left_right(expected) == text


def test_swap_left_right_ids() -> None:
    ids = [101, 5, 2187, 9, 2157, 2187, 102]
    assert swap_left_right_ids(ids, [(2187, 2157)]) == [101, 5, 2157, 9, 2187, 2157, 102]
    assert ids == [101, 5, 2187, 9, 2157, 2187, 102]  # a new list
    assert swap_left_right_ids(ids, []) == ids


# --- batching --------------------------------------------------------------------------------

def test_pad_images_shapes_zeros_and_mask() -> None:
    a, b = torch.rand(3, 5, 7) + 1, torch.rand(3, 6, 4) + 1  # no real pixel is zero
    pixels, mask = pad_images([a, b], multiple=4)
    assert pixels.shape == (2, 3, 8, 8) and mask is not None and mask.shape == (2, 8, 8)
    assert torch.equal(pixels[0, :, :5, :7], a) and torch.equal(pixels[1, :, :6, :4], b)
    assert torch.equal(mask, pixels[:, 0] != 0)  # True exactly on real pixels
    assert int(mask[0].sum()) == 35 and int(mask[1].sum()) == 24
    assert float(pixels[0, :, 5:].abs().sum()) == 0 and float(pixels[1, :, :, 4:].abs().sum()) == 0


def test_pad_images_needs_no_mask_for_equal_sizes() -> None:
    images = [torch.rand(3, 8, 12) for _ in range(3)]
    pixels, mask = pad_images(images)
    assert mask is None and torch.equal(pixels, torch.stack(images))
    assert pad_images(images, multiple=4)[1] is None
    padded, mask = pad_images(images, multiple=32)  # equal, but not a multiple of 32
    assert padded.shape == (3, 3, 32, 32) and mask is not None and int(mask.sum()) == 3 * 96


def test_pad_images_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no images"):
        pad_images([])
    with pytest.raises(ValueError, match="one C"):
        pad_images([torch.rand(3, 4, 4), torch.rand(1, 4, 4)])
    with pytest.raises(ValueError, match="multiple"):
        pad_images([torch.rand(3, 4, 4)], multiple=0)


# --- the decoded-image cache -----------------------------------------------------------------

def _write(tmp_path: Path, name: str, size: tuple[int, int], seed: int) -> Path:
    path = tmp_path / name
    _noise(*size, seed=seed).save(path)
    return path


def test_cache_hits_give_the_same_pixels(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.png", (50, 30), 0)
    cache = DecodedImageCache()
    for transform in (ImageTransform(size=16), ImageTransform(size=16, resize="square"),
                      ImageTransform(size=16, augment=True, jitter=0.3, flip="swap"),
                      ImageTransform(size=16, size_divisor=8)):
        first = np.asarray(cache.load(path, transform))
        second = np.asarray(cache.load(path, transform))
        assert np.array_equal(first, second)
        # a cached image gives exactly what the uncached pipeline gives
        gen = torch.Generator().manual_seed(3) if transform.augment else None
        cached = transform(cache.load(path, transform), gen)
        gen = torch.Generator().manual_seed(3) if transform.augment else None
        direct = transform(load_image(path), gen)
        assert torch.equal(cached[0], direct[0]) and cached[1] == direct[1]
    assert (cache.hits, cache.misses, len(cache)) == (8, 4, 4)
    # evaluation caches the resized image, augmentation the whole decoded one
    assert cache.load(path, ImageTransform(size=16)).size == (26, 16)
    assert cache.load(path, ImageTransform(size=16, augment=True)).size == (50, 30)


def test_cache_evicts_least_recently_used_past_its_budget(tmp_path: Path) -> None:
    square = ImageTransform(size=10, resize="square")  # cached at 10 × 10 × 3 = 300 bytes
    a, b, c, d = (_write(tmp_path, f"{n}.png", (40, 40), i) for i, n in enumerate("abcd"))
    cache = DecodedImageCache(max_bytes=700)
    for path in (a, b, c):
        cache.load(path, square)
    assert len(cache) == 2 and cache.nbytes == 600  # a went
    cache.load(b, square)  # b is now the most recent
    cache.load(d, square)  # so c goes
    hits = cache.hits
    cache.load(b, square)
    cache.load(d, square)
    assert cache.hits == hits + 2
    cache.load(c, square)
    assert cache.hits == hits + 2 and cache.nbytes <= 700
    big = DecodedImageCache(max_bytes=299)  # no image fits: nothing kept, still served
    assert big.load(a, square).size == (10, 10) and len(big) == 0 and big.nbytes == 0


def test_cache_travels_empty_to_workers(tmp_path: Path) -> None:
    cache = DecodedImageCache(max_bytes=10_000)
    cache.load(_write(tmp_path, "a.png", (20, 20), 0), ImageTransform(size=8))
    copy = pickle.loads(pickle.dumps(cache))
    assert len(copy) == 0 and copy.nbytes == 0 and copy.max_bytes == 10_000
    assert len(cache) == 1


# --- configuration ---------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "key"), [
    ({"size": 0}, "data.size"),
    ({"max_size": 100}, "data.max_size"),  # below the default size 384
    ({"std": (0.2, 0.0, 0.2)}, "data.std[1]"),
    ({"mean": (0.5, 0.5)}, "data.mean"),
    ({"mean": (0.5, math.nan, 0.5)}, "data.mean[1]"),
    ({"crop_scale": (0.8, 0.5)}, "data.crop_scale"),
    ({"crop_scale": (0.0, 0.5)}, "data.crop_scale[0]"),
    ({"crop_ratio": (2.0, 1.0)}, "data.crop_ratio"),
    ({"jitter": 1.5}, "data.jitter"),
    ({"resize": "longer"}, "data.resize"),
    ({"flip": "always"}, "data.flip"),
])
def test_bad_settings_name_their_field(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(FieldError) as e:
        ImageTransform(**kwargs)  # type: ignore[arg-type]
    assert e.value.key == key and str(e.value).startswith(f"field '{key}'")


def test_decode_side() -> None:
    assert ImageTransform(size=384).decode_side == 384
    assert ImageTransform(size=224, augment=True, crop_scale=(0.25, 1.0)).decode_side == 448


# --- real photos -----------------------------------------------------------------------------

def test_real_coco_photos_through_the_pipeline() -> None:
    paths = _coco()
    evaluation = ImageTransform(size=384)
    training = ImageTransform(size=384, augment=True, jitter=0.4, flip="swap")
    cache = DecodedImageCache()
    gen = torch.Generator().manual_seed(0)
    images = []
    for i, path in enumerate(paths):
        x, flipped = evaluation(evaluation.load(path, f"coco: image {i}"))
        h, w = x.shape[1:]
        assert not flipped and (min(h, w) == 384 or max(h, w) == 639) and max(h, w) <= 639
        assert torch.isfinite(x).all() and -2.2 < float(x.min()) < float(x.max()) < 2.7
        assert torch.equal(evaluation(cache.load(path, evaluation))[0], x)
        y, _ = training(cache.load(path, training), gen)
        assert max(y.shape[1:]) <= 639 and torch.isfinite(y).all()
        images.append(x)
    pixels, mask = pad_images(images, multiple=32)
    assert pixels.shape[0] == len(paths) and pixels.shape[2] % 32 == pixels.shape[3] % 32 == 0
    assert mask is not None and int(mask.sum()) == sum(x.shape[1] * x.shape[2] for x in images)


def test_vilts_resize_matches_hugging_faces_processor() -> None:
    """With ViLT's settings (384, longer side int(384 × 1333 / 800) = 639, sides rounded
    down to whole 32-pixel patches) every photo and odd shape comes out at the size
    ``ViltImageProcessor`` gives, with pixels within a level or two of its Pillow bicubic."""
    transformers = pytest.importorskip("transformers")
    processor = transformers.ViltImageProcessorPil(
        size={"shortest_edge": 384}, size_divisor=32, image_mean=[0.5] * 3,
        image_std=[0.5] * 3)
    ours = ImageTransform(size=384, size_divisor=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    photos = [Image.open(p).convert("RGB") for p in _coco()]
    shapes = [_noise(*wh) for wh in ((1000, 200), (200, 1000), (641, 479), (333, 500))]
    for img, photo in [(i, True) for i in photos] + [(i, False) for i in shapes]:
        want = processor(img, return_tensors="pt")["pixel_values"][0]  # (3, H, W)
        got, _ = ours(img)
        assert got.shape == want.shape, img.size
        assert got.shape[1] % 32 == got.shape[2] % 32 == 0
        if photo:  # (noise, all edges, is where two bicubic kernels differ most)
            # two levels of 255 on a [-1, 1] scale at most; almost every pixel equal
            assert float((got - want).abs().max()) <= 4 / 255 + 1e-6
            assert float((got - want).abs().mean()) < 1e-4
    # the photo whose longer side is capped: 640 × 310 → 639 × 310 → 608 × 288
    assert ours.output_size(640, 310) == (608, 288)


def test_size_divisor_never_rounds_a_side_to_nothing() -> None:
    transform = ImageTransform(size=64, size_divisor=32)
    assert transform.output_size(400, 30) == (96, 32)  # 106 × 8 capped: 106 → 96, 8 → 32
    for bad in ({"size": 380}, {"size": 16}, {"size": 384, "resize": "square"}):
        with pytest.raises(FieldError, match="data.size_divisor"):
            ImageTransform(size_divisor=32, **bad)  # type: ignore[arg-type]
