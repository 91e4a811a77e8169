"""Visual entailment (SNLI-VE): does the image entail, contradict or not settle the text?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor

from vlp.data.batch import Batch
from vlp.data.features import parse_image_id
from vlp.data.formats.snli_ve import read_snli_ve
from vlp.data.readers import json_field, read_json_lines
from vlp.data.task_records import VE_LABELS, VERecord
from vlp.errors import VlpError, input_error
from vlp.eval.classify import accuracy
from vlp.fileio import write_text_atomic
from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.objectives.base import Objective
from vlp.tasks.base import AnyTaskData, TaskData, TaskExample
from vlp.tasks.heads import PairClassifier
from vlp.tasks.registry import HeadSpec, TaskSpec, register_task


def image_id_of(name: str) -> int:
    """A store image id from an image file name (``2248275918.jpg``, ``world_…42.png``).

    Raises:
        VlpError: the name's stem does not end in digits.
    """
    try:
        return parse_image_id(Path(name).stem)
    except ValueError:
        raise VlpError(f"image {name!r}: expected a file name ending in its numeric id, "
                       "e.g. '2248275918.jpg'") from None


class VEData(TaskData[VERecord, str, str]):
    """One split of SNLI-VE: 3-way classification of (image, hypothesis).

    Predictions are written as JSON lines ``{"pairID": …, "gold_label": …}`` — the
    dataset's own field names, since SNLI-VE has no official submission format.
    """

    name = "ve"
    roles = ("jsonl",)
    world_files: ClassVar[dict[str, str]] = {"jsonl": "annotations/snli_ve_{split}.jsonl"}
    split_names: ClassVar[dict[str, str]] = {"val": "dev"}
    labels = VE_LABELS

    def read(self) -> list[VERecord]:
        return read_snli_ve(self.files["jsonl"])

    def build_examples(self) -> list[TaskExample]:
        ids = self.encode([r.hypothesis for r in self.records])
        return [TaskExample(i, image_id_of(r.image), t, VE_LABELS.index(r.label))
                for i, (r, t) in enumerate(zip(self.records, ids, strict=True))]

    def target_tensor(self, rows: list[TaskExample], batch: Batch) -> Tensor:
        return torch.tensor([r.target for r in rows])

    def predictions(self, scores: dict[int, Tensor]) -> dict[str, str]:
        return {self.records[self.examples[i].record].pair_id: VE_LABELS[int(s.argmax())]
                for i, s in sorted(scores.items())}

    def score(self, predictions: dict[str, str]) -> dict[str, float]:
        """Accuracy on the pairs ``predictions`` name."""
        scored = self.scored_records(predictions, lambda r: r.pair_id, "pairs")
        return {"ve_acc": 100.0 * accuracy([predictions[r.pair_id] for r in scored],  # %
                                           [r.label for r in scored])}

    def write_predictions(self, path: Path, predictions: dict[str, str]) -> None:
        lines = [json.dumps({"pairID": k, "gold_label": v}) for k, v in predictions.items()]
        write_text_atomic(path, "".join(line + "\n" for line in lines))

    def read_predictions(self, path: Path) -> dict[str, str]:
        self.predictions_source = str(path)
        out: dict[str, str] = {}
        seen: dict[str, str] = {}
        for where, row in read_json_lines(path, 'SNLI-VE predictions ({"pairID", '
                                                '"gold_label"} per line)'):
            pair_id = json_field(path, row, "pairID", where, "string")
            label = json_field(path, row, "gold_label", where, "string")
            if label not in VE_LABELS:
                raise input_error(path, f"{where}.gold_label",
                                  f"expected one of {', '.join(VE_LABELS)}, found {label!r}")
            if pair_id in seen:
                raise input_error(path, f"{where}.pairID", f"duplicate pairID {pair_id!r} "
                                                           f"(also {seen[pair_id]})")
            seen[pair_id] = where
            out[pair_id] = label
        return out


def build_ve_head(cfg: ModelConfig, model: VLEncoder, data: AnyTaskData) -> Objective:
    """A 3-way classifier of the pooled pair."""
    return PairClassifier(cfg.hidden_size, len(data.labels))


register_task(TaskSpec("ve", VEData, "SNLI-VE visual entailment: 3-way accuracy",
                       head_choice=HeadSpec("ve", build_ve_head)))
