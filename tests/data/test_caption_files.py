"""Caption files as published: Karpathy (COCO and Flickr30k), COCO captions, the ALBEF /
BLIP / LAVIS list and JSONL, told apart by content, each image with its id, split, file and
captions; and a run that pre-trains on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vlp.data.features import Regions, build_store
from vlp.data.formats.caption_files import (
    CaptionedImage,
    detect_caption_format,
    read_captioned_images,
    split_from_name,
)
from vlp.data.formats.captions import read_caption_texts
from vlp.errors import VlpError
from vlp.train.config import DataConfig

COCO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco"


def _write(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _sentences(*texts: str) -> list[dict[str, object]]:
    return [{"tokens": t.lower().split(), "raw": t, "imgid": 0, "sentid": i}
            for i, t in enumerate(texts)]


# the published layouts, field for field (a few records each)
KARPATHY_COCO = {"images": [
    {"filepath": "val2014", "sentids": [0, 1], "filename": "COCO_val2014_000000391895.jpg",
     "imgid": 0, "split": "test", "sentences": _sentences("A man on a moped.", "A dirt road."),
     "cocoid": 391895},
    {"filepath": "train2014", "sentids": [2], "filename": "COCO_train2014_000000057870.jpg",
     "imgid": 1, "split": "restval", "sentences": _sentences("A restaurant table."),
     "cocoid": 57870}],
    "dataset": "coco"}
KARPATHY_FLICKR = {"images": [
    {"sentids": [0], "imgid": 0, "sentences": _sentences("Two dogs run."), "split": "train",
     "filename": "1000092795.jpg"}], "dataset": "flickr30k"}
COCO_CAPTIONS = {
    "info": {"description": "COCO 2014 Dataset"}, "licenses": [],
    "images": [{"license": 3, "file_name": "COCO_val2014_000000391895.jpg",
                "coco_url": "http://images.cocodataset.org/val2014/x.jpg", "height": 360,
                "width": 640, "date_captured": "2013-11-14 11:18:45", "id": 391895}],
    "annotations": [{"image_id": 391895, "id": 770337, "caption": "A man on a moped."},
                    {"image_id": 391895, "id": 771687, "caption": "A dirt road."}]}
ALBEF_TRAIN = [  # one entry per caption, image_id a string
    {"caption": "A woman wearing a net.", "image": "train2014/COCO_train2014_000000057870.jpg",
     "image_id": "coco_57870"},
    {"caption": "A restaurant table.", "image": "train2014/COCO_train2014_000000057870.jpg",
     "image_id": "coco_57870"},
    {"caption": "A giraffe.", "image": "train2014/COCO_train2014_000000000009.jpg",
     "image_id": "coco_9"}]
ALBEF_TEST = [{"image": "val2014/COCO_val2014_000000391895.jpg",
               "caption": ["A man on a moped.", "A dirt road."]}]
JSONL = [{"image": "shard0/000000123.jpg", "text": "a red bus"},
         {"image": "shard0/000000124.jpg", "text": "a cat on a mat"},
         {"image": "shard0/000000123.jpg", "text": "a bus in the rain"}]


def test_karpathy_coco_and_flickr(tmp_path: Path) -> None:
    coco = read_captioned_images(_write(tmp_path / "dataset_coco.json", KARPATHY_COCO))
    assert coco == [
        CaptionedImage(391895, "test", "val2014/COCO_val2014_000000391895.jpg",
                       ("A man on a moped.", "A dirt road.")),
        CaptionedImage(57870, "restval", "train2014/COCO_train2014_000000057870.jpg",
                       ("A restaurant table.",))]
    flickr = read_captioned_images(_write(tmp_path / "dataset_flickr30k.json", KARPATHY_FLICKR))
    assert flickr == [CaptionedImage(0, "train", "1000092795.jpg", ("Two dogs run.",))]


def test_coco_captions_take_their_split_from_the_name(tmp_path: Path) -> None:
    path = _write(tmp_path / "captions_val2014.json", COCO_CAPTIONS)
    assert read_captioned_images(path) == [CaptionedImage(
        391895, "val", "COCO_val2014_000000391895.jpg", ("A man on a moped.", "A dirt road."))]
    assert read_captioned_images(path, split="train")[0].split == "train"  # split_files


def test_albef_lists_merge_an_image_listed_once_per_caption(tmp_path: Path) -> None:
    train = read_captioned_images(_write(tmp_path / "coco_karpathy_train.json", ALBEF_TRAIN))
    assert train == [
        CaptionedImage(57870, "train", "train2014/COCO_train2014_000000057870.jpg",
                       ("A woman wearing a net.", "A restaurant table.")),
        CaptionedImage(9, "train", "train2014/COCO_train2014_000000000009.jpg",
                       ("A giraffe.",))]
    test = read_captioned_images(_write(tmp_path / "coco_karpathy_test.json", ALBEF_TEST))
    assert [(im.image_id, im.split, len(im.captions)) for im in test] == [(391895, "test", 2)]


def test_jsonl_lines(tmp_path: Path) -> None:
    path = tmp_path / "shard.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in JSONL) + "\n", encoding="utf-8")
    assert read_captioned_images(path) == [
        CaptionedImage(123, "train", "shard0/000000123.jpg", ("a red bus", "a bus in the rain")),
        CaptionedImage(124, "train", "shard0/000000124.jpg", ("a cat on a mat",))]
    assert read_caption_texts(path) == ["a red bus", "a cat on a mat", "a bus in the rain"]


def test_detection_and_override(tmp_path: Path) -> None:
    cases = {"karpathy": KARPATHY_COCO, "coco": COCO_CAPTIONS, "caption_list": ALBEF_TEST}
    for fmt, doc in cases.items():
        for indent in (None, 2):  # minified and pretty-printed
            text = json.dumps(doc, indent=indent)
            assert detect_caption_format("f.json", text) == fmt
    assert detect_caption_format("f.jsonl", "\n".join(json.dumps(r) for r in JSONL)) == "jsonl"
    assert detect_caption_format("f.jsonl", json.dumps(JSONL[0])) == "jsonl"  # one line
    with pytest.raises(VlpError, match="f.json: not a caption file") as err:
        detect_caption_format("f.json", json.dumps({"questions": []}))
    assert "\n" not in str(err.value)
    # the override reads a file as the format it names, and says what is wrong when it is not
    path = _write(tmp_path / "c.json", COCO_CAPTIONS)
    assert read_captioned_images(path, "coco")[0].image_id == 391895
    with pytest.raises(VlpError, match="c.json"):
        read_captioned_images(path, "karpathy")


@pytest.mark.parametrize(("name", "split"), [
    ("coco_karpathy_test.json", "test"), ("captions_val2014.json", "val"),
    ("dataset_coco.json", None), ("sample_captions.json", None), ("train.jsonl", "train"),
    ("flickr30k_restval-2.jsonl", "restval"), ("contrast.json", None)])
def test_split_from_name(name: str, split: str | None) -> None:
    assert split_from_name(name) == split


@pytest.mark.parametrize(("doc", "message"), [
    ([{"caption": "x", "image": "a/nodigits.jpg"}], "'[0].image': 'a/nodigits.jpg' has no id"),
    ([{"caption": "x", "image": "a/1.jpg"}, {"caption": "y", "image": "b/01.jpg"}],
     "'[1].image': 'b/01.jpg' gives image id 1, as 'a/1.jpg' does"),
    ([{"image": "a/1.jpg"}], "[0]"),
])
def test_bad_records_are_one_line(tmp_path: Path, doc: object, message: str) -> None:
    with pytest.raises(VlpError) as err:
        read_captioned_images(_write(tmp_path / "bad.json", doc))
    assert message in str(err.value) and "bad.json" in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_jsonl_line_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"image": "1.jpg", "text": "a"}\n{"image": "2.jpg"}\n', encoding="utf-8")
    with pytest.raises(VlpError, match="line 2") as err:
        read_captioned_images(path)
    assert "bad.jsonl" in str(err.value) and "text" in str(err.value)


def test_split_files_name_the_file_of_each_split(tmp_path: Path) -> None:
    train = str(_write(tmp_path / "a.json", ALBEF_TRAIN))
    data = DataConfig(split_files={"train": train, "val": "v.json"})
    assert data.caption_files(["train", "restval"]) == [(train, "train")]
    assert data.caption_files(["val"]) == [("v.json", "val")]
    with pytest.raises(VlpError, match="data.split_files: no file for split"):
        data.caption_files(["test"])
    with pytest.raises(VlpError, match="data.captions: empty"):
        DataConfig().caption_files(["train"])


def _regions(ids: list[int]) -> list[Regions]:
    rng = np.random.default_rng(0)
    return [Regions(i, 640, 480, rng.standard_normal((4, 16)).astype(np.float32),
                    np.array([[0, 0, 320, 240], [320, 0, 640, 240], [0, 240, 320, 480],
                              [0, 0, 640, 480]], np.float32),
                    rng.dirichlet(np.ones(5), 4).astype(np.float32)) for i in ids]


@pytest.mark.slow
def test_pretrain_on_the_real_albef_test_file_as_published(tmp_path: Path) -> None:
    """A slice of ../shared/data/coco/karpathy_test_captions.json, unchanged in layout: its
    split is test (from its name), the vocabulary is trained on it, and a few region-model
    steps run with region features made up for its images."""
    from vlp.data.tokenizer import Tokenizer
    from vlp.train.config import PretrainConfig, TrainConfig
    from vlp.train.pretrain import pretrain

    doc = json.loads((COCO / "karpathy_test_captions.json").read_text(encoding="utf-8"))
    captions = _write(tmp_path / "coco_karpathy_test.json", doc[:40])
    images = read_captioned_images(captions)
    assert {im.split for im in images} == {"test"} and len(images) == 40
    build_store(_regions([im.image_id for im in images]), tmp_path / "feats")
    Tokenizer.train(read_caption_texts(captions), tmp_path / "vocab.txt", vocab_size=300)
    base = DataConfig(captions=str(captions), features=str(tmp_path / "feats"),
                      vocab=str(tmp_path / "vocab.txt"), token_budget=0, batch_size=8)
    cfg = PretrainConfig(
        data=base, train=TrainConfig(out=str(tmp_path / "run"), steps=3, warmup_steps=1))
    with pytest.raises(VlpError, match="holds test") as err:  # no train split in it
        pretrain(cfg)
    assert "data.split_files" in str(err.value)
    # the test file trained on: by split name, or named as the training split
    for data in (base.__class__(**{**base.__dict__, "train_splits": ["test"],
                                   "eval_split": "test"}),
                 base.__class__(**{**base.__dict__, "captions": "",
                                   "split_files": {"train": str(captions),
                                                   "val": str(captions)}})):
        run = tmp_path / f"run_{len(data.split_files)}"
        metrics = pretrain(PretrainConfig(
            model=cfg.model, data=data, objectives=cfg.objectives,
            train=TrainConfig(out=str(run), steps=3, warmup_steps=1)))
        assert any(k.startswith("eval/loss") for k in metrics)
        assert all(np.isfinite(v) for v in metrics.values()), metrics


def test_tokenizer_texts_need_no_image_ids(tmp_path: Path) -> None:
    listed = _write(tmp_path / "l.json", [{"image": "a/dog.jpg", "caption": "a dog"},
                                          {"image": "b/dog.jpg", "caption": ["two", "dogs"]}])
    assert read_caption_texts(listed) == ["a dog", "two", "dogs"]
    lines = tmp_path / "l.jsonl"
    lines.write_text('{"image": "x.jpg", "text": "a cat"}\n{"image": "x.jpg", "text": "b"}\n',
                     encoding="utf-8")
    assert read_caption_texts(lines) == ["a cat", "b"]


def test_an_id_naming_two_images_across_split_files_is_refused(tmp_path: Path) -> None:
    from vlp.train.build import image_index

    train = _write(tmp_path / "a.json", [{"image": "cc/2345.jpg", "caption": "x"}])
    val = _write(tmp_path / "b.json", [{"image": "coco/COCO_val2014_000000002345.jpg",
                                        "caption": "y"}])
    data = DataConfig(split_files={"train": str(train), "val": str(val)})
    with pytest.raises(VlpError, match="image id 2345 is") as err:
        image_index(data)
    assert "\n" not in str(err.value)
    same = _write(tmp_path / "c.json", [{"image": "cc/2345.jpg", "caption": "z"}])
    index = image_index(DataConfig(split_files={"train": str(train), "val": str(same)}))
    assert list(index.ids()) == [2345]
