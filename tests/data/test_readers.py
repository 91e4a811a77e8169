"""Readers of the published formats: exact real layouts in, records out, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import COCO
from vlp.data.formats.caption_list import read_image_caption_list
from vlp.data.formats.captions import read_caption_texts
from vlp.data.formats.coco import read_coco_captions, read_coco_instances
from vlp.data.formats.karpathy import read_karpathy
from vlp.data.records import CaptionRecord, ImageInfo, InstanceRecord, restval_as_train
from vlp.errors import VlpError

# the layout of captions_val2014.json, cut to two images
COCO_CAPTIONS: dict[str, Any] = {
    "info": {"description": "COCO 2014 Dataset", "year": 2014},
    "licenses": [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1,
                  "name": "Attribution-NonCommercial-ShareAlike License"}],
    "images": [
        {"license": 3, "file_name": "COCO_val2014_000000391895.jpg", "height": 360,
         "width": 640, "id": 391895},
        {"license": 4, "file_name": "COCO_val2014_000000522418.jpg", "height": 480,
         "width": 640, "id": 522418},
    ],
    "annotations": [
        {"image_id": 391895, "id": 770337,
         "caption": "A man with a red helmet on a small moped on a dirt road. "},
        {"image_id": 522418, "id": 770338,
         "caption": "A woman wearing a net on her head cutting a cake. "},
        {"image_id": 391895, "id": 771687, "caption": "Man riding a motor bike on a dirt road."},
    ],
}

COCO_INSTANCES: dict[str, Any] = {
    "images": [{"id": 391895, "file_name": "COCO_val2014_000000391895.jpg", "height": 360,
                "width": 640}],
    "annotations": [
        {"segmentation": [[359.17, 146.17, 471.62, 359.74]], "area": 12190.44,
         "iscrowd": 0, "image_id": 391895, "bbox": [359.17, 146.17, 112.45, 213.57],
         "category_id": 4, "id": 151091},
        {"segmentation": {"counts": [0, 4], "size": [360, 640]}, "area": 300, "iscrowd": 1,
         "image_id": 391895, "bbox": [10, 20, 30, 40], "category_id": 1, "id": 900100},
    ],
    "categories": [{"supercategory": "person", "id": 1, "name": "person"},
                   {"supercategory": "vehicle", "id": 4, "name": "motorcycle"}],
}

# the layout of dataset_coco.json: both ids, tokens, and the restval split
KARPATHY: dict[str, Any] = {
    "images": [
        {"filepath": "val2014", "sentids": [770337, 771687], "filename":
         "COCO_val2014_000000391895.jpg", "imgid": 0, "split": "test",
         "sentences": [
             {"tokens": ["a", "man", "with", "a", "red", "helmet"], "raw":
              "A man with a red helmet on a small moped on a dirt road. ", "imgid": 0,
              "sentid": 770337},
             {"tokens": ["man", "riding", "a", "motor", "bike"],
              "raw": "Man riding a motor bike on a dirt road.", "imgid": 0, "sentid": 771687}],
         "cocoid": 391895},
        {"filepath": "val2014", "sentids": [1], "filename": "COCO_val2014_000000522418.jpg",
         "imgid": 1, "split": "restval", "sentences": [
             {"tokens": ["a", "woman"], "raw": "A woman cutting a cake.", "imgid": 1,
              "sentid": 1}], "cocoid": 522418},
    ],
    "dataset": "coco",
}

# dataset_flickr30k.json has no cocoid and no filepath
FLICKR: dict[str, Any] = {
    "images": [{"sentids": [0], "imgid": 7, "sentences": [
        {"tokens": ["two", "dogs"], "raw": "Two dogs play.", "imgid": 7, "sentid": 0}],
        "split": "train", "filename": "1000092795.jpg"}],
    "dataset": "flickr30k",
}


def _write(tmp_path: Path, name: str, obj: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def _error(fn: Any, path: Path) -> str:
    with pytest.raises(VlpError) as e:
        fn(path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message
    return message


def test_coco_captions(tmp_path: Path) -> None:
    records = read_coco_captions(_write(tmp_path, "captions.json", COCO_CAPTIONS))
    assert records[:2] == [
        CaptionRecord(391895, "A man with a red helmet on a small moped on a dirt road. ", 770337,
                      "COCO_val2014_000000391895.jpg"),
        CaptionRecord(522418, "A woman wearing a net on her head cutting a cake. ", 770338,
                      "COCO_val2014_000000522418.jpg")]
    assert len(records) == 3


def test_coco_instances(tmp_path: Path) -> None:
    inst = read_coco_instances(_write(tmp_path, "instances.json", COCO_INSTANCES))
    assert inst.images == {391895: ImageInfo(391895, "COCO_val2014_000000391895.jpg", 640, 360)}
    assert inst.categories == {1: "person", 4: "motorcycle"}
    first, crowd = inst.annotations[391895]
    assert first == InstanceRecord(391895, 4, (359.17, 146.17, 112.45, 213.57), 151091,
                                   12190.44, False)
    assert crowd.iscrowd and crowd.bbox == (10.0, 20.0, 30.0, 40.0)


def test_karpathy_cocoid_and_restval(tmp_path: Path) -> None:
    images = read_karpathy(_write(tmp_path, "dataset_coco.json", KARPATHY))
    assert [(im.image_id, im.split, im.file_path) for im in images] == [
        (391895, "test", "val2014"), (522418, "restval", "val2014")]
    assert images[0].captions == ("A man with a red helmet on a small moped on a dirt road. ",
                                  "Man riding a motor bike on a dirt road.")
    assert [im.split for im in restval_as_train(images)] == ["test", "train"]
    assert images[1].split == "restval"  # the helper copies; records stay as published


def test_karpathy_imgid_without_cocoid(tmp_path: Path) -> None:
    (image,) = read_karpathy(_write(tmp_path, "dataset_flickr30k.json", FLICKR))
    assert (image.image_id, image.file_path, image.captions) == (7, "", ("Two dogs play.",))


def test_caption_texts_of_every_format(tmp_path: Path) -> None:
    assert len(read_caption_texts(_write(tmp_path, "c.json", COCO_CAPTIONS))) == 3
    assert read_caption_texts(_write(tmp_path, "k.json", KARPATHY))[-1] == \
        "A woman cutting a cake."
    texts = read_caption_texts(COCO / "sample_captions.json")
    assert len(texts) == 5 * len(json.loads((COCO / "sample_captions.json").read_text()))
    assert texts[0] == "A young girl inhales with the intent of blowing out a candle. "
    message = _error(read_caption_texts, _write(tmp_path, "x.json", {"foo": 1}))
    assert "not a caption file" in message


def test_image_caption_list_real_file() -> None:
    records = read_image_caption_list(COCO / "karpathy_test_captions.json")
    assert len(records) == 5000
    assert records[0].image == "val2014/COCO_val2014_000000391895.jpg"
    assert len(records[0].captions) == 5


def test_missing_caption_names_file_and_field(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(COCO_CAPTIONS))
    del bad["annotations"][1]["caption"]
    path = _write(tmp_path, "captions.json", bad)
    assert _error(read_coco_captions, path) == \
        f"{path}: field 'annotations[1].caption': missing (expected a string)"


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d.pop("annotations"), "field 'annotations': missing (expected a list)"),
    (lambda d: d["images"][0].pop("id"), "field 'images[0].id': missing (expected an integer)"),
    (lambda d: d["annotations"][2].update(caption=5),
     "field 'annotations[2].caption': expected a string, found an integer"),
    (lambda d: d["annotations"][0].update(image_id=True),
     "field 'annotations[0].image_id': expected an integer, found a boolean"),
    (lambda d: d["annotations"][0].update(image_id=1),
     "field 'annotations[0].image_id': 1 is not an id listed in 'images'"),
    (lambda d: d.update(images={}), "field 'images': expected a list, found an object"),
])
def test_caption_errors(tmp_path: Path, change: Any, expected: str) -> None:
    bad = json.loads(json.dumps(COCO_CAPTIONS))
    change(bad)
    assert expected in _error(read_coco_captions, _write(tmp_path, "captions.json", bad))


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "captions.json"
    path.write_text('{"images": [],\n  "annotations": [,]}')
    message = _error(read_coco_captions, path)
    assert "invalid JSON at line 2, column 19" in message
    assert "file not found" in _error(read_karpathy, tmp_path / "missing.json")
    (tmp_path / "list.json").write_text("[]")
    assert "expected a Karpathy split file" in _error(read_karpathy, tmp_path / "list.json")


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d["images"][0].pop("cocoid") and d["images"][0].pop("imgid"),
     "field 'images[0].cocoid': missing, and no 'imgid' either (expected an integer)"),
    (lambda d: d["images"][1].update(split="dev"),
     "field 'images[1].split': expected one of train, val, test, restval, found 'dev'"),
    (lambda d: d["images"][0]["sentences"][1].pop("raw"),
     "field 'images[0].sentences[1].raw': missing (expected a string)"),
])
def test_karpathy_errors(tmp_path: Path, change: Any, expected: str) -> None:
    bad = json.loads(json.dumps(KARPATHY))
    change(bad)
    assert expected in _error(read_karpathy, _write(tmp_path, "dataset_coco.json", bad))


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]),
     "field 'annotations[0].bbox': expected 4 numbers [x, y, width, height], found 3 values"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, "3", 4]),
     "field 'annotations[0].bbox[2]': expected a number, found a string"),
    (lambda d: d["annotations"][1].update(category_id=99),
     "field 'annotations[1].category_id': 99 is not an id listed in 'categories'"),
    (lambda d: d["images"][0].pop("width"),
     "field 'images[0].width': missing (expected an integer)"),
])
def test_instances_errors(tmp_path: Path, change: Any, expected: str) -> None:
    bad = json.loads(json.dumps(COCO_INSTANCES))
    change(bad)
    assert expected in _error(read_coco_instances, _write(tmp_path, "instances.json", bad))


# --- defects from the outside tester (issue 11) ---------------------------------------------


def test_plain_text_captions_are_read_as_lines(tmp_path: Path) -> None:
    from vlp.data.formats.captions import read_caption_texts

    path = tmp_path / "captions.txt"
    path.write_text("a red circle\n\n  [a] blue square\n")
    assert read_caption_texts(path) == ["a red circle", "[a] blue square"]


def test_karpathy_duplicate_id_and_blank_captions(tmp_path: Path) -> None:
    import warnings

    from vlp.data.formats.karpathy import read_karpathy
    from vlp.errors import DataWarning, strict_mode

    def image(i: int, *raw: str) -> dict[str, object]:
        return {"filename": f"{i}.jpg", "cocoid": i, "split": "train",
                "sentences": [{"raw": r} for r in raw]}

    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"images": [image(1, "a"), image(1, "b")]}))
    with pytest.raises(VlpError, match=r"images\[1\].cocoid': duplicate image id 1"):
        read_karpathy(path)
    path.write_text(json.dumps({"images": [image(1, " ", ""), image(2, "")]}))
    with pytest.raises(VlpError, match="all 3 captions of the file are empty"):
        read_karpathy(path)
    path.write_text(json.dumps({"images": [image(1, "a dog", ""), image(2, "", "x")]}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(read_karpathy(path)) == 2
    lines = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(lines) == 1 and "2 of 4 captions are empty" in lines[0], lines
    with strict_mode(), pytest.raises(VlpError, match="strict mode"):
        read_karpathy(path)


def test_instance_boxes_inverted_error_outside_warns(tmp_path: Path) -> None:
    from vlp.data.formats.coco import read_coco_instances
    from vlp.errors import DataWarning

    doc = {"images": [{"id": 1, "file_name": "1.jpg", "width": 10, "height": 10}],
           "categories": [{"id": 1, "name": "dog"}],
           "annotations": [{"id": i, "image_id": 1, "category_id": 1, "bbox": [1, 1, 20, 2]}
                           for i in range(3)]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    with pytest.warns(DataWarning, match="3 of 3 boxes lie partly outside"):
        read_coco_instances(path)
    doc["annotations"][1]["bbox"] = [5, 5, -2, 3]  # type: ignore[index]
    path.write_text(json.dumps(doc))
    with pytest.raises(VlpError, match=r"annotations\[1\].bbox': negative width"):
        read_coco_instances(path)
