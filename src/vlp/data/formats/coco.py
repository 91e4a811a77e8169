"""COCO: captions (``captions_train2014.json``) and instances (``instances_val2014.json``);
the built-in world writes both."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from vlp.data.readers import (
    check_captions,
    check_kind,
    examples,
    json_entries,
    json_field,
    load_json,
    top_object,
)
from vlp.data.records import CaptionRecord, ImageEntry, ImageInfo, InstanceRecord, Instances
from vlp.errors import data_warning, input_error


def _image_files(path: Path, doc: dict[str, Any]) -> dict[int, str]:
    files: dict[int, str] = {}
    for where, entry in json_entries(path, doc, "images"):
        image_id = json_field(path, entry, "id", where, "integer")
        if image_id in files:
            raise input_error(path, f"{where}.id", f"duplicate image id {image_id}: one "
                              "image's captions would be paired with the other's regions")
        files[image_id] = json_field(path, entry, "file_name", where, "string")
    return files


def _known_id(path: Path, ids: dict[int, Any], value: int, where: str, listed: str) -> int:
    if value not in ids:
        raise input_error(path, where, f"{value} is not an id listed in '{listed}'")
    return value


def parse_coco_captions(path: Path, doc: Any) -> list[CaptionRecord]:
    doc = top_object(path, doc, "COCO captions")
    files = _image_files(path, doc)
    records = []
    for where, entry in json_entries(path, doc, "annotations"):
        image_id = json_field(path, entry, "image_id", where, "integer")
        _known_id(path, files, image_id, f"{where}.image_id", "images")
        records.append(CaptionRecord(
            image_id=image_id, caption=json_field(path, entry, "caption", where, "string"),
            caption_id=json_field(path, entry, "id", where, "integer"),
            file_name=files[image_id]))
    check_captions(path, [(f"annotations[{i}].caption", r.caption)
                          for i, r in enumerate(records)])
    return records


def read_coco_captions(path: str | Path) -> list[CaptionRecord]:
    """Read a COCO captions file (``captions_train2014.json`` and the world's ``captions.json``).

    Args:
        path: a JSON file with ``images`` ``[{id, file_name, ...}]`` and ``annotations``
            ``[{id, image_id, caption}]``.

    Returns:
        One record per annotation, in file order.

    Raises:
        VlpError: the file is missing, not JSON, or a field is missing or of the wrong type.
    """
    path = Path(path)
    return parse_coco_captions(path, load_json(path))


def _instance_images(path: Path, doc: dict[str, Any]) -> dict[int, ImageInfo]:
    images: dict[int, ImageInfo] = {}
    for where, entry in json_entries(path, doc, "images"):
        image_id = json_field(path, entry, "id", where, "integer")
        if image_id in images:
            raise input_error(path, f"{where}.id", f"duplicate image id {image_id}")
        size = [json_field(path, entry, key, where, "integer") for key in ("width", "height")]
        for key, value in zip(("width", "height"), size, strict=True):
            if value <= 0:
                raise input_error(path, f"{where}.{key}", f"expected a positive number of "
                                                          f"pixels, found {value}")
        images[image_id] = ImageInfo(
            image_id, json_field(path, entry, "file_name", where, "string"), *size)
    return images


def _bbox(path: Path, entry: dict[str, Any], where: str) -> tuple[float, float, float, float]:
    box = json_field(path, entry, "bbox", where, "list")
    if len(box) != 4:
        raise input_error(path, f"{where}.bbox", f"expected 4 numbers [x, y, width, height], "
                                                 f"found {len(box)} values")
    x, y, w, h = (float(check_kind(path, v, f"{where}.bbox[{i}]", "number"))
                  for i, v in enumerate(box))
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise input_error(path, f"{where}.bbox", f"expected finite numbers, found {box}")
    if w < 0 or h < 0:
        raise input_error(path, f"{where}.bbox", f"negative width or height in {box} "
                                                 "(expected [x, y, width, height], COCO's "
                                                 "layout, not corners [x1, y1, x2, y2])")
    return x, y, w, h


BOX_SLACK = 1.0  # pixels a box may pass the image's border by (rounding in published boxes)


def _check_boxes(path: Path, images: dict[int, ImageInfo],
                 boxes: list[tuple[str, InstanceRecord]]) -> None:
    """Warn once about zero-area boxes and once about boxes outside their image."""
    empty = [where for where, r in boxes if r.bbox[2] == 0 or r.bbox[3] == 0]
    outside = []
    for where, r in boxes:
        x, y, w, h = r.bbox
        im = images[r.image_id]
        if x < -BOX_SLACK or y < -BOX_SLACK or x + w > im.width + BOX_SLACK \
                or y + h > im.height + BOX_SLACK:
            outside.append(where)
    if empty:
        data_warning(path, f"{empty[0]}.bbox", f"{len(empty)} of {len(boxes)} boxes have zero "
                                               f"width or height (e.g. {examples(empty)})")
    if outside:
        data_warning(path, f"{outside[0]}.bbox", f"{len(outside)} of {len(boxes)} boxes lie "
                     f"partly outside their image (e.g. {examples(outside)})")


def _instance(path: Path, entry: dict[str, Any], where: str, images: dict[int, ImageInfo],
              categories: dict[int, str]) -> InstanceRecord:
    image_id = json_field(path, entry, "image_id", where, "integer")
    _known_id(path, images, image_id, f"{where}.image_id", "images")
    category_id = json_field(path, entry, "category_id", where, "integer")
    _known_id(path, categories, category_id, f"{where}.category_id", "categories")
    area = json_field(path, entry, "area", where, "number") if "area" in entry else 0.0
    crowd = json_field(path, entry, "iscrowd", where, "integer") if "iscrowd" in entry else 0
    return InstanceRecord(image_id, category_id, _bbox(path, entry, where),
                          json_field(path, entry, "id", where, "integer"), float(area),
                          bool(crowd))


def read_coco_instances(path: str | Path) -> Instances:
    """Read a COCO instances file (``instances_val2014.json`` and the world's ``instances.json``).

    Args:
        path: a JSON file with ``images`` ``[{id, file_name, width, height}]``, ``annotations``
            ``[{id, image_id, category_id, bbox: [x, y, w, h], area?, iscrowd?}]`` and
            ``categories`` ``[{id, name, ...}]``.

    Raises:
        VlpError: the file is missing, not JSON, a field is missing or of the wrong type, an
            annotation names an image or category that is not listed, an image or
            annotation id is duplicated, or a box is inverted (negative width or height)
            or not finite.

    Boxes of zero width or height, and boxes reaching more than :data:`BOX_SLACK` pixels
    past their image's border, are legal but suspicious: one data warning per file and
    kind (an error in strict mode).
    """
    path = Path(path)
    doc = top_object(path, load_json(path), "COCO instances")
    images = _instance_images(path, doc)
    categories: dict[int, str] = {}
    for where, entry in json_entries(path, doc, "categories"):
        category_id = json_field(path, entry, "id", where, "integer")
        if category_id in categories:
            raise input_error(path, f"{where}.id", f"duplicate category id {category_id}")
        categories[category_id] = json_field(path, entry, "name", where, "string")
    annotations: dict[int, list[InstanceRecord]] = {image_id: [] for image_id in images}
    boxes: list[tuple[str, InstanceRecord]] = []
    seen: set[int] = set()
    for where, entry in json_entries(path, doc, "annotations"):
        record = _instance(path, entry, where, images, categories)
        if record.annotation_id in seen:
            raise input_error(path, f"{where}.id", f"duplicate annotation id "
                                                   f"{record.annotation_id}")
        seen.add(record.annotation_id)
        annotations[record.image_id].append(record)
        boxes.append((where, record))
    _check_boxes(path, images, boxes)
    return Instances(images=images, annotations=annotations, categories=categories)


def parse_image_list(path: Path, doc: Any) -> list[ImageEntry]:
    if isinstance(doc, list):  # a file that holds only the images list
        entries = [(f"[{i}]", check_kind(path, e, f"[{i}]", "object")) for i, e in enumerate(doc)]
    else:
        entries = json_entries(path, top_object(path, doc, "a COCO-style images list"), "images")
    out: list[ImageEntry] = []
    seen: dict[int, str] = {}
    for where, entry in entries:
        image_id = json_field(path, entry, "id", where, "integer")
        if image_id in seen:
            raise input_error(path, f"{where}.id", f"duplicate image id {image_id} (also "
                              f"{seen[image_id]}): one record's text would be shown the other "
                              "image")
        seen[image_id] = where
        size = []
        for key in ("width", "height"):
            value = json_field(path, entry, key, where, "integer") if key in entry else None
            if value is not None and value <= 0:
                raise input_error(path, f"{where}.{key}", "expected a positive number of "
                                  f"pixels, found {value}")
            size.append(value)
        out.append(ImageEntry(image_id, json_field(path, entry, "file_name", where, "string"),
                              size[0], size[1], where))
    if not out:
        raise input_error(path, "images", "empty; expected at least one {id, file_name} entry")
    return out


def read_image_list(path: str | Path) -> list[ImageEntry]:
    """Read the ``images`` list of a COCO-style file: a COCO captions or instances file, a
    VQA / RefCOCO companion instances file, or a file that holds only the list.

    Args:
        path: a JSON object with ``images`` ``[{id, file_name, width?, height?}]``, or that
            list alone.

    Raises:
        VlpError: the file is missing, not JSON, an entry lacks ``id`` or ``file_name``,
            a size is not a positive integer, or an id repeats.
    """
    path = Path(path)
    return parse_image_list(path, load_json(path))
