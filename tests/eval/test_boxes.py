"""Box IoU and conversions on hand-worked boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlp.errors import VlpError
from vlp.eval.boxes import (
    box_area,
    box_iou,
    grounding_accuracy,
    paired_iou,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def test_iou_cases() -> None:
    a = torch.tensor([[0.0, 0.0, 4.0, 4.0],  # 4 × 4
                      [0.0, 0.0, 2.0, 2.0]])  # 2 × 2
    b = torch.tensor([[0.0, 0.0, 4.0, 4.0],  # identical to a[0]
                      [1.0, 1.0, 3.0, 3.0],  # inside a[0]; overlaps a[1] by 1 × 1
                      [2.0, 0.0, 4.0, 2.0],  # shares an edge with a[1]
                      [5.0, 5.0, 6.0, 6.0],  # apart from both
                      [2.0, 2.0, 3.0, 3.0]])  # touches a[1] at one corner
    iou = box_iou(a, b)
    assert iou.shape == (2, 5)
    expected = torch.tensor([
        # identical, contained 4/16, 4/16, apart, 1/16
        [1.0, 0.25, 0.25, 0.0, 1 / 16],
        # a[1] inside a[0]: 4/16; overlap 1, union 4 + 4 - 1 = 7; edge; apart; corner
        [0.25, 1 / 7, 0.0, 0.0, 0.0],
    ])
    assert torch.allclose(iou, expected)


def test_iou_is_symmetric_and_accepts_lists() -> None:
    a = [[0, 0, 2, 2], [1, 0, 3, 1]]
    b = np.array([[1.0, 1.0, 3.0, 3.0]])
    assert torch.allclose(box_iou(a, b), box_iou(b, a).T)
    assert box_iou(a, b).dtype == torch.float64  # promoted to the float input's type


def test_empty_boxes_give_zero_not_nan() -> None:
    point = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    assert box_iou(point, point).item() == 0.0
    assert box_iou(torch.zeros(0, 4), point).shape == (0, 1)


def test_conversions() -> None:
    xywh = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    xyxy = xywh_to_xyxy(xywh)
    assert torch.equal(xyxy, torch.tensor([[1.0, 2.0, 4.0, 6.0], [0.0, 0.0, 0.0, 0.0]]))
    assert torch.equal(xyxy_to_xywh(xyxy), xywh)
    assert torch.equal(box_area(xyxy), torch.tensor([12.0, 0.0]))
    # the RefCOCO record tuple works as is
    assert xywh_to_xyxy((103.5, 300.0, 134.0, 177.5)).tolist() == [103.5, 300.0, 237.5, 477.5]


def test_grounding_accuracy_threshold_is_inclusive() -> None:
    gt = [[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 2, 2]]
    pred = [[0, 0, 2, 1],  # IoU 2/4 = 0.5: counts
            [0, 0, 2, 2],  # 1.0
            [1, 1, 3, 3]]  # 1/7
    assert torch.allclose(paired_iou(pred, gt), torch.tensor([0.5, 1.0, 1 / 7]))
    assert grounding_accuracy(pred, gt) == pytest.approx(2 / 3)


def test_bad_shapes() -> None:
    with pytest.raises(VlpError, match=r"\(\.\.\., 4\)"):
        box_iou(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(VlpError, match="paired_iou"):
        paired_iou(torch.zeros(2, 4), torch.zeros(3, 4))
    with pytest.raises(VlpError, match="no boxes"):
        grounding_accuracy(torch.zeros(0, 4), torch.zeros(0, 4))
