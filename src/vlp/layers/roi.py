"""Region operations on feature maps, in plain torch: RoIAlign and greedy NMS.

:func:`roi_align` has the semantics of the usual RoIAlign (Mask R-CNN; torchvision's
``roi_align``): each output bin averages ``sampling_ratio²`` bilinear samples of the
feature map, a sample outside ``[-1, H] × [-1, W]`` counts as 0, and ``aligned=True``
shifts the box by half a pixel so that its corners fall on pixel corners.

Bilinear sampling on a regular grid is separable: the value at ``(y, x)`` is
``Σᵢⱼ wʸᵢ(y) wˣⱼ(x) F[i, j]``, and the out-of-range zero is a product of a row and a column
condition too. So every box becomes two small weight matrices — rows ``(oh, H)`` and
columns ``(ow, W)``, each already averaged over its bin's samples — and the output is
``Aʸ F Aˣᵀ``, computed for all boxes at once. Averaging the output over its bins is the
same product with the two matrices averaged first (:func:`roi_align_mean`), which is what
region feature extraction needs and costs one matrix product per image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from vlp.errors import VlpError

BOX_CHUNK = 256  # boxes per step of roi_align: bounds the (k, C, oh, W) intermediate


def _check(features: Tensor, boxes: Tensor, output_size: tuple[int, int]) -> None:
    if features.dim() != 4:
        raise VlpError(f"roi_align: expected features of shape (B, C, H, W), got "
                       f"{tuple(features.shape)}")
    if boxes.dim() != 2 or boxes.shape[1] != 5:
        raise VlpError(f"roi_align: expected boxes of shape (K, 5) [batch_index, x1, y1, x2, "
                       f"y2], got {tuple(boxes.shape)}")
    if min(output_size) < 1:
        raise VlpError(f"roi_align: expected a positive output size, got {output_size}")
    if len(boxes):
        index = boxes[:, 0]
        if (index != index.round()).any() or index.min() < 0 or index.max() >= len(features):
            raise VlpError(f"roi_align: batch indices must be integers in [0, "
                           f"{len(features)}), got {sorted(set(index.tolist()))[:5]}")


def _axis_weights(start: Tensor, length: Tensor, bins: int, size: int,
                  sampling_ratio: int) -> Tensor:
    """Bilinear weights of one axis, averaged over each bin's samples.

    Args:
        start: (K,) box start on this axis, in feature-map cells (after the half-pixel shift).
        length: (K,) box length on this axis, in cells.
        bins: output bins on this axis.
        size: feature-map size on this axis (H or W).
        sampling_ratio: samples per bin on this axis; ≤ 0: ⌈length / bins⌉ per box.

    Returns:
        (K, bins, size): row ``b`` holds the weight of each map cell in bin ``b``'s mean.
    """
    k = len(start)
    bin_len = length / bins  # (K,)
    if sampling_ratio > 0:
        grid = torch.full((k,), sampling_ratio, dtype=torch.long, device=start.device)
    else:
        # a box of no size gets no sample, and so zeros, as in the usual RoIAlign
        grid = torch.ceil(length / bins).long().clamp(min=0)  # (K,)
    most = max(1, int(grid.max())) if k else 1
    g = torch.arange(most, device=start.device, dtype=start.dtype)  # (G,)
    b = torch.arange(bins, device=start.device, dtype=start.dtype)  # (bins,)
    gf = grid.clamp(min=1).to(start.dtype)
    # sample positions (K, bins, G): bin start + (g + 0.5) · bin length / samples
    pos = (start[:, None, None] + b[None, :, None] * bin_len[:, None, None]
           + (g[None, None, :] + 0.5) * (bin_len / gf)[:, None, None])
    used = (g[None, :] < grid[:, None])[:, None, :]  # (K, 1, G): samples beyond a box's grid
    inside = (pos >= -1.0) & (pos <= size) & used
    pos = pos.clamp(min=0.0)
    low = pos.floor().long().clamp(max=size - 1)
    high = (low + 1).clamp(max=size - 1)
    frac = torch.where(low >= size - 1, torch.zeros_like(pos), pos - low.to(pos.dtype))
    weight = inside.to(pos.dtype) / gf[:, None, None]  # (K, bins, G), the bin's mean
    out = torch.zeros(k, bins, most, size, dtype=start.dtype, device=start.device)
    out.scatter_add_(3, low[..., None], (weight * (1 - frac))[..., None])
    out.scatter_add_(3, high[..., None], (weight * frac)[..., None])
    return out.sum(dim=2)  # (K, bins, size)


def _box_weights(features: Tensor, boxes: Tensor, output_size: tuple[int, int],
                 spatial_scale: float, sampling_ratio: int,
                 aligned: bool) -> tuple[Tensor, Tensor]:
    """Row (K, oh, H) and column (K, ow, W) weights of every box."""
    _, _, h, w = features.shape
    dtype = features.dtype if features.is_floating_point() else torch.float32
    coords = boxes[:, 1:].to(dtype) * spatial_scale - (0.5 if aligned else 0.0)  # (K, 4)
    size = coords[:, 2:] - coords[:, :2]  # (K, 2): width, height
    if not aligned:  # the legacy behaviour: boxes of at least one cell
        size = size.clamp(min=1.0)
    rows = _axis_weights(coords[:, 1], size[:, 1], output_size[0], h, sampling_ratio)
    cols = _axis_weights(coords[:, 0], size[:, 0], output_size[1], w, sampling_ratio)
    return rows, cols


def _size_pair(output_size: int | tuple[int, int]) -> tuple[int, int]:
    return (output_size, output_size) if isinstance(output_size, int) else \
        (int(output_size[0]), int(output_size[1]))


def roi_align(features: Tensor, boxes: Tensor, output_size: int | tuple[int, int],
              spatial_scale: float = 1.0, sampling_ratio: int = 2,
              aligned: bool = True) -> Tensor:
    """RoIAlign: a fixed-size, bilinearly sampled crop of the feature map per box.

    Args:
        features: (B, C, H, W) feature maps.
        boxes: (K, 5) rows ``[batch_index, x1, y1, x2, y2]`` in image pixels.
        output_size: ``oh`` (square) or ``(oh, ow)`` bins per box.
        spatial_scale: feature-map cells per image pixel (``1 / stride``).
        sampling_ratio: samples per bin on each axis (``sampling_ratio²`` per bin);
            ≤ 0 takes ``⌈box size / bins⌉`` per box, as the usual RoIAlign does.
        aligned: shift boxes by half a pixel (pixel corners, not centres); False keeps the
            legacy behaviour, which also makes every box at least one cell wide.

    Returns:
        (K, C, oh, ow) bin averages, in ``features``' dtype.

    Raises:
        VlpError: wrong shapes or batch indices.
    """
    size = _size_pair(output_size)
    _check(features, boxes, size)
    c = features.shape[1]
    out = features.new_zeros(len(boxes), c, *size)
    rows, cols = _box_weights(features, boxes, size, spatial_scale, sampling_ratio, aligned)
    index = boxes[:, 0].long()
    for image in index.unique().tolist():
        sel = (index == image).nonzero().squeeze(1)
        fmap = features[image]  # (C, H, W)
        for s in range(0, len(sel), BOX_CHUNK):
            part = sel[s:s + BOX_CHUNK]
            tmp = torch.einsum("koh,chw->kcow", rows[part], fmap)  # (k, C, oh, W)
            out[part] = torch.einsum("kcow,kpw->kcop", tmp, cols[part])  # (k, C, oh, ow)
    return out


def roi_align_mean(features: Tensor, boxes: Tensor, output_size: int | tuple[int, int],
                   spatial_scale: float = 1.0, sampling_ratio: int = 2,
                   aligned: bool = True) -> Tensor:
    """``roi_align(...).mean((2, 3))`` — each box's RoIAlign output average-pooled — in one
    matrix product per image instead of a (K, C, oh, ow) tensor.

    Args: as :func:`roi_align`.

    Returns:
        (K, C) pooled features.
    """
    size = _size_pair(output_size)
    _check(features, boxes, size)
    _, c, h, w = features.shape
    rows, cols = _box_weights(features, boxes, size, spatial_scale, sampling_ratio, aligned)
    # the mean over bins of a separable weight is the product of the per-axis means
    weights = rows.mean(dim=1)[:, :, None] * cols.mean(dim=1)[:, None, :]  # (K, H, W)
    weights = weights.reshape(len(boxes), h * w)  # (K, H·W)
    out = features.new_zeros(len(boxes), c)
    index = boxes[:, 0].long()
    for image in index.unique().tolist():
        sel = (index == image).nonzero().squeeze(1)
        out[sel] = weights[sel] @ features[image].reshape(c, h * w).T  # (k, C)
    return out


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """(n, m) intersection over union of x1 y1 x2 y2 boxes ``a`` (n, 4) and ``b`` (m, 4)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])  # (n, m, 2)
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])  # (n, m, 2)
    inter = (rb - lt).clamp(min=0).prod(-1)  # (n, m)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float,
        max_keep: int | None = None) -> Tensor:
    """Greedy non-maximum suppression.

    Boxes are visited by decreasing score (ties: the earlier box first); a box is kept
    unless its IoU with an already kept box exceeds ``iou_threshold``.

    Args:
        boxes: (n, 4) x1 y1 x2 y2.
        scores: (n,) scores.
        iou_threshold: the IoU above which a lower-scored box is suppressed.
        max_keep: stop after this many kept boxes (None: all).

    Returns:
        (k,) int64 indices of the kept boxes, by decreasing score.
    """
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long)
    order = torch.argsort(scores, descending=True, stable=True)
    over = (box_iou(boxes[order], boxes[order]) > iou_threshold).cpu().numpy()  # (n, n)
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    limit = math.inf if max_keep is None else max_keep
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) >= limit:
            break
        suppressed |= over[i]
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


__all__ = ["box_iou", "nms", "roi_align", "roi_align_mean"]
