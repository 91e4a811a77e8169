"""Referring expressions (RefCOCO / RefCOCO+ / RefCOCOg): which region does the expression
pick out? Scored by accuracy at IoU ≥ 0.5 with the referred object's box."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, cast

import numpy as np
import torch
from torch import Tensor

from vlp.data.batch import Batch
from vlp.data.formats.refcoco import read_refcoco
from vlp.data.readers import check_kind, json_field, load_json
from vlp.data.task_records import RefRecord
from vlp.errors import input_error
from vlp.eval.boxes import box_iou, grounding_accuracy, xywh_to_xyxy, xyxy_to_xywh
from vlp.fileio import write_text_atomic
from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.objectives.base import Objective
from vlp.tasks.base import AnyTaskData, TaskData, TaskExample
from vlp.tasks.heads import RegionScorer
from vlp.tasks.registry import HeadSpec, TaskSpec, register_task

IOU_THRESHOLD = 0.5

RefKey = tuple[int, int]  # (ref_id, sent_id): one expression


def region_targets(region_boxes: Tensor, region_mask: Tensor, gt_xyxy: Tensor,
                   threshold: float = IOU_THRESHOLD) -> Tensor:
    """Which regions count as the referred object: IoU ≥ ``threshold`` with its box.

    Args:
        region_boxes: (B, R, 4) region corners in pixels (``Batch.region_boxes``).
        region_mask: (B, R) True on real regions.
        gt_xyxy: (B, 4) each row's ground-truth box, corners in pixels.
        threshold: the IoU a region needs.

    Returns:
        (B, R) float: 1 on qualifying real regions, else 0.
    """
    iou = torch.stack([box_iou(gt[None], boxes)[0]
                       for gt, boxes in zip(gt_xyxy, region_boxes, strict=True)])  # (B, R)
    return ((iou >= threshold) & region_mask).float()


class RefCOCOData(TaskData[RefRecord, RefKey, list[float]]):
    """One split of a RefCOCO-style dataset: a row per (ref, expression).

    ``split`` names the refs' own split (``train``, ``val``, ``testA``, ``testB``,
    ``test``); the refs pickle and ``instances.json`` hold every split. A row's target is
    its object's box; a batch's ``targets`` are (B, R) — 1 on the regions at IoU ≥ 0.5
    with that box (:func:`region_targets`). The prediction is the box of the top-scoring
    region, so a row none of whose regions overlaps the object enough is wrong whatever
    is picked (``refcoco_ceiling`` reports the share that can be right).

    Predictions are a JSON list ``[{"ref_id", "sent_id", "box": [x, y, w, h]}]`` (pixels,
    COCO's box convention), one per expression.
    """

    name = "refcoco"
    roles = ("refs", "instances")
    # no {split}: the split is a field of each ref in the one refs file
    world_files: ClassVar[dict[str, str]] = {"refs": "annotations/refs(world).p",
                                             "instances": "annotations/instances.json"}

    def read(self) -> list[RefRecord]:
        return read_refcoco(self.files["refs"], self.files["instances"], split=self.split)

    def build_examples(self) -> list[TaskExample]:
        self.regions()  # the head picks one of the detector's boxes: refuse pixels now
        texts = [s for r in self.records for s in r.sentences]
        ids = iter(self.encode(texts))
        self.keys: list[RefKey] = []  # (ref_id, sent_id) of each row
        rows = []
        for i, r in enumerate(self.records):
            gt = tuple(float(v) for v in xywh_to_xyxy(r.box_xywh).tolist())
            for sent_id in r.sent_ids:
                rows.append(TaskExample(i, r.image_id, next(ids), gt))
                self.keys.append((r.ref_id, sent_id))
        return rows

    def target_tensor(self, rows: list[TaskExample], batch: Batch) -> Tensor:
        assert batch.region_boxes is not None and batch.region_mask is not None
        gt = torch.tensor([r.target for r in rows], dtype=torch.float32)  # (B, 4)
        return region_targets(batch.region_boxes, batch.region_mask, gt)

    # ---------------------------------------------------------------- results
    def predictions(self, scores: dict[int, Tensor]) -> dict[RefKey, list[float]]:
        """(ref_id, sent_id) → the xywh box of the row's top-scoring region."""
        out: dict[RefKey, list[float]] = {}
        for i, s in sorted(scores.items()):
            example = self.examples[i]
            boxes = self.regions().store.get(example.image_id).boxes
            pick = int(s.argmax())  # padding scores -inf, so a real region
            box = xyxy_to_xywh(np.array(boxes[pick], dtype=np.float32))
            out[self.keys[i]] = [float(v) for v in box.tolist()]
        return out

    def score(self, predictions: dict[RefKey, list[float]]) -> dict[str, float]:
        """Accuracy at IoU ≥ 0.5 on the expressions ``predictions`` name, and the store's
        ceiling on the evaluated rows."""
        pool = [((r.ref_id, s), r.box_xywh) for r in self.all_records for s in r.sent_ids]
        keys = [(r.ref_id, s) for r in self.records for s in r.sent_ids]  # the rows' order
        evaluated = [(k, None) for k in keys]
        # items of the pool, each with its box (the evaluated rows carry only their key)
        scored = cast(list[tuple[RefKey, tuple[float, float, float, float]]],
                      self.scored_records(predictions, lambda item: item[0], "expressions",
                                          pool=pool, evaluated=evaluated))
        pred = xywh_to_xyxy([predictions[k] for k, _ in scored])  # (N, 4)
        gt = xywh_to_xyxy([box for _, box in scored])  # (N, 4)
        out = {"refcoco_acc": 100.0 * grounding_accuracy(pred, gt, IOU_THRESHOLD)}  # percent
        if not self.scoring_only:  # the ceiling needs the region store
            out["refcoco_ceiling"] = 100.0 * self.ceiling()
        return out

    def ceiling(self) -> float:
        """The share of rows with a region at IoU ≥ 0.5: the best accuracy possible with
        the store's regions."""
        hits = 0
        regions = self.regions()
        for e in self.examples:
            boxes = np.array(regions.store.get(e.image_id).boxes[:regions.max_regions],
                             np.float32)
            hits += bool((box_iou(torch.tensor([e.target]), boxes) >= IOU_THRESHOLD).any())
        return hits / len(self.examples)

    def write_predictions(self, path: Path, predictions: dict[RefKey, list[float]]) -> None:
        rows = [{"ref_id": ref_id, "sent_id": sent_id, "box": box}
                for (ref_id, sent_id), box in predictions.items()]
        write_text_atomic(path, json.dumps(rows))

    def read_predictions(self, path: Path) -> dict[RefKey, list[float]]:
        self.predictions_source = str(path)
        out: dict[RefKey, list[float]] = {}
        for n, item in enumerate(check_kind(path, load_json(path), "", "list")):
            where = f"[{n}]"
            row = check_kind(path, item, where, "object")
            box = json_field(path, row, "box", where, "list")
            if len(box) != 4:
                raise input_error(path, f"{where}.box", f"expected [x, y, w, h], found "
                                  f"{len(box)} values")
            key = (json_field(path, row, "ref_id", where, "integer"),
                   json_field(path, row, "sent_id", where, "integer"))
            if key in out:
                raise input_error(path, where, f"duplicate prediction for ref_id {key[0]}, "
                                               f"sent_id {key[1]}")
            out[key] = [float(check_kind(path, v, f"{where}.box[{i}]", "number"))
                        for i, v in enumerate(box)]
        if not out:
            raise input_error(path, None, "empty list (expected one {ref_id, sent_id, box} "
                                          "per expression)")
        return out


def build_refcoco_head(cfg: ModelConfig, model: VLEncoder, data: AnyTaskData) -> Objective:
    """One logit per visual token."""
    return RegionScorer(cfg.image_width)


register_task(TaskSpec("refcoco", RefCOCOData, "RefCOCO(+/g) referring expressions: the "
                       "region picked out, accuracy at IoU >= 0.5",
                       head_choice=HeadSpec("refcoco", build_refcoco_head)))
