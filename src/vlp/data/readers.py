"""One reader per published annotation format; the built-in world is read by the same ones.

Every reader checks the fields it uses and reports a bad file as one
:class:`~vlp.errors.VlpError` line naming the file, the field and what was expected, e.g.
``captions.json: field 'annotations[3].caption': missing (expected a string)``.
"""

from __future__ import annotations

import json
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
from vlp.errors import VlpError, input_error

# kind name used in messages → check; bool is excluded from numbers because JSON
# true/false would otherwise pass as 1/0
_KINDS: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "string": ("a string", str),
    "integer": ("an integer", int),
    "number": ("a number", (int, float)),
    "list": ("a list", list),
    "object": ("an object", dict),
}


def load_json(path: str | Path) -> Any:
    """Parse a JSON file, reporting a missing file or bad JSON as one line.

    Args:
        path: the file to read.

    Raises:
        VlpError: the file is missing, unreadable, not UTF-8 or not valid JSON.
    """
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise input_error(path, None, "file not found") from None
    except json.JSONDecodeError as e:
        raise input_error(path, None, f"invalid JSON at line {e.lineno}, column {e.colno}: "
                                      f"{e.msg}") from None
    except UnicodeDecodeError as e:
        raise input_error(path, None, f"not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise input_error(path, None, f"cannot read ({e.strerror})") from None


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
            raise input_error(path, f"{where}.id", f"duplicate image id {image_id}")
        files[image_id] = json_field(path, entry, "file_name", where, "string")
    return files


def _known_id(path: Path, ids: dict[int, Any], value: int, where: str, listed: str) -> int:
    if value not in ids:
        raise input_error(path, where, f"{value} is not an id listed in '{listed}'")
    return value


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
        images[image_id] = ImageInfo(
            image_id, json_field(path, entry, "file_name", where, "string"),
            json_field(path, entry, "width", where, "integer"),
            json_field(path, entry, "height", where, "integer"))
    return images


def _bbox(path: Path, entry: dict[str, Any], where: str) -> tuple[float, float, float, float]:
    box = json_field(path, entry, "bbox", where, "list")
    if len(box) != 4:
        raise input_error(path, f"{where}.bbox", f"expected 4 numbers [x, y, width, height], "
                                                 f"found {len(box)} values")
    x, y, w, h = (float(check_kind(path, v, f"{where}.bbox[{i}]", "number"))
                  for i, v in enumerate(box))
    return x, y, w, h


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
        VlpError: the file is missing, not JSON, a field is missing or of the wrong type, or an
            annotation names an image or category that is not listed.
    """
    path = Path(path)
    doc = _top_object(path, load_json(path), "COCO instances")
    images = _instance_images(path, doc)
    categories = {json_field(path, entry, "id", where, "integer"):
                  json_field(path, entry, "name", where, "string")
                  for where, entry in json_entries(path, doc, "categories")}
    annotations: dict[int, list[InstanceRecord]] = {image_id: [] for image_id in images}
    for where, entry in json_entries(path, doc, "annotations"):
        record = _instance(path, entry, where, images, categories)
        annotations[record.image_id].append(record)
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
    return [_karpathy_image(path, entry, where)
            for where, entry in json_entries(path, doc, "images")]


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
    """All caption texts of a COCO captions, Karpathy split or image → captions list file.

    The format is recognised from the top level: a list is the image → captions format, an
    object with ``annotations`` is COCO captions, any other object is a Karpathy split file.

    Args:
        path: the caption file.

    Raises:
        VlpError: the file is missing, not JSON, or not valid in the recognised format.
    """
    path = Path(path)
    doc = load_json(path)
    if isinstance(doc, list):
        return [c for item in _caption_list(path, doc) for c in item.captions]
    if isinstance(doc, dict) and "annotations" in doc:
        return [r.caption for r in _coco_captions(path, doc)]
    if isinstance(doc, dict) and "images" in doc:
        return [c for im in _karpathy(path, doc) for c in im.captions]
    raise VlpError(f"{path}: not a caption file (expected COCO captions with 'annotations', "
                   "a Karpathy split file with 'images', or a list of {image, caption})")
