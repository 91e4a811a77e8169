"""Location features worked by hand."""

from __future__ import annotations

import pytest
import torch

from vlp.data.locations import location_features


def test_seven_d_location_by_hand() -> None:
    # a 20×10 box at (10, 30) in a 100×50 image
    box = torch.tensor([[10.0, 30.0, 30.0, 40.0]])
    loc = location_features(box, torch.tensor(100.0), torch.tensor(50.0), dim=7)
    # x1/W, y1/H, x2/W, y2/H, w/W, h/H, (w·h)/(W·H)
    expected = torch.tensor([[0.1, 0.6, 0.3, 0.8, 0.2, 0.2, 0.04]])
    torch.testing.assert_close(loc, expected)


def test_five_d_location_by_hand() -> None:
    box = torch.tensor([[0.0, 0.0, 50.0, 25.0]])
    loc = location_features(box, torch.tensor(100.0), torch.tensor(50.0), dim=5)
    torch.testing.assert_close(loc, torch.tensor([[0.0, 0.0, 0.5, 0.5, 0.25]]))


def test_per_image_sizes_broadcast() -> None:
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0]], [[0.0, 0.0, 10.0, 10.0]]])  # (2, 1, 4)
    w = torch.tensor([[10.0], [20.0]])
    loc = location_features(boxes, w, w)
    assert loc[0, 0, 2] == 1.0 and loc[1, 0, 2] == 0.5


def test_bad_dim() -> None:
    with pytest.raises(ValueError):
        location_features(torch.zeros(1, 4), torch.tensor(1.0), torch.tensor(1.0), dim=6)
