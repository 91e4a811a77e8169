"""Caption texts of any caption file: COCO captions, a Karpathy split, an image → captions
list, or plain text (one caption per line) — what a tokenizer is trained on."""

from __future__ import annotations

from pathlib import Path

from vlp.data.formats.caption_list import parse_caption_list
from vlp.data.formats.coco import parse_coco_captions
from vlp.data.formats.karpathy import parse_karpathy
from vlp.data.readers import parse_json, read_text
from vlp.errors import VlpError, input_error


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
        return [c for item in parse_caption_list(path, doc) for c in item.captions]
    if isinstance(doc, dict) and "annotations" in doc:
        return [r.caption for r in parse_coco_captions(path, doc)]
    if isinstance(doc, dict) and "images" in doc:
        return [c for im in parse_karpathy(path, doc) for c in im.captions]
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
