"""Visual entailment (SNLI-VE): does the image entail, contradict or not settle the text?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from vlp.data.batch import Batch
from vlp.data.features import parse_image_id
from vlp.data.task_readers import read_snli_ve
from vlp.data.task_records import VE_LABELS
from vlp.errors import input_error
from vlp.eval.classify import accuracy
from vlp.fileio import write_text_atomic
from vlp.tasks.base import TaskData, TaskExample


def image_id_of(name: str) -> int:
    """A store image id from an image file name (``2248275918.jpg``, ``world_…42.png``)."""
    return parse_image_id(Path(name).stem)


class VEData(TaskData):
    """One split of SNLI-VE: 3-way classification of (image, hypothesis).

    Predictions are written as JSON lines ``{"pairID": …, "gold_label": …}`` — the
    dataset's own field names, since SNLI-VE has no official submission format.
    """

    name = "ve"
    roles = ("jsonl",)
    world_files: ClassVar[dict[str, str]] = {"jsonl": "annotations/snli_ve_{split}.jsonl"}
    split_names: ClassVar[dict[str, str]] = {"val": "dev"}
    labels = VE_LABELS

    def read(self) -> list[Any]:
        return read_snli_ve(self.files["jsonl"])

    def build_examples(self) -> list[TaskExample]:
        ids = self.encode([r.hypothesis for r in self.records])
        return [TaskExample(i, image_id_of(r.image), t, VE_LABELS.index(r.label))
                for i, (r, t) in enumerate(zip(self.records, ids, strict=True))]

    def target_tensor(self, rows: list[TaskExample], batch: Batch) -> Tensor:
        return torch.tensor([r.target for r in rows])

    def predictions(self, scores: dict[int, Tensor]) -> dict[Any, Any]:
        return {self.records[self.examples[i].record].pair_id: VE_LABELS[int(s.argmax())]
                for i, s in sorted(scores.items())}

    def score(self, predictions: dict[Any, Any]) -> dict[str, float]:
        missing = [r.pair_id for r in self.records if r.pair_id not in predictions]
        if missing:
            raise input_error("predictions", missing[0], f"no prediction ({len(missing)} "
                              "pairs of the split have none)")
        return {"ve_acc": accuracy([predictions[r.pair_id] for r in self.records],
                                   [r.label for r in self.records])}

    def write_predictions(self, path: Path, predictions: dict[Any, Any]) -> None:
        lines = [json.dumps({"pairID": k, "gold_label": v}) for k, v in predictions.items()]
        write_text_atomic(path, "".join(line + "\n" for line in lines))

    def read_predictions(self, path: Path) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                out[row["pairID"]] = row["gold_label"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise input_error(path, f"line {n}", "expected {\"pairID\", \"gold_label\"} "
                                  f"({e})") from e
            if out[row["pairID"]] not in VE_LABELS:
                raise input_error(path, f"line {n}.gold_label",
                                  f"expected one of {', '.join(VE_LABELS)}")
        return out
