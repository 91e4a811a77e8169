"""The image → captions list of the ALBEF / BLIP Karpathy files
(``[{"image": "val2014/x.jpg", "caption": [...] | "..."}]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlp.data.readers import check_captions, check_kind, json_field, load_json, type_name
from vlp.data.records import ImageCaptions
from vlp.errors import input_error


def parse_caption_list(path: Path, doc: Any) -> list[ImageCaptions]:
    if not isinstance(doc, list):
        raise input_error(path, None, "expected a list of {image, caption} objects, "
                                      f"found {type_name(doc)}")
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
    return parse_caption_list(path, load_json(path))
