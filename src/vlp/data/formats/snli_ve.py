"""SNLI-VE JSON lines (``snli_ve_{train,dev,test}.jsonl``), field names as published,
misspellings included (``Flikr30kID``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlp.data.readers import check_unique, image_name_field, json_field, read_json_lines
from vlp.data.task_records import VE_LABELS, VERecord
from vlp.errors import input_error


def read_snli_ve(path: str | Path) -> list[VERecord]:
    """Read an SNLI-VE file (``snli_ve_train.jsonl``, ``snli_ve_dev.jsonl``, ...).

    Args:
        path: JSON lines with (among others) ``Flikr30kID`` (sic), ``gold_label``,
            ``sentence1`` (the caption, premise), ``sentence2`` (hypothesis) and ``pairID``.

    Raises:
        VlpError: the file is missing or empty, a line is not JSON, a field is missing or of
            the wrong type, ``gold_label`` is not entailment, neutral or contradiction, a
            ``pairID`` repeats, or an image name does not end in its numeric id.
    """
    path = Path(path)
    records = []
    seen: dict[Any, str] = {}
    for where, row in read_json_lines(path, "SNLI-VE JSON lines"):
        label = json_field(path, row, "gold_label", where, "string")
        if label not in VE_LABELS:
            raise input_error(path, f"{where}.gold_label",
                              f"expected one of {', '.join(VE_LABELS)}, found {label!r}")
        pair_id = json_field(path, row, "pairID", where, "string")
        check_unique(path, seen, pair_id, where, "pairID")
        records.append(VERecord(
            pair_id=pair_id, image=image_name_field(path, row, "Flikr30kID", where),
            hypothesis=json_field(path, row, "sentence2", where, "string"), label=label,
            premise=json_field(path, row, "sentence1", where, "string")))
    return records
