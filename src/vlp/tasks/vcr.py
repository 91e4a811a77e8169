"""VCR: pick the right answer (Q→A), or the right rationale given the right answer (QA→R),
among four; Q→AR — both right — from the two runs' predictions files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypedDict

from torch import Tensor

from vlp.config import check
from vlp.data.formats.vcr import read_vcr, vcr_text
from vlp.data.readers import check_kind, json_field, load_json
from vlp.data.task_records import VCRRecord, VCRToken
from vlp.errors import VlpError, input_error
from vlp.eval.classify import accuracy, vcr_accuracy
from vlp.fileio import write_text_atomic
from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.objectives.base import Objective
from vlp.tasks.base import AnyTaskData, TaskExample
from vlp.tasks.groups import GroupedTaskData, join_segments
from vlp.tasks.heads import ChoiceScorer
from vlp.tasks.registry import HeadSpec, TaskSpec, register_task
from vlp.tasks.ve import image_id_of

VCR_MODES: tuple[str, ...] = ("q2a", "qa2r")


class VCRPrediction(TypedDict):
    """One question's prediction: the four options' scores and the option picked (0-3)."""

    scores: list[float]
    pick: int


VCRPredictions = dict[str, VCRPrediction]  # annot_id → {"scores": [4 floats], "pick": int}


@dataclass(frozen=True)
class VCROptions:
    """VCR's options (``task.options``).

    Attributes:
        mode: ``q2a`` (question → answer) or ``qa2r`` (question and right answer →
            rationale); Q→AR combines the two runs' predictions.
    """

    mode: Literal["q2a", "qa2r"] = "q2a"

    def __post_init__(self) -> None:
        check(self.mode in VCR_MODES, "task.options.mode", f"expected one of "
              f"{', '.join(VCR_MODES)}, got {self.mode!r}")


def vcr_label(record: VCRRecord, mode: str) -> int | None:
    """The right choice of ``record`` in ``mode``: its answer (q2a) or rationale (qa2r)."""
    return record.answer_label if mode == "q2a" else record.rationale_label


def vcr_segments(record: VCRRecord, mode: str) -> list[list[str]]:
    """The texts of each of the four rows: ``[question, answer_i]`` (q2a) or
    ``[question, right answer, rationale_i]`` (qa2r), tags rendered by :func:`vcr_text`."""
    def text(tokens: Sequence[VCRToken]) -> str:
        return vcr_text(tokens, record.objects)

    question = text(record.question)
    if mode == "q2a":
        return [[question, text(a)] for a in record.answers]
    if record.answer_label is None:
        raise VlpError(f"vcr {record.annot_id}: no answer_label, which QA→R needs (the test "
                       "split has none: score its rationales given each answer instead)")
    answer = text(record.answers[record.answer_label])
    return [[question, answer, text(r)] for r in record.rationales]


class VCRData(GroupedTaskData[VCRRecord, str, VCRPrediction]):
    """One split of VCR in one mode: each record is four rows, the question (with the
    right answer in QA→R) paired with each choice, scored together by
    :class:`~vlp.tasks.heads.ChoiceScorer`. A row's text is ``[CLS] question [SEP] choice
    [SEP]`` (``[CLS] question [SEP] answer [SEP] rationale [SEP]``), cut longest segment
    first. Images are ``img_fn`` mapped to the store's id as :func:`image_id_of` does.

    Predictions are a JSON object ``{"mode": "q2a" | "qa2r", "predictions": [{"annot_id",
    "scores": [4 floats], "pick": 0-3}]}``; :func:`vcr_joint_accuracy` scores Q→AR from a
    Q→A and a QA→R file.

    Args:
        mode: ``q2a`` or ``qa2r``.
    """

    name = "vcr"
    roles = ("jsonl",)
    world_files: ClassVar[dict[str, str]] = {"jsonl": "annotations/vcr_{split}.jsonl"}
    labels = ("0", "1", "2", "3")
    group_size = 4

    def __init__(self, *args: Any, mode: str = "q2a", **kwargs: Any) -> None:
        if mode not in VCR_MODES:
            raise VlpError(f"task.options.mode: expected one of {', '.join(VCR_MODES)}, "
                           f"found {mode!r}")
        self.mode = mode
        super().__init__(*args, **kwargs)

    def read(self) -> list[VCRRecord]:
        return read_vcr(self.files["jsonl"])

    def build_groups(self) -> list[list[TaskExample]]:
        segments = [vcr_segments(r, self.mode) for r in self.records]
        # each record's distinct texts once: question (answer), then its four choices
        shared = len(segments[0][0]) - 1
        texts = [t for rows in segments for t in (*rows[0][:shared], *(r[-1] for r in rows))]
        ids = iter(self.encode(texts))
        groups = []
        for i, r in enumerate(self.records):
            head = [next(ids) for _ in range(shared)]
            choices = [next(ids) for _ in range(self.group_size)]
            label, image = vcr_label(r, self.mode), image_id_of(r.image)
            groups.append([TaskExample(i, image, join_segments([*head, c], self.max_text_len),
                                       label, group=i) for c in choices])
        return groups

    # ---------------------------------------------------------------- results
    def predictions(self, scores: dict[int, Tensor]) -> VCRPredictions:
        """annot_id → the record's four scores and the pick, from its (4,) scores."""
        return {self.records[i].annot_id: {"scores": [float(v) for v in s.tolist()],
                                           "pick": int(s.argmax())}
                for i, s in sorted(scores.items())}

    def score(self, predictions: VCRPredictions) -> dict[str, float]:
        """Accuracy in this mode on the questions ``predictions`` name."""
        scored = self.scored_records(predictions, lambda r: r.annot_id, "questions")
        picks, labels = _aligned(scored, predictions, self.mode)
        return {f"vcr_{self.mode}": 100.0 * accuracy(picks, labels)}  # percent

    def write_predictions(self, path: Path, predictions: VCRPredictions) -> None:
        write_vcr_predictions(path, self.mode, predictions)

    def read_predictions(self, path: Path) -> VCRPredictions:
        self.predictions_source = str(path)
        mode, predictions = read_vcr_predictions(path)
        if mode != self.mode:
            raise input_error(path, "mode", f"holds {mode} predictions, but task.options.mode "
                              f"is {self.mode}")
        return predictions


def _aligned(records: Sequence[VCRRecord], predictions: VCRPredictions, mode: str
             ) -> tuple[list[int], list[int]]:
    """Each record's pick and right choice in ``mode``, in record order."""
    missing = [r.annot_id for r in records if r.annot_id not in predictions]
    if missing:
        raise input_error("predictions", missing[0], f"no {mode} prediction ({len(missing)} "
                          "questions of the split have none)")
    labels = [label for r in records if (label := vcr_label(r, mode)) is not None]
    if len(labels) < len(records):
        raise VlpError(f"vcr: the split has no {mode} labels to score against (test split?)")
    return [int(predictions[r.annot_id]["pick"]) for r in records], labels


def write_vcr_predictions(path: Path, mode: str, predictions: VCRPredictions) -> None:
    """Write ``{"mode", "predictions": [{"annot_id", "scores", "pick"}]}`` atomically."""
    rows = [{"annot_id": k, "scores": v["scores"], "pick": v["pick"]}
            for k, v in predictions.items()]
    write_text_atomic(path, json.dumps({"mode": mode, "predictions": rows}))


def read_vcr_predictions(path: str | Path) -> tuple[str, VCRPredictions]:
    """The mode and the predictions of a VCR predictions file.

    Raises:
        VlpError: the file is missing, malformed or empty (a field missing or of the wrong
            kind, not four scores, a pick outside 0-3, an unknown mode, an annot_id twice).
    """
    doc = check_kind(path, load_json(path), "", "object")
    mode = json_field(path, doc, "mode", "", "string")
    if mode not in VCR_MODES:
        raise input_error(path, "mode", f"expected one of {', '.join(VCR_MODES)}, found "
                          f"{mode!r}")
    out: VCRPredictions = {}
    for n, item in enumerate(json_field(path, doc, "predictions", "", "list")):
        where = f"predictions[{n}]"
        row = check_kind(path, item, where, "object")
        scores = json_field(path, row, "scores", where, "list")
        pick = json_field(path, row, "pick", where, "integer")
        if len(scores) != 4 or not 0 <= pick < 4:
            raise input_error(path, where, f"expected 4 scores and a pick of 0-3, found "
                              f"{len(scores)} scores and pick {pick}")
        annot_id = json_field(path, row, "annot_id", where, "string")
        if annot_id in out:
            raise input_error(path, f"{where}.annot_id", f"duplicate annot_id {annot_id!r}")
        out[annot_id] = {
            "scores": [float(check_kind(path, s, f"{where}.scores[{i}]", "number"))
                       for i, s in enumerate(scores)], "pick": pick}
    if not out:
        raise input_error(path, "predictions", "empty list (expected one prediction per "
                                               "question)")
    return mode, out


def vcr_joint_accuracy(records: Sequence[VCRRecord], q2a: VCRPredictions,
                       qa2r: VCRPredictions) -> dict[str, float]:
    """Q→A, QA→R and Q→AR (both right) of a Q→A and a QA→R run on the same split.

    Args:
        records: the split's records (with labels).
        q2a: the Q→A predictions (annot_id → ``{"pick", …}``).
        qa2r: the QA→R predictions, made given the right answer as VCR's protocol does.

    Returns:
        ``{"vcr_q2a", "vcr_qa2r", "vcr_q2ar"}`` as fractions.
    """
    a_pick, a_label = _aligned(records, q2a, "q2a")
    r_pick, r_label = _aligned(records, qa2r, "qa2r")
    return {f"vcr_{k}": 100.0 * v  # percent, as the tasks report
            for k, v in vcr_accuracy(a_pick, a_label, r_pick, r_label).items()}


def vcr_joint_accuracy_of_files(annotations: str | Path, q2a_file: str | Path,
                                qa2r_file: str | Path) -> dict[str, float]:
    """:func:`vcr_joint_accuracy` of two predictions files against a VCR jsonl file.

    Raises:
        VlpError: a file is malformed, or the files' modes are not q2a and qa2r.
    """
    files = {"q2a": q2a_file, "qa2r": qa2r_file}
    predictions = {}
    for expected, path in files.items():
        mode, predictions[expected] = read_vcr_predictions(path)
        if mode != expected:
            raise input_error(path, "mode", f"expected {expected} predictions, found {mode}")
    return vcr_joint_accuracy(read_vcr(annotations), predictions["q2a"],
                              predictions["qa2r"])


def build_vcr_head(cfg: ModelConfig, model: VLEncoder, data: AnyTaskData) -> Objective:
    """One score per option, a softmax over each record's four."""
    return ChoiceScorer(cfg.hidden_size)


register_task(TaskSpec("vcr", VCRData, "VCR: the right answer (q2a) or rationale (qa2r) "
                       "of four; Q→AR from both runs", VCROptions,
                       head_choice=HeadSpec("vcr", build_vcr_head)))
