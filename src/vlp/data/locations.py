"""Region location vectors: a box and its image size as the 4-, 5- or 7-d vector that the
region embedders take beside each region feature (computed when a batch is collated)."""

from __future__ import annotations

import torch
from torch import Tensor


def location_features(boxes: Tensor, width: Tensor, height: Tensor, dim: int = 7) -> Tensor:
    """Normalised region location vectors.

    7-d (UNITER): ``[x1/W, y1/H, x2/W, y2/H, w/W, h/H, w*h/(W*H)]``;
    5-d (ViLBERT): ``[x1/W, y1/H, x2/W, y2/H, w*h/(W*H)]``;
    4-d (LXMERT): ``[x1/W, y1/H, x2/W, y2/H]``.

    Args:
        boxes: (..., 4) corners ``x1, y1, x2, y2`` in pixels.
        width: image widths, broadcastable to ``boxes[..., 0]``.
        height: image heights, broadcastable to ``boxes[..., 0]``.
        dim: 4, 5 or 7.
    """
    if dim not in (4, 5, 7):
        raise ValueError(f"location features are 4-d, 5-d or 7-d, not {dim}-d")
    w = width.to(boxes.dtype)
    h = height.to(boxes.dtype)
    x1, y1, x2, y2 = boxes.unbind(-1)
    x1, x2, y1, y2 = x1 / w, x2 / w, y1 / h, y2 / h
    bw, bh = x2 - x1, y2 - y1
    extra = {4: [], 5: [bw * bh], 7: [bw, bh, bw * bh]}[dim]
    parts = [x1, y1, x2, y2, *extra]
    return torch.stack(parts, dim=-1)  # (..., dim)
