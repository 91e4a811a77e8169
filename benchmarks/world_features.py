"""Do the world's region features hold what its captions and questions ask about?

A linear probe on the pseudo-detector's region features: each detected region that covers
an annotated object (IoU ≥ 0.5 with its box) is labelled with that object's shape and
colour; a softmax regression is fitted on the regions of the training images (features
standardised with the training mean and deviation) and scored on the validation and test
images. Near 100 % means that a model which fails to ground shapes and colours fails in its
transformer, not for want of the information in its input.

Usage: ``.venv/bin/python benchmarks/world_features.py [WORLD] [--out FILE]`` (``WORLD``:
a world directory with ``features/``, default ``demo/world_v2``, made by ``make demo``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _common import RESULTS, ROOT, format_table, write_results
from vlp.data.features import RegionStore
from vlp.world.detector import box_iou, load_world_objects

MIN_IOU = 0.5


def labelled_regions(world: Path) -> dict[str, torch.Tensor]:
    """Region features with the shape and colour of the object each covers, and its split."""
    objects = load_world_objects(world)
    store = RegionStore.open(world / "features")
    features, shapes, colours, train = [], [], [], []
    for row, image_id in enumerate(objects.image_ids):
        regions = store.get(image_id)
        if not len(regions) or not len(objects.boxes[row]):
            continue
        iou = box_iou(torch.from_numpy(np.array(regions.boxes)), objects.boxes[row])
        best, which = iou.max(1)
        keep = best >= MIN_IOU
        features.append(torch.from_numpy(np.array(regions.features))[keep])
        shapes.append(objects.labels[row][which[keep]])
        colours.append(objects.colours[row][which[keep]])
        train.append(torch.full((int(keep.sum()),), objects.splits[row] in ("train", "restval")))
    return {"features": torch.cat(features), "shape": torch.cat(shapes),
            "colour": torch.cat(colours), "train": torch.cat(train)}


def probe(x: torch.Tensor, y: torch.Tensor, train: torch.Tensor, steps: int = 500) -> float:
    """Test accuracy of a softmax regression fitted on the training rows (full batch, Adam)."""
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    z = (x - mean) / std
    linear = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
    opt = torch.optim.Adam(linear.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(linear(z[train]), y[train]).backward()
        opt.step()
    with torch.no_grad():
        return float((linear(z[~train]).argmax(1) == y[~train]).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("world", nargs="?", type=Path, default=ROOT / "demo" / "world_v2")
    parser.add_argument("--out", type=Path, default=RESULTS / "world_features_cpu.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = labelled_regions(args.world)
    results: dict[str, object] = {"world": str(args.world), "regions": len(data["features"]),
                                  "train_regions": int(data["train"].sum())}
    rows = []
    for name in ("shape", "colour"):
        known = data[name] >= 0
        y, train = data[name][known], data["train"][known]
        acc = probe(data["features"][known], y, train)
        majority = int(torch.bincount(y[train]).argmax())  # the training split's, on the rest
        chance = float((y[~train] == majority).float().mean())
        results[name] = {"test_accuracy": acc, "majority": chance}
        rows.append([name, f"{acc:.3f}", f"{chance:.3f}"])
    print(f"{results['regions']} regions on annotated objects (IoU ≥ {MIN_IOU}), "
          f"{results['train_regions']} of them in training images")
    print(format_table(["attribute", "linear probe, val + test images", "training majority"], rows))
    write_results(args.out, results)


if __name__ == "__main__":
    main()
