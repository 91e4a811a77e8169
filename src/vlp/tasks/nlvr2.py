"""NLVR2: is a statement true of a pair of images? Scored by accuracy and consistency."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from torch import Tensor

from vlp.data.formats.nlvr2 import read_nlvr2
from vlp.data.readers import read_text
from vlp.data.task_records import NLVR2Record
from vlp.errors import input_error
from vlp.eval.classify import nlvr2_metrics
from vlp.fileio import write_text_atomic
from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.objectives.base import Objective
from vlp.tasks.base import AnyTaskData, TaskExample
from vlp.tasks.groups import GroupedTaskData
from vlp.tasks.heads import PairGroupClassifier
from vlp.tasks.registry import HeadSpec, TaskSpec, register_task
from vlp.tasks.ve import image_id_of

NLVR2_LABELS: tuple[str, ...] = ("False", "True")


class NLVR2Data(GroupedTaskData[NLVR2Record, str, bool]):
    """One split of NLVR2: each record is two rows, the statement with the left image and
    with the right, classified together (:class:`~vlp.tasks.heads.PairGroupClassifier`).

    Predictions are written as NLVR2's official ``eval/metrics.py`` reads them: a CSV of
    ``identifier,prediction`` lines (no header), the prediction ``True`` or ``False``.
    """

    name = "nlvr2"
    predictions_suffix = ".csv"
    roles = ("json",)
    world_files: ClassVar[dict[str, str]] = {"json": "annotations/nlvr2_{split}.json"}
    split_names: ClassVar[dict[str, str]] = {"val": "dev"}
    labels = NLVR2_LABELS
    group_size = 2

    def read(self) -> list[NLVR2Record]:
        return read_nlvr2(self.files["json"])

    def build_groups(self) -> list[list[TaskExample]]:
        ids = self.encode([r.sentence for r in self.records])
        return [[TaskExample(i, image_id_of(image), t, int(r.label), group=i)
                 for image in (r.left_image, r.right_image)]
                for i, (r, t) in enumerate(zip(self.records, ids, strict=True))]

    def predictions(self, scores: dict[int, Tensor]) -> dict[str, bool]:
        """Identifier → predicted truth, from each record's (2,) group logits."""
        return {self.records[i].identifier: int(s.argmax()) == NLVR2_LABELS.index("True")
                for i, s in sorted(scores.items())}

    def score(self, predictions: dict[str, bool]) -> dict[str, float]:
        """Accuracy and consistency on the examples ``predictions`` name."""
        scored = self.scored_records(predictions, lambda r: r.identifier, "examples")
        metrics = nlvr2_metrics([r.identifier for r in scored],
                                [bool(predictions[r.identifier]) for r in scored],
                                [r.label for r in scored])
        return {"nlvr2_acc": 100.0 * metrics["accuracy"],  # percent, as every task reports
                "nlvr2_consistency": 100.0 * metrics["consistency"]}

    def write_predictions(self, path: Path, predictions: dict[str, bool]) -> None:
        write_text_atomic(path, "".join(f"{k},{bool(v)}\n" for k, v in predictions.items()))

    def read_predictions(self, path: Path) -> dict[str, bool]:
        self.predictions_source = str(path)
        lines = read_text(path, "NLVR2 predictions, 'identifier,True|False' lines").split("\n")
        out: dict[str, bool] = {}
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            parts = line.strip().split(",")
            if len(parts) != 2 or parts[1].strip().lower() not in ("true", "false") \
                    or not parts[0].strip():
                raise input_error(path, f"line {n}", "expected 'identifier,True' or "
                                  f"'identifier,False' (NLVR2's CSV), found {line.strip()!r}")
            identifier = parts[0].strip()
            if identifier in out:
                raise input_error(path, f"line {n}", f"duplicate identifier {identifier!r}")
            out[identifier] = parts[1].strip().lower() == "true"
        if not out:
            raise input_error(path, None, "empty file (expected 'identifier,True|False' "
                                          "lines, one per example)")
        return out


def build_nlvr2_head(cfg: ModelConfig, model: VLEncoder, data: AnyTaskData) -> Objective:
    """The two pooled pairs concatenated and classified (UNITER's "pair" setting)."""
    return PairGroupClassifier(cfg.hidden_size)


register_task(TaskSpec("nlvr2", NLVR2Data, "NLVR2: a statement about two images, true or "
                       "false; accuracy and consistency",
                       head_choice=HeadSpec("nlvr2", build_nlvr2_head)))
