"""Pixels in batches: finding image files, the pixel source, SOHO's sampling, mirrored text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlp.data.batch import IGNORE_INDEX, Batch
from vlp.data.image_files import ImageIndex
from vlp.data.pretrain import BatchPlan, PairDataset, PretrainCollator, TextPool
from vlp.data.tokenizer import Tokenizer
from vlp.data.transforms import DecodedImageCache, ImageTransform
from vlp.data.visuals import PixelSource
from vlp.errors import VlpError


def _image(path: Path, value: int, size: tuple[int, int] = (16, 16)) -> None:
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)


# 16×16 pixels in [0, 1], as they are
PLAIN = ImageTransform(size=16, resize="square", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


class Mirroring(ImageTransform):
    """Training pixels always mirrored."""

    def __call__(self, image: Image.Image, gen: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, bool]:
        pixels, _ = super().__call__(image, None)
        return pixels.flip(-1), gen is not None


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Images 1–6 (grey levels 10·id) listed in a COCO-style captions file."""
    (tmp_path / "img").mkdir()
    listed = []
    for i in range(1, 7):
        _image(tmp_path / "img" / f"photo_{i}.png", 10 * i)
        listed.append({"id": i, "file_name": f"photo_{i}.png", "width": 16, "height": 16})
    (tmp_path / "captions.json").write_text(json.dumps({"images": listed, "annotations": []}))
    return tmp_path


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    texts = ["a red circle left of a blue square", "a star right of a cross"] * 10
    return Tokenizer.train(texts, tmp_path_factory.mktemp("tok") / "vocab.txt", 130, 1)


def _source(images: Path, transform: ImageTransform = PLAIN,
            cache: DecodedImageCache | None = None) -> PixelSource:
    index = ImageIndex.from_list(images / "captions.json", images / "img")
    return PixelSource(index, transform, PLAIN, token_pixels=8, tokens_per_image=4, cache=cache)


def test_images_resolve_through_a_coco_list(images: Path) -> None:
    index = ImageIndex.from_list(images / "captions.json", images / "img")
    assert index.ids() == [1, 2, 3, 4, 5, 6]
    assert index.file(3).path == images / "img" / "photo_3.png"
    assert np.array(index.open(3))[0, 0].tolist() == [30, 30, 30]


def test_a_file_of_only_the_images_list_reads(images: Path) -> None:
    listed = json.loads((images / "captions.json").read_text())["images"]
    (images / "img" / "list.json").write_text(json.dumps(listed))
    assert ImageIndex.from_list(images / "img" / "list.json").ids() == [1, 2, 3, 4, 5, 6]


def test_a_folder_resolves_ids_from_file_names(images: Path) -> None:
    assert ImageIndex.from_folder(images / "img").file(5).path.name == "photo_5.png"
    _image(images / "img" / "other_5.png", 0)
    with pytest.raises(VlpError, match=r"photo_5.png.*gives image id 5, as other_5.png"):
        ImageIndex.from_folder(images / "img")


@pytest.mark.parametrize("damage", ["missing", "truncated", "text", "resized"])
def test_a_bad_image_is_one_line_naming_file_and_record(images: Path, damage: str) -> None:
    path = images / "img" / "photo_2.png"
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    elif damage == "text":
        path.write_text("not an image")
    else:
        _image(path, 20, (20, 16))
    index = ImageIndex.from_list(images / "captions.json", images / "img")
    with pytest.raises(VlpError) as err:
        index.open(2, "vqa train question 7")
    message = str(err.value)
    assert "\n" not in message and "photo_2.png" in message
    if damage == "resized":
        assert "20x16" in message and "16x16" in message
    else:
        assert "wanted by vqa train question 7" in message


def test_missing_files_are_found_before_any_image_is_read(images: Path) -> None:
    (images / "img" / "photo_4.png").unlink()
    (images / "img" / "photo_5.png").unlink()
    with pytest.raises(VlpError, match=r"photo_4.png: image file not found \(listed in "
                                       r"captions.json images\[3\], id 4; 2 of the 6 images of "
                                       r"vqa train are missing\)"):
        _source(images).require(range(1, 7), "vqa train")


def test_an_unlisted_image_names_the_records(images: Path) -> None:
    index = ImageIndex.from_list(images / "captions.json", images / "img")
    with pytest.raises(VlpError, match=r"captions.json: no image with id 9 \(2 images of "
                                       r"vqa val are not listed\)"):
        index.require([1, 9, 10], "vqa val")


def _text_batch(rows: int) -> Batch:
    ids = torch.ones(rows, 3, dtype=torch.long)
    return Batch(input_ids=ids, text_mask=ids.bool())


def test_pixels_batch_without_a_mask_when_sizes_agree(images: Path) -> None:
    cache = DecodedImageCache()
    source = _source(images, cache=cache)
    for _ in range(2):
        batch = _text_batch(2)
        source.collate(batch, [1, 4])
        assert batch.pixel_values is not None and batch.pixel_values.shape == (2, 3, 16, 16)
        assert batch.pixel_mask is None
        assert torch.allclose(batch.pixel_values[1], torch.full((3, 16, 16), 40 / 255))
    assert (cache.misses, cache.hits) == (2, 2)


def test_images_of_other_shapes_are_padded_with_a_mask(images: Path) -> None:
    _image(images / "img" / "photo_6.png", 60, (32, 16))  # twice as wide
    listed = json.loads((images / "captions.json").read_text())
    listed["images"][5]["width"] = 32
    (images / "captions.json").write_text(json.dumps(listed))
    shorter = ImageTransform(size=16, resize="shorter", max_size=64)
    source = PixelSource(ImageIndex.from_list(images / "captions.json", images / "img"),
                         shorter, shorter, token_pixels=8, tokens_per_image=4)
    batch = _text_batch(2)
    source.collate(batch, [1, 6])
    assert batch.pixel_values is not None and batch.pixel_values.shape == (2, 3, 16, 32)
    assert batch.pixel_mask is not None
    assert batch.pixel_mask[0, :, :16].all() and not batch.pixel_mask[0, :, 16:].any()
    assert batch.pixel_mask[1].all()
    assert (batch.pixel_values[0, :, :, 16:] == 0).all()


def _pairs(tokenizer: Tokenizer, source: PixelSource) -> PairDataset:
    """Two captions of each of images 1–6 (a red and a blue one)."""
    texts = [f"a {c} circle left of a square" for c in ("red", "blue")] * 6
    image_ids = [i for i in range(1, 7) for _ in range(2)]
    return PairDataset(image_ids, tokenizer.encode(texts, 16), source)


def test_soho_sampling_gives_each_image_two_positive_and_two_negative_texts(
        images: Path, tokenizer: Tokenizer) -> None:
    source = _source(images)
    pairs = _pairs(tokenizer, source)
    collate = PretrainCollator(tokenizer, source, mask_prob=0.5, conditional=False,
                               texts=TextPool(pairs))
    examples = [pairs[i] for i in (0, 5, 8)]
    batch = collate(examples, BatchPlan(mask_text=True, mask_image=True, pairs=True), seed=3)
    assert batch.size == 12 and batch.itm_labels is not None
    assert batch.itm_labels.tolist() == [1, 1, 0, 0] * 3
    shown = [e.image_id for e in examples for _ in range(4)]
    assert batch.pixel_values is not None
    levels = (batch.pixel_values[:, 0, 0, 0] * 255).round().long()
    assert levels.tolist() == [10 * i for i in shown]  # each image on its four rows
    # the negatives' texts are other images' captions (image_ids names the text's image)
    assert batch.image_ids is not None
    texts_of = batch.image_ids.view(3, 4)
    assert (texts_of[:, :2] == torch.tensor([1, 3, 5])[:, None]).all()
    assert (texts_of[:, 2:] != torch.tensor([1, 3, 5])[:, None]).all()
    # the two positives are the image's two captions: the red and the blue one
    red, blue = tokenizer.token_id("red"), tokenizer.token_id("blue")
    for first in (0, 4, 8):
        unmasked = [set(batch.input_ids[first + k].tolist()) | set(
            batch.mlm_labels[first + k][batch.mlm_labels[first + k] >= 0].tolist())
                    for k in (0, 1)]
        assert {red, blue} <= unmasked[0] | unmasked[1]
    # MLM and MVM score positives only
    assert batch.mlm_labels is not None and batch.vd_draw is not None
    negative = batch.itm_labels == 0
    assert not (batch.mlm_labels[negative] != IGNORE_INDEX).any()
    assert (batch.mlm_labels[~negative] != IGNORE_INDEX).any()
    # every image is masked alike, or ITM could tell negatives by their [MASK] tokens
    assert ((batch.vd_draw >= 0) & (batch.vd_draw < 1)).all()


def test_a_mirrored_image_has_left_and_right_swapped_in_its_text(
        images: Path, tokenizer: Tokenizer) -> None:
    source = _source(images, Mirroring(size=16, resize="square"))
    pairs = _pairs(tokenizer, source)
    batch = PretrainCollator(tokenizer, source)([pairs[0]], BatchPlan(), seed=0)
    left, right = tokenizer.token_id("left"), tokenizer.token_id("right")
    assert right in batch.input_ids[0].tolist() and left not in batch.input_ids[0].tolist()
    # evaluation reads the image as it is, and the text too
    batch = PretrainCollator(tokenizer, source.for_eval())([pairs[0]], BatchPlan(), seed=0)
    assert left in batch.input_ids[0].tolist()
