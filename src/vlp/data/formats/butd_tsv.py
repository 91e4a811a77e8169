"""The bottom-up-attention TSV (BUTD, ViLBERT, LXMERT, VisualBERT) as region features.

:func:`read_butd_tsv` turns the rows into :class:`~vlp.data.features.Regions`, one per image,
and :func:`import_butd_tsv` writes them to a new :class:`~vlp.data.features.RegionStore`. A bad
row is one :class:`~vlp.errors.VlpError` line naming the file, the line and the field.
"""

from __future__ import annotations

import base64
import binascii
import csv
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from vlp.data.features import Regions, build_store, claim_store, is_positive_int, parse_image_id
from vlp.data.formats.region_source import (
    VG_OBJECT_CLASSES,
    SourceAudit,
    SourceFields,
    distribution_from_argmax,
    region_problem,
)
from vlp.errors import input_error

# BUTD TSV column layouts, chosen by column count when no fieldnames are given.
BUTD_FIELDS = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")
BUTD_CLS_FIELDS = (*BUTD_FIELDS, "cls_prob")
LXMERT_FIELDS = ("img_id", "img_h", "img_w", "objects_id", "objects_conf", "attrs_id",
                 "attrs_conf", "num_boxes", "boxes", "features")
_LAYOUTS = {6: BUTD_FIELDS, 7: BUTD_CLS_FIELDS, 10: LXMERT_FIELDS}
_ALIASES = {"img_id": "image_id", "img_h": "image_h", "img_w": "image_w"}


class _RowError(Exception):
    """A problem with one field of one TSV row (turned into a VlpError with the line)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _decode(row: dict[str, str], field: str, n: int, dtype: str, cols: int | None) -> np.ndarray:
    """A base64 raw buffer → (n, cols) array; cols None: inferred from the length."""
    text = row[field].strip()
    if text.startswith(("b'", 'b"')):  # Python 3 ports that wrote str(bytes)
        text = text[2:-1]
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise _RowError(field, f"invalid base64 ({err})") from None
    size = np.dtype(dtype).itemsize
    if cols is None:
        if len(raw) == 0 or len(raw) % (n * size):
            raise _RowError(field, f"expected num_boxes×D {dtype} (a multiple of "
                            f"{n}×{size} = {n * size} bytes), got {len(raw)} bytes")
        cols = len(raw) // (n * size)
    elif len(raw) != n * cols * size:
        shape = f"num_boxes×{cols}" if cols > 1 else "num_boxes"
        raise _RowError(field, f"expected {shape} {dtype} = {n * cols * size} bytes, "
                        f"got {len(raw)}")
    return np.frombuffer(raw, dtype=dtype).reshape(n, cols)


def _int_field(row: dict[str, str], field: str) -> int:
    text = row[field].strip()
    try:
        value = float(text)
    except ValueError:
        raise _RowError(field, f"expected a number, got {text[:40]!r}") from None
    if not is_positive_int(value):
        raise _RowError(field, f"expected a positive integer, got {text[:40]!r}")
    return int(text) if text.isdigit() else int(value)


def _tsv_classes(row: dict[str, str], n: int, num_classes: int) -> tuple[np.ndarray, str]:
    if "cls_prob" in row:
        return _decode(row, "cls_prob", n, "float32", None), "cls_prob"
    if "objects_id" in row and "objects_conf" in row:
        ids = _decode(row, "objects_id", n, "int64", 1)
        conf = _decode(row, "objects_conf", n, "float32", 1)
        try:
            return distribution_from_argmax(ids, conf, num_classes), "objects_conf"
        except ValueError as err:
            raise _RowError("objects_id", str(err)) from None
    return np.zeros((n, 0), dtype=np.float32), "cls_prob"


def _tsv_regions(row: dict[str, str], num_classes: int,
                 parse_id: Callable[[str], int]) -> tuple[Regions, SourceFields]:
    try:
        image_id = parse_id(row["image_id"])
    except ValueError as err:
        raise _RowError("image_id", str(err)) from None
    n = _int_field(row, "num_boxes")
    boxes = _decode(row, "boxes", n, "float32", 4).astype(np.float32)
    features = _decode(row, "features", n, "float32", None).astype(np.float32)
    cls_probs, cls_field = _tsv_classes(row, n, num_classes)
    fields = SourceFields("image_id", "features", "boxes", cls_field)
    problem = region_problem(features, boxes, cls_probs, fields)
    if problem:
        raise _RowError(*problem)
    return Regions(image_id, _int_field(row, "image_w"), _int_field(row, "image_h"),
                   features, boxes, cls_probs.astype(np.float32)), fields


def _tsv_layout(path: Path, first: list[str], fieldnames: Sequence[str] | None) -> list[str]:
    if fieldnames is None:
        if len(first) not in _LAYOUTS:
            raise input_error(path, None, f"line 1: expected 6 (BUTD), 7 (BUTD with cls_prob) "
                              f"or 10 (LXMERT) tab-separated columns, got {len(first)}; "
                              "pass fieldnames= for other layouts")
        fieldnames = _LAYOUTS[len(first)]
    names = [_ALIASES.get(name, name) for name in fieldnames]
    required = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")
    missing = [name for name in required if name not in names]
    if missing:
        raise input_error(path, missing[0], f"not among the fieldnames {list(fieldnames)}")
    return names


def read_butd_tsv(path: str | Path, fieldnames: Sequence[str] | None = None,
                  num_classes: int = VG_OBJECT_CLASSES,
                  parse_id: Callable[[str], int] = parse_image_id) -> Iterator[Regions]:
    """Regions from a bottom-up-attention TSV (BUTD, ViLBERT, LXMERT, VisualBERT).

    Rows are tab-separated, without a header. With ``fieldnames=None`` the layout is
    chosen by column count: 6 → BUTD ``generate_tsv.py`` (image_id, image_w, image_h,
    num_boxes, boxes, features), 7 → the same plus ``cls_prob``, 10 → LXMERT (img_id,
    img_h, img_w, objects_id, objects_conf, attrs_id, attrs_conf, num_boxes, boxes,
    features). ``img_*`` and ``image_*`` names are interchangeable. Array fields are
    base64 raw buffers: boxes float32 (n×4), features float32 (n×D), cls_prob float32
    (n×C), objects_id int64 (n), objects_conf float32 (n).

    Class distributions: ``cls_prob`` when present (C from the data, e.g. 1601 with
    background); otherwise built from objects_id/objects_conf with
    :func:`distribution_from_argmax` over ``num_classes``; otherwise C = 0.

    Every row must have the same D and C, a unique image id and finite values. Boxes
    outside their image or inverted (x2 < x1) are legal but suspicious: after the last
    row they are reported once with :func:`vlp.errors.data_warning` (an error in strict
    mode), with their count and the first examples.

    Args:
        path: the TSV file.
        fieldnames: column names, if not one of the three layouts above.
        num_classes: C for distributions rebuilt from objects_id/objects_conf.
        parse_id: string image id → int (default :func:`parse_image_id`, trailing digits).

    Raises:
        VlpError: naming the file, line and field (not UTF-8, bad base64, wrong byte
            count, a repeated id, ...).
    """
    path = Path(path)
    if path.is_dir():
        raise input_error(path, None, "is a directory; expected a TSV file")
    # Feature fields are megabytes long; csv's default limit is 128 KiB. Raising the
    # process-wide limit is harmless. (sys.maxsize overflows a C long on Windows.)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with path.open(newline="", encoding="utf-8") as f:
            yield from _read_tsv_rows(path, csv.reader(f, delimiter="\t"), fieldnames,
                                      num_classes, parse_id)
    except OSError as err:
        raise input_error(path, None, f"cannot read ({err.strerror})") from None


def _read_tsv_rows(path: Path, reader: Iterator[list[str]], fieldnames: Sequence[str] | None,
                   num_classes: int, parse_id: Callable[[str], int]) -> Iterator[Regions]:
    names: list[str] | None = None
    audit = SourceAudit()
    line = 0
    try:
        for line, values in enumerate(reader, start=1):
            if not values:
                continue
            names = names or _tsv_layout(path, values, fieldnames)
            if len(values) != len(names):
                raise _RowError(names[0], f"expected {len(names)} tab-separated columns, "
                                f"got {len(values)}")
            regions, fields = _tsv_regions(dict(zip(names, values, strict=True)), num_classes,
                                           parse_id)
            problem = audit.check(regions, f"line {line}", fields)
            if problem:
                raise _RowError(problem[0] or "image_id", problem[1])
            yield regions
    except _RowError as err:
        raise input_error(path, err.field, f"line {line}: {err}") from None
    except csv.Error as err:
        raise input_error(path, None, f"line {line + 1}: malformed TSV ({err})") from None
    except UnicodeDecodeError:
        bad_line, byte = _first_non_utf8_line(path)
        raise input_error(path, None, f"line {bad_line}: not UTF-8 text (byte 0x{byte:02x}); "
                          "expected a tab-separated text file") from None
    if names is None:
        raise input_error(path, None, "empty file; expected one row per image")
    audit.finish(path, "boxes")


def _first_non_utf8_line(path: Path) -> tuple[int, int]:
    """(line number, first bad byte) of the first line that is not UTF-8 (read again in
    binary: the text decoder fails on a whole chunk, not on a line)."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                return number, raw[err.start]
    return 0, 0


def import_butd_tsv(src: str | Path, out_dir: str | Path, *,
                    num_classes: int = VG_OBJECT_CLASSES,
                    fieldnames: Sequence[str] | None = None, dtype: str = "float16",
                    class_names: Sequence[str] | None = None, progress: bool = True,
                    overwrite: bool = False) -> Path:
    """Build a store from a bottom-up-attention TSV (see :func:`read_butd_tsv`).

    ``out_dir`` is checked before anything is read: it may not be, hold or lie inside
    ``src``, and an existing non-empty ``out_dir`` needs ``overwrite=True``.

    Returns:
        ``out_dir``.
    """
    claim_store(out_dir, overwrite=overwrite, inputs=[src])
    regions = read_butd_tsv(src, fieldnames=fieldnames, num_classes=num_classes)
    return build_store(regions, out_dir, dtype=dtype, class_names=class_names,
                       source=f"bottom-up-attention TSV {Path(src).name}", progress=progress,
                       overwrite=overwrite)
