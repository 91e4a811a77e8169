"""Box conversions and IoU, for referring expressions (accuracy at IoU ≥ 0.5).

Boxes are in pixels. ``xyxy`` is ``(x1, y1, x2, y2)``, corners; ``xywh`` is COCO's
``(x, y, width, height)``. Coordinates are continuous: a box ``(0, 0, 2, 2)`` has area 4 and
two boxes that only share an edge do not overlap (IoU 0), as in torchvision (not the old
"+1" pixel-count convention of some detectors).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from vlp.errors import VlpError

BoxesLike = Tensor | np.ndarray | Sequence[Sequence[float]] | Sequence[float]


def _boxes(x: BoxesLike, name: str) -> Tensor:
    t = torch.as_tensor(x)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if t.shape[-1:] != (4,):
        raise VlpError(f"{name}: expected boxes of shape (..., 4), found {tuple(t.shape)}")
    return t


def xywh_to_xyxy(boxes: BoxesLike) -> Tensor:
    """``(x, y, w, h)`` → ``(x1, y1, x2, y2)``.

    Args:
        boxes: ``(..., 4)`` boxes.
    """
    b = _boxes(boxes, "xywh_to_xyxy")
    return torch.cat([b[..., :2], b[..., :2] + b[..., 2:]], dim=-1)  # (..., 4)


def xyxy_to_xywh(boxes: BoxesLike) -> Tensor:
    """``(x1, y1, x2, y2)`` → ``(x, y, w, h)``.

    Args:
        boxes: ``(..., 4)`` boxes.
    """
    b = _boxes(boxes, "xyxy_to_xywh")
    return torch.cat([b[..., :2], b[..., 2:] - b[..., :2]], dim=-1)  # (..., 4)


def box_area(boxes: BoxesLike) -> Tensor:
    """Area of ``(..., 4)`` xyxy boxes; inverted boxes count as 0."""
    b = _boxes(boxes, "box_area")
    return (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)


def _iou(a: Tensor, b: Tensor) -> Tensor:
    # IoU of broadcastable (..., 4) xyxy boxes
    dtype = torch.promote_types(a.dtype, b.dtype)
    a, b = a.to(dtype), b.to(dtype)
    top_left = torch.maximum(a[..., :2], b[..., :2])  # (..., 2)
    bottom_right = torch.minimum(a[..., 2:], b[..., 2:])  # (..., 2)
    wh = (bottom_right - top_left).clamp(min=0)  # (..., 2)
    inter = wh[..., 0] * wh[..., 1]  # (...)
    union = box_area(a) + box_area(b) - inter  # (...)
    safe = union.clamp(min=torch.finfo(dtype).tiny)
    return torch.where(union > 0, inter / safe, torch.zeros_like(inter))


def box_iou(a: BoxesLike, b: BoxesLike) -> Tensor:
    """Intersection over union of every box of ``a`` with every box of ``b``.

    Args:
        a: ``(N, 4)`` xyxy boxes.
        b: ``(M, 4)`` xyxy boxes.

    Returns:
        ``(N, M)`` IoU in [0, 1]; 0 where both boxes are empty (union 0).

    Raises:
        VlpError: an input is not ``(K, 4)``.
    """
    a, b = _boxes(a, "box_iou"), _boxes(b, "box_iou")
    if a.ndim != 2 or b.ndim != 2:
        raise VlpError(f"box_iou: expected (N, 4) and (M, 4), found {tuple(a.shape)} and "
                       f"{tuple(b.shape)}")
    return _iou(a[:, None, :], b[None, :, :])  # (N, M)


def paired_iou(a: BoxesLike, b: BoxesLike) -> Tensor:
    """IoU of ``a[i]`` with ``b[i]`` for each i.

    Args:
        a: ``(N, 4)`` xyxy boxes.
        b: ``(N, 4)`` xyxy boxes.

    Returns:
        ``(N,)`` IoU.

    Raises:
        VlpError: the shapes differ or are not ``(N, 4)``.
    """
    a, b = _boxes(a, "paired_iou"), _boxes(b, "paired_iou")
    if a.shape != b.shape or a.ndim != 2:
        raise VlpError(f"paired_iou: expected two (N, 4), found {tuple(a.shape)} and "
                       f"{tuple(b.shape)}")
    return _iou(a, b)  # (N,)


def grounding_accuracy(pred_xyxy: BoxesLike, gt_xyxy: BoxesLike,
                       threshold: float = 0.5) -> float:
    """Referring-expression accuracy: the fraction of predictions with IoU ≥ ``threshold``.

    Args:
        pred_xyxy: ``(N, 4)`` predicted boxes.
        gt_xyxy: ``(N, 4)`` ground-truth boxes.
        threshold: the IoU a prediction needs (0.5 in RefCOCO papers).

    Raises:
        VlpError: the shapes differ or there are no boxes.
    """
    iou = paired_iou(pred_xyxy, gt_xyxy)
    if iou.numel() == 0:
        raise VlpError("grounding_accuracy: no boxes to score")
    return float((iou >= threshold).double().mean())
