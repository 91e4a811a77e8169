"""RefCOCO / RefCOCO+ / RefCOCOg: the refs pickle (``refs(unc).p``, read by a data-only
unpickler) with the COCO instances file its boxes come from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlp.data.formats.coco import read_coco_instances
from vlp.data.readers import check_kind, json_field
from vlp.data.task_records import RefRecord
from vlp.errors import input_error
from vlp.safe_pickle import safe_load


def load_refs_pickle(path: str | Path) -> Any:
    """Load a ``refs(unc).p`` style pickle without running any code from it.

    The real files were written by Python 2 (protocol 2); its ``str`` values are decoded as
    UTF-8 (Latin-1 if that fails), tuples become lists. A pickle that references any class or
    function (``os.system``, a numpy array, ...) is refused before anything is called
    (:func:`vlp.safe_pickle.safe_load` with plain data only).

    Args:
        path: the pickle file.

    Raises:
        VlpError: the file is missing, is not a pickle, or references a class or function.
    """
    path = Path(path)
    if not path.is_file():
        raise input_error(path, None, "file not found" if not path.exists() else
                          "expected a file, found a directory")
    return safe_load(path, str(path), encoding="bytes", numpy=False)


def _ref_sentences(path: Path, ref: dict[str, Any], where: str
                   ) -> tuple[tuple[str, ...], tuple[int, ...]]:
    texts, ids = [], []
    for i, item in enumerate(json_field(path, ref, "sentences", where, "list")):
        name = f"{where}.sentences[{i}]"
        sent = check_kind(path, item, name, "object")
        texts.append(json_field(path, sent, "raw", name, "string"))
        ids.append(json_field(path, sent, "sent_id", name, "integer"))
    return tuple(texts), tuple(ids)


def _ref_record(path: Path, ref: dict[str, Any], where: str, instances_path: Path,
                boxes: dict[int, tuple[int, tuple[float, float, float, float]]]) -> RefRecord:
    ann_id = json_field(path, ref, "ann_id", where, "integer")
    if ann_id not in boxes:
        raise input_error(path, f"{where}.ann_id", f"{ann_id} is not an annotation id of "
                                                   f"{instances_path.name}")
    image_id = json_field(path, ref, "image_id", where, "integer")
    if boxes[ann_id][0] != image_id:
        raise input_error(path, f"{where}.image_id", f"{image_id} differs from image_id "
                                                     f"{boxes[ann_id][0]} of annotation {ann_id}")
    sentences, sent_ids = _ref_sentences(path, ref, where)
    return RefRecord(ref_id=json_field(path, ref, "ref_id", where, "integer"),
                     image_id=image_id, ann_id=ann_id,
                     split=json_field(path, ref, "split", where, "string"),
                     sentences=sentences, sent_ids=sent_ids, box_xywh=boxes[ann_id][1],
                     category_id=json_field(path, ref, "category_id", where, "integer"))


def read_refcoco(refs_pickle: str | Path, instances_json: str | Path,
                 split: str | None = None) -> list[RefRecord]:
    """Read RefCOCO / RefCOCO+ / RefCOCOg refs with the boxes of their objects.

    The pickle is loaded by :func:`load_refs_pickle`, which refuses anything but plain data.

    Args:
        refs_pickle: e.g. ``refcoco/refs(unc).p``: a pickled list of ``{"ref_id", "ann_id",
            "image_id", "split", "category_id", "sent_ids", "file_name", "sentences":
            [{"raw", "sent", "tokens", "sent_id"}]}``.
        instances_json: the dataset's ``instances.json`` (COCO format); each ref's box is the
            ``bbox`` of the annotation whose ``id`` is the ref's ``ann_id``.
        split: keep only refs whose ``split`` equals this (e.g. ``testA``); None keeps all.

    Returns:
        One record per ref, in file order.

    Raises:
        VlpError: a file is missing or malformed, the pickle references code, a ref names an
            annotation missing from the instances file or an image other than its annotation's.
    """
    path = Path(refs_pickle)
    refs = load_refs_pickle(path)
    if not isinstance(refs, list):
        raise input_error(path, None, "expected a pickled list of refs (dicts)")
    instances_path = Path(instances_json)
    instances = read_coco_instances(instances_path)
    boxes = {a.annotation_id: (a.image_id, a.bbox)
             for anns in instances.annotations.values() for a in anns}
    records = []
    for i, item in enumerate(refs):
        where = f"[{i}]"
        record = _ref_record(path, check_kind(path, item, where, "object"), where,
                             instances_path, boxes)
        if split is None or record.split == split:
            records.append(record)
    return records
