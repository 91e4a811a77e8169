"""Readers of the downstream-task formats as published: VQA v2, SNLI-VE, NLVR2, RefCOCO, VCR.

Field names are the published ones, misspellings included (SNLI-VE's ``Flikr30kID``). A bad
file is reported as one :class:`~vlp.errors.VlpError` line naming the file, the field and
what was expected, e.g. ``snli_ve_dev.jsonl: field 'line 3.gold_label': expected one of
entailment, neutral, contradiction, found '-'``. JSON-lines fields are named ``line N.key``
with N counted from 1.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vlp.data.features import parse_image_id
from vlp.data.readers import (
    check_kind,
    examples,
    json_entries,
    json_field,
    load_json,
    read_coco_instances,
    read_text,
)
from vlp.data.task_records import (
    VE_LABELS,
    NLVR2Record,
    RefRecord,
    VCRMetadata,
    VCRRecord,
    VCRToken,
    VERecord,
    VQAQuestion,
)
from vlp.errors import VlpError, data_warning, input_error
from vlp.fileio import write_text_atomic
from vlp.safe_pickle import safe_load

# VL-BERT's list (vcr/data/datasets/vcr.py); r2c's has 'Peyton' twice, which would give two
# people one name
GENDER_NEUTRAL_NAMES: tuple[str, ...] = (
    "Casey", "Riley", "Jessie", "Jackie", "Avery", "Jaime", "Peyton", "Kerry", "Jody",
    "Kendall", "Frankie", "Pat", "Quinn",
)


def _top_object(path: Path, doc: Any, what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        found = "a list" if isinstance(doc, list) else type(doc).__name__
        raise input_error(path, None, f"expected {what} (a JSON object at the top level), "
                                      f"found {found}")
    return doc


def read_json_lines(path: str | Path, what: str = "JSON lines") -> list[tuple[str, dict[str, Any]]]:
    """The objects of a JSON-lines file, each with its field path ``line N``.

    Args:
        path: the file.
        what: what the file should hold, for messages.

    Raises:
        VlpError: the file is missing, a directory, not UTF-8, holds no object, or a line
            is not a JSON object (the last one, typically, when the file was cut short).
    """
    path = Path(path)
    text = read_text(path, what)
    # split on "\n" only: JSON strings may hold U+2028, which str.splitlines would cut at
    lines = text.split("\n")
    last = max((n for n, line in enumerate(lines, start=1) if line.strip()), default=0)
    rows = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            torn = " (the file looks cut short)" if n == last and n > 1 else ""
            raise input_error(path, where, f"invalid JSON at column {e.colno}: {e.msg}"
                                           f"{torn}") from None
        except RecursionError:
            raise input_error(path, where, "invalid JSON: nested too deeply") from None
        rows.append((where, check_kind(path, obj, where, "object")))
    if not rows:
        raise input_error(path, None, f"empty file (expected {what}, one object per line)")
    return rows


def _unique(path: Path, seen: dict[Any, str], key: Any, where: str, field: str) -> None:
    """Refuse a second record with ``key`` (predictions are matched to records by it)."""
    if key in seen:
        raise input_error(path, f"{where}.{field}", f"duplicate {field} {key!r} (also "
                                                    f"{seen[key]})")
    seen[key] = where


def image_name_field(path: Path, row: dict[str, Any], key: str, where: str) -> str:
    """An image file name whose stem ends in the image id (``2248275918.jpg``).

    Raises:
        VlpError: the field is missing, not a string, or its stem has no trailing digits
            (the region store is keyed by them).
    """
    name = json_field(path, row, key, where, "string")
    try:
        parse_image_id(Path(name).stem)
    except ValueError:
        raise input_error(path, f"{where}.{key}", f"expected an image file name ending in "
                          f"its numeric id, e.g. '2248275918.jpg', found {name!r}") from None
    return str(name)


# --- VQA v2 -------------------------------------------------------------------------------


def _vqa_questions(path: Path) -> list[tuple[str, int, int, str]]:
    doc = _top_object(path, load_json(path), "a VQA questions file")
    seen: set[int] = set()
    rows = []
    for where, entry in json_entries(path, doc, "questions"):
        qid = json_field(path, entry, "question_id", where, "integer")
        if qid in seen:
            raise input_error(path, f"{where}.question_id", f"duplicate question id {qid}")
        seen.add(qid)
        rows.append((where, qid, json_field(path, entry, "image_id", where, "integer"),
                     json_field(path, entry, "question", where, "string")))
    if not rows:
        raise input_error(path, "questions", "empty list (expected the split's questions)")
    return rows


VQA_ANNOTATORS = 10  # answers per question in the official VQA v2 annotations


def _check_answer_counts(path: Path, records: list[VQAQuestion]) -> None:
    """Warn once when questions do not have the official ten annotator answers."""
    odd = [q.question_id for q in records if len(q.answers) != VQA_ANNOTATORS]
    if odd:
        counts = sorted({len(q.answers) for q in records if len(q.answers) != VQA_ANNOTATORS})
        data_warning(path, "annotations", f"{len(odd)} of {len(records)} questions have "
                     f"{'/'.join(map(str, counts))} answers instead of VQA v2's "
                     f"{VQA_ANNOTATORS} (question_id {examples(odd)}); their accuracy is "
                     "not comparable with the official one")


def _vqa_answers(path: Path, entry: dict[str, Any], where: str) -> tuple[str, ...]:
    answers = json_field(path, entry, "answers", where, "list")
    if not answers:
        raise input_error(path, f"{where}.answers", "empty (expected the annotators' answers)")
    texts = []
    for i, item in enumerate(answers):
        name = f"{where}.answers[{i}]"
        texts.append(json_field(path, check_kind(path, item, name, "object"), "answer", name,
                                "string"))
    return tuple(texts)


def _vqa_annotation(path: Path, entry: dict[str, Any], where: str,
                    question: tuple[str, int, int, str]) -> VQAQuestion:
    _, qid, image_id, text = question
    ann_image = json_field(path, entry, "image_id", where, "integer")
    if ann_image != image_id:
        raise input_error(path, f"{where}.image_id", f"{ann_image} differs from image_id "
                                                     f"{image_id} of question {qid}")
    return VQAQuestion(
        question_id=qid, image_id=image_id, question=text,
        answers=_vqa_answers(path, entry, where),
        answer_type=json_field(path, entry, "answer_type", where, "string"),
        question_type=json_field(path, entry, "question_type", where, "string"),
        multiple_choice_answer=json_field(path, entry, "multiple_choice_answer", where,
                                          "string"))


def _join_vqa(questions_path: Path, annotations_path: Path,
              questions: list[tuple[str, int, int, str]]) -> list[VQAQuestion]:
    doc = _top_object(annotations_path, load_json(annotations_path), "a VQA annotations file")
    by_id = {q[1]: q for q in questions}
    records: dict[int, VQAQuestion] = {}
    for where, entry in json_entries(annotations_path, doc, "annotations"):
        qid = json_field(annotations_path, entry, "question_id", where, "integer")
        if qid not in by_id:
            raise input_error(annotations_path, f"{where}.question_id",
                              f"{qid} is not a question of {questions_path.name}")
        if qid in records:
            raise input_error(annotations_path, f"{where}.question_id",
                              f"duplicate question id {qid}")
        records[qid] = _vqa_annotation(annotations_path, entry, where, by_id[qid])
    for where, qid, _, _ in questions:
        if qid not in records:
            raise input_error(questions_path, f"{where}.question_id",
                              f"question {qid} has no annotation in {annotations_path.name}")
    joined = list(records.values())
    _check_answer_counts(annotations_path, joined)
    return joined


def read_vqa(questions_json: str | Path,
             annotations_json: str | Path | None = None) -> list[VQAQuestion]:
    """Read a VQA v2 questions file and, if given, its annotations file.

    Args:
        questions_json: e.g. ``v2_OpenEnded_mscoco_val2014_questions.json``:
            ``{"info", "task_type", "data_type", "data_subtype", "license",
            "questions": [{"image_id", "question", "question_id"}]}``.
        annotations_json: e.g. ``v2_mscoco_val2014_annotations.json``: ``{"info", "license",
            "data_type", "data_subtype", "annotations": [{"question_id", "image_id",
            "question_type", "answer_type", "multiple_choice_answer", "answers": [{"answer",
            "answer_confidence", "answer_id"}]}]}``. None for splits without annotations.

    Returns:
        One record per question: in annotations-file order when annotations are given (the
        order the official evaluation sums in), else in questions-file order.

    Raises:
        VlpError: a file is missing or malformed, an id is duplicated, the two files do not
            hold the same question ids, or a question's image differs between them.

    Questions whose number of annotator answers is not ten (VQA v2 has ten each) are
    reported by one data warning per file.
    """
    questions_path = Path(questions_json)
    questions = _vqa_questions(questions_path)
    if annotations_json is None:
        return [VQAQuestion(question_id=qid, image_id=image_id, question=text)
                for _, qid, image_id, text in questions]
    return _join_vqa(questions_path, Path(annotations_json), questions)


def write_vqa_results(path: str | Path, predictions: Mapping[int, str]) -> None:
    """Write predictions in the official results format, atomically.

    Args:
        path: the results file, e.g. ``vqaEval_results.json``.
        predictions: question id → answer; written as ``[{"question_id": int,
            "answer": str}]`` in the mapping's order.

    Raises:
        VlpError: an id is not an integer or an answer is not a string.
    """
    rows = [{"question_id": check_kind("predictions", qid, f"[{qid!r}] (key)", "integer"),
             "answer": check_kind("predictions", answer, f"[{qid!r}]", "string")}
            for qid, answer in predictions.items()]
    write_text_atomic(path, json.dumps(rows, ensure_ascii=False))


def read_vqa_results(path: str | Path) -> dict[int, str]:
    """Read an official VQA results file ``[{"question_id": int, "answer": str}]``.

    Args:
        path: the results file.

    Returns:
        Question id → answer, in file order.

    Raises:
        VlpError: the file is missing, malformed or empty, or a question id appears twice.
    """
    path = Path(path)
    doc = load_json(path)
    if not isinstance(doc, list):
        raise input_error(path, None, "expected a list of {question_id, answer} objects")
    if not doc:
        raise input_error(path, None, "empty list (expected one {question_id, answer} per "
                                      "question)")
    results: dict[int, str] = {}
    for i, item in enumerate(doc):
        where = f"[{i}]"
        entry = check_kind(path, item, where, "object")
        qid = json_field(path, entry, "question_id", where, "integer")
        if qid in results:
            raise input_error(path, f"{where}.question_id", f"duplicate question id {qid}")
        results[qid] = json_field(path, entry, "answer", where, "string")
    return results


# --- SNLI-VE ------------------------------------------------------------------------------


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
        _unique(path, seen, pair_id, where, "pairID")
        records.append(VERecord(
            pair_id=pair_id, image=image_name_field(path, row, "Flikr30kID", where),
            hypothesis=json_field(path, row, "sentence2", where, "string"), label=label,
            premise=json_field(path, row, "sentence1", where, "string")))
    return records


# --- NLVR2 --------------------------------------------------------------------------------


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
    path = Path(path)
    records = []
    seen: dict[Any, str] = {}
    for where, row in read_json_lines(path, "NLVR2 JSON lines"):
        record = _nlvr2_record(path, row, where)
        _unique(path, seen, record.identifier, where, "identifier")
        records.append(record)
    return records


# --- RefCOCO ------------------------------------------------------------------------------


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


# --- VCR ----------------------------------------------------------------------------------


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
    path = Path(path)
    records = []
    seen: dict[Any, str] = {}
    for where, row in read_json_lines(path, "VCR JSON lines"):
        record = _vcr_record(path, row, where)
        _unique(path, seen, record.annot_id, where, "annot_id")
        records.append(record)
    return records


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
    doc = _top_object(path, load_json(path), "VCR image metadata")
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
