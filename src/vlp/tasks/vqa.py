"""VQA v2: an answer classifier with soft scores, scored by the official VQA accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from vlp.config import check_fields, ranged
from vlp.data.batch import Batch
from vlp.data.formats.vqa import read_vqa, read_vqa_results, write_vqa_results
from vlp.data.task_records import VQAQuestion
from vlp.errors import VlpError, input_error
from vlp.eval.vqa import answer_targets, build_answer_vocab, evaluate_vqa
from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.objectives.base import Objective
from vlp.tasks.base import AnyTaskData, TaskData, TaskExample
from vlp.tasks.heads import PairClassifier
from vlp.tasks.registry import HeadSpec, TaskSpec, register_task


@dataclass(frozen=True)
class VQAOptions:
    """VQA's options (``task.options``).

    Attributes:
        min_answer_count: annotator answers an answer needs to enter the vocabulary.
    """

    min_answer_count: int = ranged(1, ge=1)

    def __post_init__(self) -> None:
        check_fields(self, "task.options")


class VQAData(TaskData[VQAQuestion, int, str]):
    """One split of VQA v2 (questions file, and annotations where the split has them).

    The answer vocabulary is built from the training split's annotator answers
    (``min_answer_count`` or more) and handed to the other splits, so the head's outputs
    mean the same answers everywhere. Targets are the official metric's soft scores.

    A split without an annotations file (the test split) reads as unlabelled; the training
    split, and any split being scored, without one is an error naming the file.
    """

    name = "vqa"
    roles = ("questions", "annotations")
    world_files: ClassVar[dict[str, str]] = {"questions": "annotations/vqa_{split}_questions.json",
                   "annotations": "annotations/vqa_{split}_annotations.json"}

    def __init__(self, *args: Any, answers: list[str] | None = None, min_answer_count: int = 1,
                 **kwargs: Any) -> None:
        self.answers = answers
        self.min_answer_count = min_answer_count
        super().__init__(*args, **kwargs)

    def read(self) -> list[VQAQuestion]:
        annotations = self.annotations_file()
        records = read_vqa(self.files["questions"], annotations)
        if self.answers is None and not self.scoring_only:  # the training split: its
            # answers are the label space
            if annotations is None:
                raise self.no_annotations("the training split needs them (its answers are "
                                          "the targets and the answer vocabulary)")
            self.answers = build_answer_vocab((q.answers for q in records),
                                              self.min_answer_count)
        self.labels = self.answers or []  # the head's outputs (none when only scoring)
        self.answer_index = {a: i for i, a in enumerate(self.labels)}
        return records

    def shared(self) -> dict[str, object]:
        """The answer vocabulary, for the other splits."""
        return {"answers": list(self.labels)}

    def annotations_file(self) -> Path | None:
        """The split's annotations file; None when the split has none (a test split)."""
        path = self.files.get("annotations")
        if path is None or not str(path).strip():
            return None
        if path.is_dir():
            raise input_error(path, None, "is a directory (expected a VQA annotations file, "
                                          "task.files.annotations)")
        return path if path.exists() else None

    def no_annotations(self, why: str) -> VlpError:
        """The error for a split without its annotations file, naming the file."""
        path = self.files.get("annotations")
        if path is None or not str(path).strip():
            return VlpError(f"task.files.annotations: not set; {why}")
        return input_error(path, None, f"file not found (the VQA annotations of split "
                                       f"'{self.split}', task.files.annotations); {why}")

    def require_labels(self) -> None:
        if self.annotations_file() is None:
            raise self.no_annotations("scoring needs the annotators' answers")

    def build_examples(self) -> list[TaskExample]:
        ids = self.encode([q.question for q in self.records])
        return [TaskExample(i, q.image_id, t, answer_targets(q.answers) if q.answers else None)
                for i, (q, t) in enumerate(zip(self.records, ids, strict=True))]

    def target_tensor(self, rows: list[TaskExample], batch: Batch) -> Tensor:
        targets = torch.zeros(len(rows), len(self.labels))
        for row, example in enumerate(rows):
            assert isinstance(example.target, dict)  # soft scores, answer → score
            for answer, score in example.target.items():
                if answer in self.answer_index:  # answers outside the vocabulary: no target
                    targets[row, self.answer_index[answer]] = score
        return targets

    def predictions(self, scores: dict[int, Tensor]) -> dict[int, str]:
        return {self.records[self.examples[i].record].question_id:
                self.labels[int(s.argmax())] for i, s in sorted(scores.items())}

    def score(self, predictions: dict[int, str]) -> dict[str, float]:
        """VQA accuracy of the questions ``predictions`` name (all must be questions of the
        split; a results file may cover more than ``task.eval_limit``), and how many were
        scored (``vqa/scored``)."""
        self.require_labels()
        scored = self.scored_records(predictions, lambda q: q.question_id, "questions")
        metrics = evaluate_vqa({q.question_id: predictions[q.question_id] for q in scored},
                               scored)
        out = {"vqa_acc": metrics.overall}
        out.update({f"vqa_acc/{k}": v for k, v in sorted(metrics.per_answer_type.items())})
        out["vqa/scored"] = float(metrics.num_questions)
        return out

    def write_predictions(self, path: Path, predictions: dict[int, str]) -> None:
        write_vqa_results(path, predictions)

    def read_predictions(self, path: Path) -> dict[int, str]:
        self.predictions_source = str(path)
        return read_vqa_results(path)


def build_vqa_head(cfg: ModelConfig, model: VLEncoder, data: AnyTaskData) -> Objective:
    """UNITER's VQA head: soft scores over the training split's answers."""
    return PairClassifier(cfg.hidden_size, len(data.labels), soft=True)


register_task(TaskSpec("vqa", VQAData, "VQA v2: answer classification, VQA accuracy",
                       VQAOptions, head_choice=HeadSpec("vqa", build_vqa_head)))
