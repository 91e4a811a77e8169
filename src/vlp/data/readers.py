"""One reader per published annotation format; the built-in world is read by the same ones.

Every reader checks the fields it uses and reports a bad file as one
:class:`~vlp.errors.VlpError` line naming the file, the field and what was expected, e.g.
``captions.json: field 'annotations[3].caption': missing (expected a string)``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vlp.data.records import (
    KARPATHY_SPLITS,
    CaptionRecord,
    ImageCaptions,
    ImageInfo,
    InstanceRecord,
    Instances,
    KarpathyImage,
)
from vlp.errors import VlpError, data_warning, input_error

# kind name used in messages → check; bool is excluded from numbers because JSON
# true/false would otherwise pass as 1/0
_KINDS: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "string": ("a string", str),
    "integer": ("an integer", int),
    "number": ("a number", (int, float)),
    "list": ("a list", list),
    "object": ("an object", dict),
}


def read_text(path: str | Path, what: str = "a text file") -> str:
    """The UTF-8 text of a file, reporting every way it can fail to be one as one line.

    Args:
        path: the file to read.
        what: what the file should be, for the messages (e.g. ``a JSON file``).

    Raises:
        VlpError: the file is missing, a directory, unreadable or not UTF-8.
    """
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise input_error(path, None, f"file not found (expected {what})") from None
    except IsADirectoryError:
        raise input_error(path, None, f"is a directory (expected {what})") from None
    except UnicodeDecodeError as e:
        raise input_error(path, None, f"not UTF-8 text (byte {e.start}; expected "
                                      f"{what})") from None
    except OSError as e:
        raise input_error(path, None, f"cannot read ({e.strerror})") from None


def parse_json(path: str | Path, text: str) -> Any:
    """Parse JSON ``text`` read from ``path``; an empty or invalid document is one line.

    Args:
        path: the file the text came from, for messages.
        text: the file's content.
    """
    if not text.strip():
        raise input_error(path, None, "empty file (expected JSON)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise input_error(path, None, f"invalid JSON at line {e.lineno}, column {e.colno}: "
                                      f"{e.msg}") from None
    except RecursionError:
        raise input_error(path, None, "invalid JSON: nested too deeply") from None


def load_json(path: str | Path) -> Any:
    """Parse a JSON file, reporting a missing file or bad JSON as one line.

    Args:
        path: the file to read.

    Raises:
        VlpError: the file is missing, a directory, unreadable, not UTF-8, empty or not
            valid JSON.
    """
    return parse_json(path, read_text(path, "a JSON file"))


def _type_name(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def check_kind(path: str | Path, value: Any, where: str, kind: str) -> Any:
    """Return ``value`` if it is of ``kind``, else raise naming the file and field.

    Args:
        path: the file the value came from.
        value: the parsed JSON value.
        where: the field, e.g. ``annotations[3].caption``.
        kind: one of ``string``, ``integer``, ``number``, ``list``, ``object``.
    """
    expected, types = _KINDS[kind]
    if isinstance(value, bool) or not isinstance(value, types):
        raise input_error(path, where, f"expected {expected}, found {_type_name(value)}")
    return value


def json_field(path: str | Path, obj: dict[str, Any], key: str, where: str, kind: str) -> Any:
    """Read ``obj[key]`` and check its kind; a missing key is reported, not a ``KeyError``.

    Args:
        path: the file the object came from.
        obj: a parsed JSON object.
        key: the key to read.
        where: the object's own field path ("" for the top level).
        kind: see :func:`check_kind`.
    """
    name = f"{where}.{key}" if where else key
    if key not in obj:
        raise input_error(path, name, f"missing (expected {_KINDS[kind][0]})")
    return check_kind(path, obj[key], name, kind)


def json_entries(path: str | Path, obj: dict[str, Any], key: str) -> list[tuple[str, Any]]:
    """The objects of the top-level list ``obj[key]``, each with its field path.

    Args:
        path: the file the object came from.
        obj: the parsed top-level JSON object.
        key: the key of the list, e.g. ``annotations``.
    """
    items = json_field(path, obj, key, "", "list")
    return [(f"{key}[{i}]", check_kind(path, item, f"{key}[{i}]", "object"))
            for i, item in enumerate(items)]


def _top_object(path: Path, doc: Any, what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise input_error(path, None, f"expected {what} (a JSON object at the top level), "
                                      f"found {_type_name(doc)}")
    return doc


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


EXAMPLES = 3  # examples a data warning lists


def examples(items: list[Any], n: int = EXAMPLES) -> str:
    """The first ``n`` of ``items`` for a message, e.g. ``a, b, c, …``."""
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (", …" if len(items) > n else "")


def check_captions(path: Path, captions: list[tuple[str, str]]) -> None:
    """Refuse a caption file whose captions are all blank; warn once about blank ones.

    Args:
        path: the caption file.
        captions: (field, caption text) of every caption in the file.

    Raises:
        VlpError: every caption is empty or whitespace (nothing to learn from).
    """
    blank = [where for where, text in captions if not text.strip()]
    if captions and len(blank) == len(captions):
        raise input_error(path, blank[0], f"empty: all {len(captions)} captions of the file "
                                          "are empty or whitespace (nothing to learn from)")
    if blank:
        data_warning(path, blank[0], f"{len(blank)} of {len(captions)} captions are empty or "
                                     f"whitespace (e.g. {examples(blank)})")


def _coco_captions(path: Path, doc: Any) -> list[CaptionRecord]:
    doc = _top_object(path, doc, "COCO captions")
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
    return _coco_captions(path, load_json(path))


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
    doc = _top_object(path, load_json(path), "COCO instances")
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


def _karpathy_id(path: Path, entry: dict[str, Any], where: str) -> int:
    # COCO Karpathy files carry both; cocoid is the id the images and features use,
    # while imgid is only the position in the file (Flickr30k has imgid alone)
    for key in ("cocoid", "imgid"):
        if key in entry:
            return int(json_field(path, entry, key, where, "integer"))
    raise input_error(path, f"{where}.cocoid", "missing, and no 'imgid' either "
                                               "(expected an integer)")


def _karpathy_image(path: Path, entry: dict[str, Any], where: str) -> KarpathyImage:
    split = json_field(path, entry, "split", where, "string")
    if split not in KARPATHY_SPLITS:
        raise input_error(path, f"{where}.split", f"expected one of {', '.join(KARPATHY_SPLITS)}, "
                                                  f"found {split!r}")
    sentences = json_field(path, entry, "sentences", where, "list")
    captions = []
    for i, sentence in enumerate(sentences):
        name = f"{where}.sentences[{i}]"
        captions.append(json_field(path, check_kind(path, sentence, name, "object"), "raw",
                                   name, "string"))
    file_path = json_field(path, entry, "filepath", where, "string") if "filepath" in entry else ""
    return KarpathyImage(image_id=_karpathy_id(path, entry, where),
                         file_name=json_field(path, entry, "filename", where, "string"),
                         file_path=file_path, split=split, captions=tuple(captions))


def _karpathy(path: Path, doc: Any) -> list[KarpathyImage]:
    doc = _top_object(path, doc, "a Karpathy split file")
    images: list[KarpathyImage] = []
    seen: dict[int, str] = {}
    captions: list[tuple[str, str]] = []
    for where, entry in json_entries(path, doc, "images"):
        image = _karpathy_image(path, entry, where)
        if image.image_id in seen:
            key = "cocoid" if "cocoid" in entry else "imgid"
            raise input_error(path, f"{where}.{key}", f"duplicate image id {image.image_id} "
                              f"(also {seen[image.image_id]}): one image's captions would be "
                              "paired with the other's regions")
        seen[image.image_id] = where
        images.append(image)
        captions += [(f"{where}.sentences[{j}].raw", c) for j, c in enumerate(image.captions)]
    check_captions(path, captions)
    return images


def read_karpathy(path: str | Path) -> list[KarpathyImage]:
    """Read a Karpathy split file (``dataset_coco.json``, the world's ``dataset_world.json``).

    Splits are kept as published: ``restval`` stays ``restval``; see
    :func:`vlp.data.records.restval_as_train` to merge it into ``train``.

    Args:
        path: a JSON file ``{"images": [{"filename", "filepath"?, "split", "cocoid"? | "imgid",
            "sentences": [{"raw", ...}]}]}``.

    Raises:
        VlpError: the file is missing, not JSON, or a field is missing or of the wrong type.
    """
    path = Path(path)
    return _karpathy(path, load_json(path))


def _caption_list(path: Path, doc: Any) -> list[ImageCaptions]:
    if not isinstance(doc, list):
        raise input_error(path, None, "expected a list of {image, caption} objects, "
                                      f"found {_type_name(doc)}")
    records = []
    for i, item in enumerate(doc):
        where = f"[{i}]"
        entry = check_kind(path, item, where, "object")
        captions = entry.get("caption")
        # the ALBEF / BLIP files hold one caption (train) or a list of them (val, test)
        texts = [captions] if isinstance(captions, str) else \
            json_field(path, entry, "caption", where, "list")
        records.append(ImageCaptions(
            image=json_field(path, entry, "image", where, "string"),
            captions=tuple(check_kind(path, t, f"{where}.caption[{j}]", "string")
                           for j, t in enumerate(texts))))
    check_captions(path, [(f"[{i}].caption", c) for i, r in enumerate(records)
                          for c in r.captions])
    return records


def read_image_caption_list(path: str | Path) -> list[ImageCaptions]:
    """Read the image → captions list format of the ALBEF / BLIP Karpathy files.

    Args:
        path: a JSON file ``[{"image": "val2014/x.jpg", "caption": ["...", ...] | "..."}]``.

    Raises:
        VlpError: the file is missing, not JSON, or a field is missing or of the wrong type.
    """
    path = Path(path)
    return _caption_list(path, load_json(path))


def read_caption_texts(path: str | Path) -> list[str]:
    """All caption texts of a COCO captions, Karpathy split, image → captions list or plain
    text file.

    A file whose first non-space character is ``{`` or ``[`` is JSON, and its format is
    recognised from the top level: a list is the image → captions format, an object with
    ``annotations`` is COCO captions, one with ``images`` a Karpathy split file. Any other
    file is plain text, one caption per line (blank lines skipped).

    Args:
        path: the caption file.

    Raises:
        VlpError: the file is missing, not UTF-8, invalid in its recognised format, or
            holds no caption text.
    """
    path = Path(path)
    text = read_text(path, "a caption file")
    if text.lstrip()[:1] not in ("{", "["):
        return _plain_captions(path, text)
    doc = parse_json(path, text)
    if isinstance(doc, list):
        return [c for item in _caption_list(path, doc) for c in item.captions]
    if isinstance(doc, dict) and "annotations" in doc:
        return [r.caption for r in _coco_captions(path, doc)]
    if isinstance(doc, dict) and "images" in doc:
        return [c for im in _karpathy(path, doc) for c in im.captions]
    raise VlpError(f"{path}: not a caption file (expected COCO captions with 'annotations', "
                   "a Karpathy split file with 'images', a list of {image, caption}, or "
                   "plain text with one caption per line)")


def _plain_captions(path: Path, text: str) -> list[str]:
    if "\x00" in text:
        raise input_error(path, None, "binary data (NUL bytes); expected captions as JSON or "
                                      "plain text, one per line")
    lines = [line.strip() for line in text.split("\n")]
    captions = [line for line in lines if line]
    if not captions:
        raise input_error(path, None, "empty: no caption text (expected one caption per "
                                      "line, or a JSON caption file)")
    return captions
