"""VCR JSON lines (``train.jsonl``, ``val.jsonl``, ``test.jsonl``) with their object tags,
and the per-image metadata files (boxes, names)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlp.data.readers import (
    check_kind,
    image_name_field,
    json_field,
    load_json,
    read_unique_records,
    top_object,
)
from vlp.data.task_records import VCRMetadata, VCRRecord, VCRToken
from vlp.errors import VlpError, input_error

# VL-BERT's list (vcr/data/datasets/vcr.py); r2c's has 'Peyton' twice, which would give two
# people one name
GENDER_NEUTRAL_NAMES: tuple[str, ...] = (
    "Casey", "Riley", "Jessie", "Jackie", "Avery", "Jaime", "Peyton", "Kerry", "Jody",
    "Kendall", "Frankie", "Pat", "Quinn",
)


def _vcr_tokens(path: Path, value: Any, where: str, num_objects: int) -> tuple[VCRToken, ...]:
    tokens: list[VCRToken] = []
    for i, tok in enumerate(check_kind(path, value, where, "list")):
        name = f"{where}[{i}]"
        if isinstance(tok, str):
            tokens.append(tok)
            continue
        if not isinstance(tok, list):
            raise input_error(path, name, "expected a word or a list of object indices")
        refs = tuple(check_kind(path, r, f"{name}[{j}]", "integer") for j, r in enumerate(tok))
        bad = [r for r in refs if not 0 <= r < num_objects]
        if bad:
            raise input_error(path, name, f"object index {bad[0]} out of range "
                                          f"(the line has {num_objects} objects)")
        tokens.append(refs)
    return tuple(tokens)


def _vcr_choices(path: Path, row: dict[str, Any], key: str, where: str, num_objects: int
                 ) -> tuple[tuple[VCRToken, ...], ...]:
    choices = json_field(path, row, key, where, "list")
    if len(choices) != 4:
        raise input_error(path, f"{where}.{key}", f"expected 4 choices, found {len(choices)}")
    return tuple(_vcr_tokens(path, c, f"{where}.{key}[{i}]", num_objects)
                 for i, c in enumerate(choices))


def _vcr_label(path: Path, row: dict[str, Any], key: str, where: str) -> int | None:
    if key not in row:
        return None  # the test split has no labels
    label = json_field(path, row, key, where, "integer")
    if not 0 <= label < 4:
        raise input_error(path, f"{where}.{key}", f"expected 0 to 3, found {label}")
    return int(label)


def _vcr_record(path: Path, row: dict[str, Any], where: str) -> VCRRecord:
    objects = json_field(path, row, "objects", where, "list")
    names = tuple(check_kind(path, o, f"{where}.objects[{i}]", "string")
                  for i, o in enumerate(objects))
    n = len(names)
    return VCRRecord(
        annot_id=json_field(path, row, "annot_id", where, "string"),
        image=image_name_field(path, row, "img_fn", where),
        metadata=json_field(path, row, "metadata_fn", where, "string"), objects=names,
        question=_vcr_tokens(path, json_field(path, row, "question", where, "list"),
                             f"{where}.question", n),
        answers=_vcr_choices(path, row, "answer_choices", where, n),
        rationales=_vcr_choices(path, row, "rationale_choices", where, n),
        answer_label=_vcr_label(path, row, "answer_label", where),
        rationale_label=_vcr_label(path, row, "rationale_label", where))


def read_vcr(path: str | Path) -> list[VCRRecord]:
    """Read a VCR annotation file (``train.jsonl``, ``val.jsonl``, ``test.jsonl``).

    Args:
        path: JSON lines with ``annot_id``, ``img_fn``, ``metadata_fn``, ``objects``,
            ``question``, ``answer_choices`` (4), ``rationale_choices`` (4) and, except in the
            test split, ``answer_label`` and ``rationale_label``. A token is a word or a list
            of indices into ``objects``, e.g. ``["What", "is", [0], "doing", "?"]``.

    Raises:
        VlpError: the file is missing or empty, a line is not JSON, a field is missing or of
            the wrong type, an object index is out of range, a label is not 0 to 3, or an
            ``annot_id`` repeats.
    """
    return read_unique_records(path, "VCR JSON lines", _vcr_record,
                               lambda r: r.annot_id, "annot_id")


def _object_name(index: int, objects: Sequence[str],
                 person_names: Sequence[str] | None) -> str:
    if not 0 <= index < len(objects):
        raise VlpError(f"vcr_text: object index {index} out of range ({len(objects)} objects)")
    name = objects[index]
    if person_names is None:
        return f"{name}{index}"
    if name == "person":
        return person_names[index % len(person_names)]
    return name


def vcr_text(tokens: Sequence[VCRToken], objects: Sequence[str],
             person_names: Sequence[str] | None = GENDER_NEUTRAL_NAMES) -> str:
    """Render VCR tokens as plain text, object tags replaced by words.

    The usual rendering of r2c and VL-BERT: a person becomes a gender-neutral name, chosen by
    its index in ``objects`` (so one person keeps one name across question and choices), any
    other object its class name; a tag of several objects joins them with "and" (VL-BERT).
    Tokens are joined by single spaces. ``["What", "is", [0, 2], "doing", "?"]`` with objects
    ``["person", "dog", "person"]`` gives ``"What is Casey and Jessie doing ?"``.

    Args:
        tokens: a question, answer or rationale of a :class:`VCRRecord`.
        objects: the record's ``objects``.
        person_names: names for people; None names every object by class and index instead
            (``"person0 and person2"``).

    Raises:
        VlpError: a tag refers to an index outside ``objects``.
    """
    words = []
    for tok in tokens:
        if isinstance(tok, str):
            words.append(tok)
        else:
            words.append(" and ".join(_object_name(i, objects, person_names) for i in tok))
    return " ".join(words)


def _vcr_box(path: Path, value: Any, where: str) -> tuple[float, float, float, float, float]:
    box = check_kind(path, value, where, "list")
    if len(box) != 5:
        raise input_error(path, where, f"expected [x1, y1, x2, y2, score], found {len(box)} "
                                       "values")
    x1, y1, x2, y2, score = (float(check_kind(path, v, f"{where}[{i}]", "number"))
                             for i, v in enumerate(box))
    return x1, y1, x2, y2, score


def read_vcr_metadata(path: str | Path) -> VCRMetadata:
    """Read the metadata JSON of one VCR image (the file ``metadata_fn`` names).

    Args:
        path: JSON ``{"boxes": [[x1, y1, x2, y2, score]], "segms": [...], "width",
            "height", "names"?}``; ``segms`` is not read.

    Raises:
        VlpError: the file is missing or malformed.
    """
    path = Path(path)
    doc = top_object(path, load_json(path), "VCR image metadata")
    boxes = tuple(_vcr_box(path, b, f"boxes[{i}]")
                  for i, b in enumerate(json_field(path, doc, "boxes", "", "list")))
    names: tuple[str, ...] = ()
    if "names" in doc:
        names = tuple(check_kind(path, n, f"names[{i}]", "string")
                      for i, n in enumerate(json_field(path, doc, "names", "", "list")))
    width, height = (json_field(path, doc, key, "", "integer") for key in ("width", "height"))
    for key, value in (("width", width), ("height", height)):
        if value <= 0:
            raise input_error(path, key, f"expected a positive number of pixels, found {value}")
    return VCRMetadata(boxes=boxes, width=width, height=height, names=names)
