"""vlp features extract: selective search proposals, a CNN, RoIAlign → a region store."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch import Tensor, nn

from vlp.convert.extract import (
    ExtractOptions,
    RegionExtractor,
    extract_regions,
    load_pretrained,
    propose_boxes,
    read_image_list,
    select_regions,
)
from vlp.data.features import RegionStore, verify_store
from vlp.errors import VlpError
from vlp.layers.backbones import Backbone
from vlp.train.cli import main

CLASSES = ("circle", "square", "bar", "dot", "sky")
SMALL = ExtractOptions(image_side=48, max_image_side=64, proposal_side=64, shard_size=1,
                       dtype="float32")


class TinyBackbone(Backbone):
    """Stride 4, 8 channels, a 5-class linear classifier; raises KeyboardInterrupt after
    ``interrupt_after`` forwards (a user pressing Ctrl-C) when that is set."""

    out_channels, stride, num_classes, class_names = 8, 4, len(CLASSES), CLASSES

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 4, stride=4)
        self.head = nn.Linear(8, len(CLASSES))
        self.forwards = 0
        self.interrupt_after: int | None = None

    def forward(self, pixels: Tensor) -> Tensor:
        if self.interrupt_after is not None and self.forwards >= self.interrupt_after:
            raise KeyboardInterrupt
        self.forwards += 1
        out: Tensor = torch.relu(self.conv(pixels))  # (B, 8, H/4, W/4)
        return out

    def classify(self, pooled: Tensor) -> Tensor:
        out: Tensor = self.head(pooled)
        return out


def _draw(path: Path, seed: int, size: tuple[int, int] = (64, 48)) -> None:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = int(rng.integers(0, size[0] - 16)), int(rng.integers(0, size[1] - 12))
        w, h = int(rng.integers(8, 24)), int(rng.integers(6, 18))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            draw.ellipse([x, y, x + w, y + h], fill=colour)
        else:
            draw.rectangle([x, y, x + w, y + h], fill=colour)
    image.save(path)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A COCO captions file for three drawn 64×48 images (ids 7, 3, 11)."""
    (tmp_path / "img").mkdir()
    listed = []
    for seed, image_id in enumerate((7, 3, 11)):
        name = f"img/{image_id:06d}.png"
        _draw(tmp_path / name, seed)
        listed.append({"id": image_id, "file_name": name, "width": 64, "height": 48})
    doc = {"images": listed, "annotations": [{"id": 1, "image_id": 7, "caption": "shapes"}]}
    path = tmp_path / "captions.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _tree(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def test_extracted_store_opens_and_holds_sane_regions(images: Path, tmp_path: Path) -> None:
    out = extract_regions(images, tmp_path / "feats", TinyBackbone(), options=SMALL,
                          progress=False)
    store = RegionStore.open(out, verify=True)
    assert sorted(store.image_ids.tolist()) == [3, 7, 11]
    assert store.feature_dim == 8 and store.num_classes == 5
    assert store.class_names == list(CLASSES)
    assert not (tmp_path / "feats.partial").exists()
    for image_id in (3, 7, 11):
        r = store.get(image_id)
        assert (r.width, r.height) == (64, 48)
        assert 10 <= len(r) <= 100
        assert (r.boxes[:, :2] >= 0).all() and (r.boxes[:, 2] <= 64).all() \
            and (r.boxes[:, 3] <= 48).all() and (r.boxes[:, 2:] > r.boxes[:, :2]).all()
        np.testing.assert_allclose(r.cls_probs.sum(1), 1.0, atol=1e-5)
        assert (r.features >= 0).all()  # pooled after the backbone's ReLU


def test_selection_follows_the_bottom_up_attention_rule() -> None:
    # 30 disjoint boxes: no NMS; the scores decide how many are kept
    x = torch.arange(30, dtype=torch.float32) * 10
    boxes = torch.stack([x, torch.zeros(30), x + 5, torch.full((30,), 5.0)], 1)
    scores = 0.9 - 0.03 * torch.arange(30.0)  # 0.90, 0.87, …
    opts = ExtractOptions(min_boxes=10, max_boxes=20, threshold=0.7)
    assert len(select_regions(boxes, scores, opts)) == 10  # 7 confident, topped up to 10
    middle = ExtractOptions(min_boxes=10, max_boxes=20, threshold=0.5)
    assert len(select_regions(boxes, scores, middle)) == 14  # 0.90 … 0.51
    many = ExtractOptions(min_boxes=10, max_boxes=20, threshold=0.0)
    assert select_regions(boxes, scores, many).tolist() == list(range(20))
    few = ExtractOptions(min_boxes=40, max_boxes=100)
    assert len(select_regions(boxes, scores, few)) == 30  # fewer proposals than min_boxes
    # a duplicate of the best box is suppressed, then used only to top up, last
    dup = torch.cat([boxes[:3], boxes[:1]])
    kept = select_regions(dup, torch.tensor([0.9, 0.5, 0.4, 0.8]), opts)
    assert kept.tolist() == [0, 1, 2, 3]


def test_proposals_are_deterministic_and_inside_the_image(tmp_path: Path) -> None:
    _draw(tmp_path / "a.png", 0, size=(160, 120))
    pixels = np.asarray(Image.open(tmp_path / "a.png").convert("RGB"))
    opts = ExtractOptions(proposal_side=80)
    first, second = propose_boxes(pixels, opts), propose_boxes(pixels, opts)
    assert len(first) > 0 and np.array_equal(first, second)
    assert (first >= 0).all() and (first[:, [0, 2]] <= 160).all() \
        and (first[:, [1, 3]] <= 120).all()
    assert ((first[:, 2:] - first[:, :2]) >= 0.02 * 120).all()
    assert len(propose_boxes(pixels, ExtractOptions(max_proposals=5))) == 5


def test_a_resumed_run_gives_the_same_bytes(images: Path, tmp_path: Path) -> None:
    plain = extract_regions(images, tmp_path / "plain", TinyBackbone(), options=SMALL,
                            progress=False)
    backbone = TinyBackbone()
    backbone.interrupt_after = 2
    with pytest.raises(KeyboardInterrupt):
        extract_regions(images, tmp_path / "cut", backbone, options=SMALL, progress=False)
    partial = tmp_path / "cut.partial"
    assert sorted(p.name for p in partial.iterdir()) == \
        ["manifest.json", "shard-00000", "shard-00001"]
    assert not (tmp_path / "cut").exists()
    with pytest.raises(VlpError, match="pass --resume to continue"):
        extract_regions(images, tmp_path / "cut", TinyBackbone(), options=SMALL,
                        progress=False)
    with pytest.raises(VlpError, match=r"field 'options'.*--overwrite to start over"):
        extract_regions(images, tmp_path / "cut", TinyBackbone(), resume=True,
                        options=ExtractOptions(shard_size=1, max_boxes=50), progress=False)
    backbone.interrupt_after = None
    backbone.forwards = 0
    out = extract_regions(images, tmp_path / "cut", backbone, options=SMALL, resume=True,
                          progress=False)
    assert backbone.forwards == 1  # only the unfinished shard was computed
    assert _tree(out) == _tree(plain)
    assert not partial.exists()
    assert verify_store(out) == []


def test_overwrite_starts_an_interrupted_run_over_but_spares_foreign_files(
        images: Path, tmp_path: Path) -> None:
    partial = tmp_path / "feats.partial"
    partial.mkdir()
    (partial / "notes.txt").write_text("mine")
    with pytest.raises(VlpError, match=r"not an interrupted extraction \(it holds notes.txt"):
        extract_regions(images, tmp_path / "feats", TinyBackbone(), options=SMALL,
                        overwrite=True, progress=False)
    assert (partial / "notes.txt").read_text() == "mine"
    (tmp_path / "feats").mkdir()
    (tmp_path / "feats" / "x").write_text("old")
    with pytest.raises(VlpError, match="already exists and is not empty"):
        extract_regions(images, tmp_path / "feats", TinyBackbone(), options=SMALL,
                        progress=False)


def _one_line(err: pytest.ExceptionInfo[VlpError]) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def _write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "list.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_bad_lists_are_one_line_naming_file_and_record(tmp_path: Path) -> None:
    cases = [({"annotations": []}, "list.json: field 'images': missing"),
             ({"images": []}, "field 'images': empty"),
             ("a string", "expected a COCO-style images list"),
             ({"images": [{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.png"}]},
              "field 'images[1].id': duplicate image id 1 (also images[0])"),
             ([{"id": "x", "file_name": "a.png"}], "field '[0].id': expected an integer"),
             ([{"id": 1, "file_name": "a.png", "width": 0}], "field '[0].width'")]
    for doc, expected in cases:
        with pytest.raises(VlpError) as err:
            read_image_list(_write(tmp_path, doc))
        assert expected in _one_line(err)


def test_bad_images_are_one_line_naming_file_and_record(images: Path, tmp_path: Path) -> None:
    doc = json.loads(images.read_text())
    broken = tmp_path / "img" / "000003.png"
    cases = []
    missing = [dict(doc["images"][0], file_name="img/gone.png")]
    cases.append((missing, "gone.png: image file not found (listed in list.json [0], id 7; "
                           "1 of the 1 images of list.json are missing)"))
    resized = [dict(doc["images"][0], width=65)]
    cases.append((resized, "is 64x48 pixels, but list.json gives 65x48"))
    broken.write_bytes(b"not a png at all")
    cases.append(([doc["images"][1]], "000003.png: cannot decode image"))
    for listed, expected in cases:
        with pytest.raises(VlpError) as err:
            extract_regions(_write(tmp_path, listed), tmp_path / "out", TinyBackbone(),
                            options=SMALL, progress=False, overwrite=True)
        text = _one_line(err)
        assert expected in text and "list.json [0], id" in text  # the record that wanted it


def test_refusals_before_any_work(images: Path, tmp_path: Path) -> None:
    class NoClassifier(TinyBackbone):
        num_classes = 0

    with pytest.raises(VlpError, match="has no classifier"):
        RegionExtractor(NoClassifier(), (0.5,) * 3, (0.5,) * 3, SMALL)
    with pytest.raises(VlpError, match="--min-boxes"):
        ExtractOptions(min_boxes=20, max_boxes=10).check()
    with pytest.raises(VlpError, match="the output is the input"):
        extract_regions(images, tmp_path / "img", TinyBackbone(), options=SMALL,
                        overwrite=True, progress=False)
    with pytest.raises(VlpError, match="no pretrained backbone 'nope'"):
        load_pretrained("nope")


def test_cli_extract(images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str]) -> None:
    from vlp.convert import extract

    monkeypatch.setitem(extract.PRETRAINED, "tiny",
                        lambda: extract.Pretrained(TinyBackbone(), (0.5,) * 3, (0.5,) * 3))
    args = ["features", "extract", str(images), str(tmp_path / "f"), "--backbone", "tiny",
            "--image-side", "48", "--proposal-side", "64", "--max-boxes", "12",
            "--min-boxes", "10"]
    assert main(args) == 0
    store = RegionStore.open(tmp_path / "f")
    assert all(10 <= store.num_regions(i) <= 12 for i in (3, 7, 11))
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args[:4], "--backbone", "nope"]) == 2
    assert "error: --backbone: no pretrained backbone 'nope'" in capsys.readouterr().err


# --------------------------------------------------------------------------- a detector


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random YOLOS (pure transformer: no timm backbone) and its image processor,
    saved as a Hugging Face object-detection directory."""
    transformers = pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("yolos")
    torch.manual_seed(0)
    config = transformers.YolosConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        image_size=[48, 64], patch_size=8, num_detection_tokens=24, num_labels=3)
    transformers.YolosForObjectDetection(config).save_pretrained(path)
    # the Pillow processor where transformers has one (its default needs torchvision)
    processor = getattr(transformers, "YolosImageProcessorPil", None) \
        or transformers.YolosImageProcessor
    processor(size={"shortest_edge": 48, "longest_edge": 64}).save_pretrained(path)
    return path


def test_detector_boxes_are_the_models_own_post_processing(detector_dir: Path,
                                                             images: Path) -> None:
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    from vlp.convert.detector import HFDetector

    image = Image.open(images.parent / "img" / "000007.png").convert("RGB")
    boxes, scores = HFDetector(detector_dir)(image)
    # the reference: transformers' own pipeline, by hand
    model = AutoModelForObjectDetection.from_pretrained(detector_dir).eval()
    processor = AutoImageProcessor.from_pretrained(detector_dir)
    with torch.no_grad():
        out = model(**processor(images=image, return_tensors="pt"))
    ref = processor.post_process_object_detection(out, threshold=0.0,
                                                  target_sizes=[(48, 64)])[0]
    order = torch.argsort(ref["scores"], descending=True, stable=True)
    ref_boxes = ref["boxes"][order].clamp(min=0)
    ref_boxes = torch.minimum(ref_boxes, torch.tensor([64.0, 48, 64, 48]))
    thick = ((ref_boxes[:, 2:] - ref_boxes[:, :2]) >= 1).all(dim=1)
    np.testing.assert_allclose(boxes, ref_boxes[thick].numpy(), atol=1e-5)
    np.testing.assert_allclose(scores, ref["scores"][order][thick].numpy(), atol=1e-6)
    assert (np.diff(scores) <= 0).all() and len(boxes) > 0


def test_extraction_with_a_detector_keeps_its_boxes_by_its_confidence(
        detector_dir: Path, images: Path, tmp_path: Path) -> None:
    from vlp.convert.detector import HFDetector

    detector = HFDetector(detector_dir)
    options = dataclasses.replace(SMALL, min_boxes=3, max_boxes=8, threshold=0.0)
    out = extract_regions(images, tmp_path / "feats", TinyBackbone(), options=options,
                          progress=False, detector=detector)
    store = RegionStore.open(out, verify=True)
    assert store.meta["info"]["proposals"] == "Hugging Face yolos detector"
    assert store.meta["info"]["score"] == "detector confidence"
    for image_id in (3, 7, 11):
        r = store.get(image_id)
        image = Image.open(images.parent / "img" / f"{image_id:06d}.png").convert("RGB")
        found, _ = detector(image)
        candidates = np.concatenate([found, [[0, 0, 64, 48]]])
        # every kept box is a detection (or the whole image), the most confident first
        for box in r.boxes:
            assert np.abs(candidates - box).max(axis=1).min() < 1e-3
        np.testing.assert_allclose(r.boxes[0], found[0], atol=1e-3)
        assert 3 <= len(r) <= 8
        assert r.cls_probs.shape[1] == len(CLASSES)  # classes stay the CNN's


def test_cli_extract_with_a_detector(detector_dir: Path, images: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from vlp.convert import extract

    monkeypatch.setitem(extract.PRETRAINED, "tiny",
                        lambda: extract.Pretrained(TinyBackbone(), (0.5,) * 3, (0.5,) * 3))
    args = ["features", "extract", str(images), str(tmp_path / "f"), "--backbone", "tiny",
            "--image-side", "48", "--max-boxes", "6", "--min-boxes", "2"]
    assert main([*args, "--detector", str(detector_dir)]) == 0
    info = RegionStore.open(tmp_path / "f").meta["info"]
    assert info["proposals"] == "Hugging Face yolos detector"
    capsys.readouterr()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*args[:3], str(tmp_path / "g"), *args[4:], "--detector", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"--detector {empty}: no config.json there" in err
