"""RoIAlign and NMS in plain torch, against hand-computed values and a per-sample reference."""

from __future__ import annotations

import math

import pytest
import torch

from vlp.errors import VlpError
from vlp.layers.roi import box_iou, nms, roi_align, roi_align_mean

# F[i, j] = 4 i + j + 1: bilinear sampling of a linear map is exact, so every value below
# is 4 y + x + 1 at the (clamped) sample, by hand.
MAP = (torch.arange(16, dtype=torch.float32) + 1).reshape(1, 1, 4, 4)


@pytest.mark.parametrize(("box", "size", "ratio", "aligned", "expected"), [
    # aligned: [0, 2] → cells [-0.5, 1.5]; samples at 0 and 1 on each axis: mean of 1, 2, 5, 6
    ([0, 0, 2, 2], 1, 2, True, [[3.5]]),
    # legacy: cells [1, 3], one sample per bin at 1.5 / 2.5
    ([1, 1, 3, 3], 2, 1, False, [[8.5, 9.5], [12.5, 13.5]]),
    # samples at 2.5 and 4.5: 4.5 > W = 4 is outside, so only (2.5, 2.5) counts, /4
    ([2, 2, 6, 6], 1, 2, True, [[13.5 / 4]]),
    # a sample at 3.5 ∈ [H - 1, H] reads the last row and column
    ([3, 3, 4, 4], 1, 1, False, [[16.0]]),
    # a sample at -0.5 ∈ [-1, 0] reads the first row and column
    ([-1, -1, 0, 0], 1, 1, False, [[1.0]]),
    # adaptive: ⌈4 / 2⌉ = 2 samples per bin at 0.5 1.5 | 2.5 3.5 (→ 3): means 1 and 2.75
    ([0, 0, 4, 4], 2, 0, False, [[4 * 1 + 1 + 1, 4 * 1 + 2.75 + 1],
                                 [4 * 2.75 + 1 + 1, 4 * 2.75 + 2.75 + 1]]),
])
def test_roi_align_hand_values(box: list[float], size: int, ratio: int, aligned: bool,
                               expected: list[list[float]]) -> None:
    boxes = torch.tensor([[0.0, *box]])
    out = roi_align(MAP, boxes, size, sampling_ratio=ratio, aligned=aligned)
    assert out.shape == (1, 1, size, size)
    torch.testing.assert_close(out[0, 0], torch.tensor(expected))


def test_roi_align_scale_and_batch_index() -> None:
    maps = torch.cat([MAP, 10 * MAP])  # (2, 1, 4, 4)
    # image pixels at stride 2: [0, 4] → cells [0, 2] (aligned: [-0.5, 1.5])
    boxes = torch.tensor([[1.0, 0, 0, 4, 4], [0.0, 0, 0, 4, 4]])
    out = roi_align(maps, boxes, 1, spatial_scale=0.5, sampling_ratio=2)
    torch.testing.assert_close(out.flatten(), torch.tensor([35.0, 3.5]))


def _reference(features: torch.Tensor, boxes: torch.Tensor, oh: int, ow: int, scale: float,
               ratio: int, aligned: bool) -> torch.Tensor:
    """The usual RoIAlign, one sample at a time (a direct reading of the CPU kernel)."""
    _, c, h, w = features.shape

    def sample(fmap: torch.Tensor, y: float, x: float) -> torch.Tensor:
        if y < -1.0 or y > h or x < -1.0 or x > w:
            return torch.zeros(c)
        y, x = max(y, 0.0), max(x, 0.0)
        yl, xl = int(y), int(x)
        yh, xh = min(yl + 1, h - 1), min(xl + 1, w - 1)
        if yl >= h - 1:
            yl = yh = h - 1
            y = float(yl)
        if xl >= w - 1:
            xl = xh = w - 1
            x = float(xl)
        ly, lx = y - yl, x - xl
        return ((1 - ly) * (1 - lx) * fmap[:, yl, xl] + (1 - ly) * lx * fmap[:, yl, xh]
                + ly * (1 - lx) * fmap[:, yh, xl] + ly * lx * fmap[:, yh, xh])

    out = torch.zeros(len(boxes), c, oh, ow)
    off = 0.5 if aligned else 0.0
    for k, (b, x1, y1, x2, y2) in enumerate(boxes.tolist()):
        sx, sy, ex, ey = x1 * scale - off, y1 * scale - off, x2 * scale - off, y2 * scale - off
        rw, rh = ex - sx, ey - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / oh, rw / ow
        gh = ratio if ratio > 0 else math.ceil(rh / oh)
        gw = ratio if ratio > 0 else math.ceil(rw / ow)
        count = max(gh * gw, 1)
        for py in range(oh):
            for px in range(ow):
                acc = torch.zeros(c)
                for iy in range(gh):
                    y = sy + py * bh + (iy + 0.5) * bh / gh
                    for ix in range(gw):
                        x = sx + px * bw + (ix + 0.5) * bw / gw
                        acc += sample(features[int(b)], y, x)
                out[k, :, py, px] = acc / count
    return out


@pytest.mark.parametrize(("ratio", "aligned"), [(2, True), (0, True), (1, False), (0, False)])
def test_roi_align_matches_the_per_sample_reference(ratio: int, aligned: bool) -> None:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 5, 7, generator=g)
    xy = torch.rand(12, 2, generator=g) * torch.tensor([16.0, 11.0]) - 2
    wh = torch.rand(12, 2, generator=g) * 12
    boxes = torch.cat([torch.randint(0, 2, (12, 1), generator=g).float(), xy, xy + wh], 1)
    boxes[0, 1:] = torch.tensor([3.0, 3.0, 3.0, 3.0])  # a box of no size
    expected = _reference(features, boxes, 3, 2, 0.5, ratio, aligned)
    out = roi_align(features, boxes, (3, 2), spatial_scale=0.5, sampling_ratio=ratio,
                    aligned=aligned)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    pooled = roi_align_mean(features, boxes, (3, 2), spatial_scale=0.5,
                            sampling_ratio=ratio, aligned=aligned)
    torch.testing.assert_close(pooled, expected.mean((2, 3)), rtol=1e-5, atol=1e-5)


def test_roi_align_refuses_bad_shapes_in_one_line() -> None:
    with pytest.raises(VlpError, match=r"\(K, 5\)"):
        roi_align(MAP, torch.zeros(2, 4), 2)
    with pytest.raises(VlpError, match="batch indices"):
        roi_align(MAP, torch.tensor([[1.0, 0, 0, 1, 1]]), 2)
    assert roi_align(MAP, torch.zeros(0, 5), 2).shape == (0, 1, 2, 2)


def test_box_iou_by_hand() -> None:
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[5.0, 0, 15, 10], [20.0, 20, 30, 30], [0.0, 0, 10, 10]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[50 / 150, 0.0, 1.0]]))


def test_nms_by_hand() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10],  # A 0.90
                          [1.0, 1, 11, 11],  # B 0.80: IoU 81 / 119 with A
                          [20.0, 20, 30, 30],  # C 0.70: apart
                          [5.0, 0, 15, 10]])  # D 0.85: IoU 1/3 with A, 54 / 146 with B
    scores = torch.tensor([0.9, 0.8, 0.7, 0.85])
    assert nms(boxes, scores, 0.5).tolist() == [0, 3, 2]
    assert nms(boxes, scores, 0.3).tolist() == [0, 2]
    assert nms(boxes, scores, 0.5, max_keep=2).tolist() == [0, 3]
    assert nms(boxes, torch.ones(4), 0.9).tolist() == [0, 1, 2, 3]  # ties: file order
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []
