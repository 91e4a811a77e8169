"""The world's pseudo-detector: a store with imperfect but informative regions, built
deterministically from the train split; box and crop helpers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlp.data.features import RegionStore
from vlp.errors import VlpError
from vlp.world.detector import (
    BACKGROUND,
    background_boxes,
    box_iou,
    build_world_features,
    crop_regions,
    jitter_boxes,
    load_world_objects,
    spurious_boxes,
)

pytestmark = pytest.mark.slow  # trains the pseudo-detector

FEAT = 32


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vlp.world.make import make_world

    return make_world(tmp_path_factory.mktemp("w") / "world", 60, seed=0, size=64)


@pytest.fixture(scope="module")
def store(world: Path) -> RegionStore:
    out = build_world_features(world, feature_dim=FEAT, epochs=2, seed=0, progress=False)
    assert out == world / "features"
    return RegionStore.open(out, verify=True)


def test_store_covers_every_image(world: Path, store: RegionStore) -> None:
    doc = json.loads((world / "annotations" / "instances.json").read_text())
    assert store.image_ids.tolist() == sorted(im["id"] for im in doc["images"])
    assert store.feature_dim == FEAT
    names = {c["id"]: c["name"] for c in doc["categories"]}
    assert store.class_names == [BACKGROUND] + [names[k] for k in sorted(names)]
    assert store.num_classes == len(names) + 1


def test_regions_look_like_a_detector(world: Path, store: RegionStore) -> None:
    doc = json.loads((world / "annotations" / "instances.json").read_text())
    objects = {im["id"]: 0 for im in doc["images"]}
    for ann in doc["annotations"]:
        objects[ann["image_id"]] += 1
    for image_id, n_obj in objects.items():
        r = store.get(image_id)
        assert len(r) > n_obj  # annotated boxes plus spurious ones
        np.testing.assert_allclose(r.cls_probs.sum(1), 1.0, atol=1e-5)
        assert (np.diff(r.cls_probs[:, 0]) >= 0).all()  # most confident first
        assert (r.boxes[:, :2] >= 0).all() and (r.boxes[:, 2] <= r.width).all()
        assert (r.boxes[:, 2:] > r.boxes[:, :2]).all()
        assert np.isfinite(r.features).all() and (r.features >= 0).all()


def test_classifier_beats_chance(store: RegionStore) -> None:
    info = store.meta["info"]
    assert info["eval_split"] == "test" and info["eval_objects"] > 5
    chance = 1 / (store.num_classes - 1)
    assert info["object_accuracy"] > 2 * chance
    assert info["colour_accuracy"] > 2 / len(info["attribute_names"])
    assert "accuracy" in store.meta["source"]


def test_deterministic(world: Path, store: RegionStore, tmp_path: Path) -> None:
    # Byte-identical stores, meta.json included (no timestamps, no absolute paths); built
    # over an existing non-empty directory, which overwrite=True replaces.
    (tmp_path / "again").mkdir()
    (tmp_path / "again" / "old.txt").write_text("replaced")
    again = build_world_features(world, tmp_path / "again", feature_dim=FEAT, epochs=2,
                                 seed=0, progress=False, overwrite=True)
    names = sorted(p.name for p in again.iterdir())
    assert names == sorted(p.name for p in store.root.iterdir())
    assert names == ["boxes.npy", "cls_probs.npy", "features.npy", "index.npy", "meta.json"]
    for name in names:
        assert (again / name).read_bytes() == (store.root / name).read_bytes(), name
    assert str(tmp_path) not in (again / "meta.json").read_text()


def test_existing_output_refused_before_work(world: Path, store: RegionStore) -> None:
    before = {p.name: p.read_bytes() for p in store.root.iterdir()}
    with pytest.raises(VlpError, match="already exists and is not empty.*--overwrite"):
        build_world_features(world, feature_dim=FEAT, epochs=2, seed=0, progress=False)
    with pytest.raises(VlpError, match="the output is the input"):
        build_world_features(world, world / "images", progress=False, overwrite=True)
    with pytest.raises(VlpError, match="the output holds the input"):
        build_world_features(world, world, progress=False, overwrite=True)
    assert {p.name: p.read_bytes() for p in store.root.iterdir()} == before
    assert any((world / "images").iterdir())


def test_box_helpers() -> None:
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[50 / 150, 0.0]]))
    gen = torch.Generator().manual_seed(0)
    size = torch.tensor([64, 48])
    objects = torch.tensor([[10.0, 10.0, 30.0, 30.0], [40.0, 5.0, 60.0, 25.0]])
    moved = jitter_boxes(objects.repeat(50, 1), 0.1, size, gen)
    assert (moved[:, :2] >= 0).all() and (moved[:, 2] <= 64).all() and (moved[:, 3] <= 48).all()
    assert (moved - objects.repeat(50, 1)).abs().max() <= 2.0 + 1e-5  # 10 % of 20 px
    neg = background_boxes(objects, 20, size, gen)
    assert len(neg) > 0 and (box_iou(neg, objects) < 0.3).all()
    extra = spurious_boxes(objects, size, gen)
    assert 1 <= len(extra) <= 4


def test_crop_regions_reads_the_box() -> None:
    img = torch.zeros(1, 3, 32, 64, dtype=torch.uint8)
    img[0, 0, :, :32] = 255  # left half red, right half black
    boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0], [32.0, 0.0, 64.0, 32.0],
                          [16.0, 0.0, 48.0, 32.0]])
    crops = crop_regions(img, torch.zeros(3, dtype=torch.int64), boxes, out=8)
    assert crops.shape == (3, 3, 8, 8)
    torch.testing.assert_close(crops[0, 0], torch.ones(8, 8))
    torch.testing.assert_close(crops[1].abs().sum(), torch.tensor(0.0))
    torch.testing.assert_close(crops[2, 0, :, :4], torch.ones(8, 4))
    torch.testing.assert_close(crops[2, 0, :, 4:], torch.zeros(8, 4))


def write_hand_world(root: Path, split_of_last: str | None = "test") -> Path:
    """Three images in the world's published formats, without vlp.world's generator."""
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, anns, karpathy = [], [], []
    for i in (1, 2, 3):
        Image.new("RGB", (40, 30), (i * 20, 0, 0)).save(root / "images" / f"im_{i}.png")
        images.append({"id": i, "file_name": f"im_{i}.png", "width": 40, "height": 30})
        anns.append({"id": 10 + i, "image_id": i, "category_id": 2 + i % 2,
                     "bbox": [2.0, 3.0, 10.0, 12.0], "area": 120.0, "iscrowd": 0,
                     "attributes": {"colour": "red" if i < 3 else "blue", "size": "small"}})
        split = "train" if i < 3 else split_of_last
        if split is not None:
            karpathy.append({"cocoid": i, "filename": f"im_{i}.png", "split": split,
                             "sentences": [{"raw": "a shape", "tokens": ["a", "shape"]}]})
    cats = [{"id": 2, "name": "circle"}, {"id": 3, "name": "square"}]
    (root / "annotations" / "instances.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": cats}))
    (root / "annotations" / "dataset_world.json").write_text(json.dumps({"images": karpathy}))
    return root


def test_load_hand_made_world(tmp_path: Path) -> None:
    w = load_world_objects(write_hand_world(tmp_path / "w"))
    assert w.image_ids == [1, 2, 3] and w.splits == ["train", "train", "test"]
    assert w.images.shape == (3, 3, 30, 40) and w.sizes[0].tolist() == [40, 30]
    torch.testing.assert_close(w.boxes[0], torch.tensor([[2.0, 3.0, 12.0, 15.0]]))
    assert w.class_names == [BACKGROUND, "circle", "square"] and w.colour_names == ["blue", "red"]
    assert [int(x) for x in torch.cat(w.labels)] == [2, 1, 2]
    assert [int(x) for x in torch.cat(w.colours)] == [1, 1, 0]
    with pytest.raises(VlpError, match="image 3 of instances.json has no split"):
        load_world_objects(write_hand_world(tmp_path / "bad", split_of_last=None))


def test_image_of_another_size_than_annotated_is_one_line(world: Path, tmp_path: Path) -> None:
    """An image replaced by one of another size would misplace every annotated box."""
    import shutil

    from PIL import Image

    from vlp.world.detector import load_world_objects

    copy = tmp_path / "world"
    shutil.copytree(world, copy, ignore=shutil.ignore_patterns("features"))
    image = sorted((copy / "images").iterdir())[3]
    Image.new("RGB", (80, 64)).save(image)
    with pytest.raises(VlpError) as err:
        load_world_objects(copy)
    message = str(err.value)
    assert message.startswith(f"{image}: is 80x64 pixels, but instances.json gives 64x64")
    assert "\n" not in message
