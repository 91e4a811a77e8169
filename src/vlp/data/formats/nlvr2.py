"""NLVR2 JSON lines (``train.json``, ``dev.json``, ``test1.json``): a statement about a
pair of images, true or false."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlp.data.readers import image_name_field, json_field, read_unique_records
from vlp.data.task_records import NLVR2Record
from vlp.errors import VlpError, input_error


def nlvr2_image_names(identifier: str) -> tuple[str, str]:
    """The left and right image files of an NLVR2 example, as the NLVR2 README names them.

    ``split-set_id-pair_id-sentence_id`` → ``split-set_id-pair_id-img0.png`` and ``-img1.png``.

    Args:
        identifier: e.g. ``dev-850-0-0``.

    Raises:
        VlpError: the identifier does not have four ``-``-separated parts.
    """
    parts = identifier.split("-")
    if len(parts) != 4 or not all(parts):
        raise VlpError(f"NLVR2 identifier {identifier!r}: expected "
                       "'split-set_id-pair_id-sentence_id', e.g. 'dev-850-0-0'")
    stem = "-".join(parts[:3])
    return f"{stem}-img0.png", f"{stem}-img1.png"


def _nlvr2_label(path: Path, row: dict[str, Any], where: str) -> bool:
    label = json_field(path, row, "label", where, "string")
    # the official metrics.py compares lower-cased strings
    if label.lower() not in ("true", "false"):
        raise input_error(path, f"{where}.label", f"expected 'True' or 'False', found {label!r}")
    return label.lower() == "true"


def _nlvr2_record(path: Path, row: dict[str, Any], where: str) -> NLVR2Record:
    identifier = json_field(path, row, "identifier", where, "string")
    try:
        left, right = nlvr2_image_names(identifier)
    except VlpError as e:
        raise input_error(path, f"{where}.identifier", str(e)) from None
    if "left_image" in row:
        left = image_name_field(path, row, "left_image", where)
    if "right_image" in row:
        right = image_name_field(path, row, "right_image", where)
    return NLVR2Record(identifier=identifier,
                       sentence=json_field(path, row, "sentence", where, "string"),
                       label=_nlvr2_label(path, row, where), left_image=left, right_image=right)


def read_nlvr2(path: str | Path) -> list[NLVR2Record]:
    """Read an NLVR2 file (``train.json``, ``dev.json``, ``test1.json``: one object per line).

    Image files are named from the identifier as the NLVR2 README specifies
    (:func:`nlvr2_image_names`), unless a line has ``left_image`` / ``right_image`` fields
    (not in the published files; some converted copies add them), which then win.

    Args:
        path: JSON lines with ``identifier``, ``sentence``, ``label`` (``"True"`` /
            ``"False"``) and, unused here, ``left_url``, ``right_url``, ``writer``, ...

    Raises:
        VlpError: the file is missing or empty, a line is not JSON, a field is missing or of
            the wrong type, a label is not True/False, or an identifier is malformed or
            repeats.
    """
    return read_unique_records(path, "NLVR2 JSON lines", _nlvr2_record,
                               lambda r: r.identifier, "identifier")
