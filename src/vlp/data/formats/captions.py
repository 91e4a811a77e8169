"""Caption texts of any caption file (COCO captions, a Karpathy split, an image → captions
list, JSONL) or of plain text (one caption per line): what a tokenizer is trained on."""

from __future__ import annotations

from pathlib import Path

from vlp.data.formats.caption_files import caption_texts
from vlp.data.readers import read_text
from vlp.errors import input_error


def read_caption_texts(path: str | Path) -> list[str]:
    """All caption texts of a caption file in any format vlp reads, or of plain text.

    A file whose first non-space character is ``{`` or ``[`` is a caption file
    (:mod:`vlp.data.formats.caption_files`: Karpathy, COCO captions, the ALBEF / BLIP list
    or JSONL ``{image, text}``), its format recognised from its content. Any other file is
    plain text, one caption per line (blank lines skipped).

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
    return caption_texts(path, text)


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
