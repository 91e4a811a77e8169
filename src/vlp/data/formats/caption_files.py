"""Captioned images from any published caption format, for pre-training, retrieval and
the tokenizer alike.

Formats (``data.caption_format``; ``auto`` tells them apart by their content):

- ``karpathy`` — ``dataset_coco.json`` / ``dataset_flickr30k.json``: ``{"images": [{…,
  "split", "sentences": [{"raw"}]}]}``; each image carries its split.
- ``coco`` — ``captions_train2014.json``: ``{"images": [{id, file_name}], "annotations":
  [{image_id, caption}]}``; one split.
- ``caption_list`` — the ALBEF / BLIP / LAVIS files: ``[{"image", "caption": str | [str],
  "image_id"?}]``; one split, an image listed once per caption (training files) or once
  with all of them (val, test).
- ``jsonl`` — one JSON object a line, ``{"image", "text"}``; one split.

A file of one split belongs to the split it is given for (``data.split_files: {train: …,
val: …}``), else to the split its name says (``coco_karpathy_test.json``,
``captions_val2014.json``: ``train``, ``val``, ``test``, ``restval``), else to ``train``.
An image's id is its ``image_id`` (COCO: the integer; Karpathy: ``cocoid``, else
``imgid``); a caption list or JSONL file names images by path, and the id is the path's
trailing digits, as :meth:`vlp.data.image_files.ImageIndex.from_caption_list` and region
extraction take them, so captions, image files and region stores agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vlp.data.features import parse_image_id
from vlp.data.formats.caption_list import parse_caption_list
from vlp.data.formats.coco import parse_coco_captions
from vlp.data.formats.karpathy import is_karpathy, parse_karpathy
from vlp.data.readers import check_captions, check_kind, json_field, parse_json, read_text
from vlp.errors import VlpError, input_error

CAPTION_FORMATS = ("karpathy", "coco", "caption_list", "jsonl")
SPLIT_NAMES = ("train", "val", "test", "restval")


@dataclass(frozen=True)
class CaptionedImage:
    """One image of a caption file with its captions.

    Attributes:
        image_id: the image's integer id (see the module docstring).
        split: ``train``, ``val``, ``test`` or ``restval``.
        file: the image's path relative to the image root, as the file names it.
        captions: the raw caption texts, in file order.
    """

    image_id: int
    split: str
    file: str
    captions: tuple[str, ...]


def split_from_name(path: str | Path) -> str | None:
    """The split a file's name says (``coco_karpathy_test`` → ``test``, ``captions_val2014``
    → ``val``), or None."""
    words = re.split(r"[^a-z]+", Path(path).name.lower())
    found = [w for w in words if w in SPLIT_NAMES]
    return found[-1] if found else None


def detect_caption_format(path: str | Path, text: str) -> str:
    """The format of a caption file's ``text`` (one of :data:`CAPTION_FORMATS`).

    Raises:
        VlpError: none of them, naming the file and what was expected.
    """
    head = text.lstrip()[:1]
    if head == "[":
        return "caption_list"
    if head == "{":
        first = text.lstrip().split("\n", 1)[0].strip()
        if first.endswith("}") and len(text.strip().splitlines()) > 1 and '"images"' not in first:
            return "jsonl"  # several lines, the first a whole object: one record a line
        doc = parse_json(path, text)
        if is_karpathy(doc):
            return "karpathy"
        if isinstance(doc, dict) and "annotations" in doc:
            return "coco"
        if isinstance(doc, dict) and {"image", "text"} <= set(doc):
            return "jsonl"  # a single-line JSONL file
    raise VlpError(f"{path}: not a caption file (expected a Karpathy split file, COCO "
                   "captions, an ALBEF/BLIP list of {image, caption}, or JSONL lines of "
                   "{image, text})")


def read_captioned_images(path: str | Path, caption_format: str = "auto",
                          split: str | None = None) -> list[CaptionedImage]:
    """The images of a caption file with their split and captions, in file order.

    Args:
        path: the caption file.
        caption_format: one of :data:`CAPTION_FORMATS`, or ``auto``.
        split: the split of a one-split file (default: from its name, else ``train``);
            a Karpathy file keeps each image's own split.

    Raises:
        VlpError: the file is missing, not in the format, or a record lacks a field or an
            id; one line naming the file and the record.
    """
    path = Path(path)
    return parse_captioned_images(path, read_text(path, "a caption file"), caption_format,
                                  split)


def parse_captioned_images(path: str | Path, text: str, caption_format: str = "auto",
                           split: str | None = None) -> list[CaptionedImage]:
    """:func:`read_captioned_images` on the ``text`` already read from ``path``."""
    path = Path(path)
    if caption_format != "auto" and caption_format not in CAPTION_FORMATS:
        raise VlpError(f"data.caption_format: expected auto or one of "
                       f"{', '.join(CAPTION_FORMATS)}, got {caption_format!r}")
    fmt = detect_caption_format(path, text) if caption_format == "auto" else caption_format
    one_split = split or split_from_name(path) or "train"
    if fmt == "jsonl":
        return _from_jsonl(path, text, one_split)
    doc = parse_json(path, text)
    if fmt == "karpathy":
        return [CaptionedImage(im.image_id, im.split,
                               f"{im.file_path}/{im.file_name}" if im.file_path
                               else im.file_name, im.captions)
                for im in parse_karpathy(path, doc)]
    if fmt == "coco":
        merged: dict[int, tuple[str, list[str]]] = {}
        for r in parse_coco_captions(path, doc):
            merged.setdefault(r.image_id, (r.file_name, []))[1].append(r.caption)
        return [CaptionedImage(i, one_split, name, tuple(texts))
                for i, (name, texts) in merged.items()]
    listed = [(f"[{i}]", r.image, r.captions)
              for i, r in enumerate(parse_caption_list(path, doc))]
    return _merged(path, listed, one_split)


def caption_texts(path: str | Path, text: str) -> list[str]:
    """Every caption of a caption file's ``text``, in file order, without reading image ids
    (a tokenizer needs none: an ALBEF list or JSONL file of any image names will do)."""
    path = Path(path)
    fmt = detect_caption_format(path, text)
    if fmt == "jsonl":
        return [c for _, _, texts in _jsonl_records(path, text) for c in texts]
    if fmt == "caption_list":
        return [c for r in parse_caption_list(path, parse_json(path, text)) for c in r.captions]
    return [c for im in parse_captioned_images(path, text, fmt) for c in im.captions]


def _from_jsonl(path: Path, text: str, split: str) -> list[CaptionedImage]:
    return _merged(path, _jsonl_records(path, text), split)


def _jsonl_records(path: Path, text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(where, image, (text,)) of each line of a JSONL caption file."""
    listed: list[tuple[str, str, tuple[str, ...]]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {n}"
        entry = check_kind(path, parse_json(f"{path}, {where}", line), where, "object")
        listed.append((where, json_field(path, entry, "image", where, "string"),
                       (json_field(path, entry, "text", where, "string"),)))
    if not listed:
        raise input_error(path, None, "empty: no {image, text} lines")
    check_captions(path, [(f"{where}.text", c) for where, _, texts in listed for c in texts])
    return listed


def _merged(path: Path, listed: list[tuple[str, str, tuple[str, ...]]],
            split: str) -> list[CaptionedImage]:
    """One record per image file, its captions in file order (the ALBEF training files and
    JSONL list an image once per caption)."""
    merged: dict[int, tuple[str, list[str]]] = {}
    for where, image, captions in listed:
        try:
            image_id = parse_image_id(Path(image).stem)
        except ValueError:
            raise input_error(path, f"{where}.image", f"{image!r} has no id in its name "
                              "(expected trailing digits, e.g. COCO_val2014_"
                              "000000060623.jpg)") from None
        known = merged.setdefault(image_id, (image, []))
        if known[0] != image:
            raise input_error(path, f"{where}.image", f"{image!r} gives image id {image_id}, "
                              f"as {known[0]!r} does")
        known[1].extend(captions)
    return [CaptionedImage(i, split, image, tuple(texts))
            for i, (image, texts) in merged.items()]


__all__ = ["CAPTION_FORMATS", "CaptionedImage", "caption_texts", "detect_caption_format",
           "parse_captioned_images", "read_captioned_images", "split_from_name"]
