"""Regions drawn on their image, for a person to look at (``vlp features draw``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from vlp.data.features import Regions

# distinct, saturated outline colours, cycled
_PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
            (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))


def draw_regions(image: Image.Image, regions: Regions, class_names: Sequence[str] = (),
                 top: int = 10) -> Image.Image:
    """A copy of ``image`` with the first ``top`` regions outlined and labelled.

    Each box is labelled with its rank and, when the regions carry class distributions,
    the most probable class and its probability (``3 banana 0.81``).

    Args:
        image: the image the regions were detected in (its size as ``regions`` records).
        regions: the image's regions, in store order (most confident first).
        class_names: the store's class names (``meta.json``); indices when empty.
        top: how many regions to draw.
    """
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    sx, sy = out.width / max(regions.width, 1), out.height / max(regions.height, 1)
    width = max(1, round(min(out.size) / 200))
    for rank in reversed(range(min(top, len(regions)))):  # the best drawn last, on top
        x1, y1, x2, y2 = (float(v) for v in regions.boxes[rank])
        colour = _PALETTE[rank % len(_PALETTE)]
        draw.rectangle((x1 * sx, y1 * sy, x2 * sx, y2 * sy), outline=colour, width=width)
        label = f"{rank + 1}"
        if regions.cls_probs.shape[1]:
            k = int(np.argmax(regions.cls_probs[rank]))
            name = class_names[k] if k < len(class_names) else str(k)
            label += f" {name} {float(regions.cls_probs[rank, k]):.2f}"
        left, top_ = x1 * sx + width, y1 * sy + width
        box = draw.textbbox((left, top_), label)
        draw.rectangle(box, fill=colour)
        draw.text((left, top_), label, fill=(0, 0, 0))
    return out
