"""VQA v2: questions and annotations files as published, and the official results file
(``[{"question_id", "answer"}]``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vlp.data.readers import check_kind, examples, json_entries, json_field, load_json, top_object
from vlp.data.task_records import VQAQuestion
from vlp.errors import data_warning, input_error
from vlp.fileio import write_text_atomic


def _vqa_questions(path: Path) -> list[tuple[str, int, int, str]]:
    doc = top_object(path, load_json(path), "a VQA questions file")
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
    doc = top_object(annotations_path, load_json(annotations_path), "a VQA annotations file")
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
