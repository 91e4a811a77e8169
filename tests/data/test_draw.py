"""Regions drawn on their image."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vlp.data.draw import draw_regions
from vlp.data.features import Regions


def test_the_first_regions_are_outlined_at_their_boxes_scaled_to_the_image() -> None:
    boxes = np.array([[10, 10, 30, 30], [40, 5, 60, 20], [0, 0, 5, 5]], np.float32)
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], np.float32)
    regions = Regions(1, 64, 32, np.zeros((3, 4), np.float32), boxes, probs)
    image = Image.new("RGB", (128, 64), (0, 0, 0))  # twice the recorded size
    drawn = np.array(draw_regions(image, regions, ("cat", "dog"), top=2))
    assert drawn[40, 20].any() and drawn[60, 40].any()  # box 1's left edge, scaled by 2
    assert not drawn[50, 40].any()  # inside box 1, away from its label
    assert drawn[10, 80].any()  # box 2's left edge
    assert not drawn[8:10, 4:10].any()  # box 3 is past top=2
    assert not np.array(image).any()  # the image itself is left as it was
