"""Karpathy split files (``dataset_coco.json``, ``dataset_flickr30k.json``, the world's
``dataset_world.json``): images with their split and captions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlp.data.readers import (
    check_captions,
    check_kind,
    json_entries,
    json_field,
    load_json,
    top_object,
)
from vlp.data.records import KARPATHY_SPLITS, KarpathyImage
from vlp.errors import input_error


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


def is_karpathy(doc: Any) -> bool:
    """Whether a parsed JSON document has the shape of a Karpathy split file (an
    ``images`` list whose entries carry ``sentences``) rather than another caption format."""
    images = doc.get("images") if isinstance(doc, dict) else None
    return isinstance(images, list) and bool(images) and isinstance(images[0], dict) \
        and "sentences" in images[0]


def parse_karpathy(path: Path, doc: Any) -> list[KarpathyImage]:
    doc = top_object(path, doc, "a Karpathy split file")
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
    return parse_karpathy(path, load_json(path))
