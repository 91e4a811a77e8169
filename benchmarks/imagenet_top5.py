"""ImageNet top-5 of vlp's EfficientNet-lite0 (the packaged weights) on real COCO photos.

A check that the backbone, its weights, its normalisation and the class names fit
together: each photo's five most probable ImageNet classes should name what is in it.
Photos are resized so the shorter side is 256 and centre-cropped to 224 (EfficientNet's
evaluation crop), then normalised as the weights were trained (``--norm backbone``:
(255·x − 127) / 128) or with ImageNet's mean and std (``--norm imagenet``).

Usage: ``.venv/bin/python benchmarks/imagenet_top5.py [--images DIR] [--norm imagenet]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

from _common import RESULTS, ROOT, write_results
from vlp.convert.backbones import pretrained_backbone
from vlp.data.images import image_to_tensor, load_image
from vlp.layers.backbones.efficientnet import EfficientNetLite

COCO_IMAGES = ROOT.parent / "shared" / "data" / "coco" / "images"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def centre_crop(img: Image.Image, size: int = 224, padding: int = 32) -> Image.Image:
    """Shorter side to ``size + padding`` (bicubic), then the central ``size`` square."""
    scale = (size + padding) / min(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)),
                     Image.Resampling.BICUBIC)
    left, top = (img.width - size) // 2, (img.height - size) // 2
    return img.crop((left, top, left + size, top + size))


def top5(backbone: EfficientNetLite, pixels: torch.Tensor) -> list[list[tuple[str, float]]]:
    """(B, 3, 224, 224) normalised → each image's five most probable classes."""
    with torch.no_grad():
        probs = backbone.classify(backbone(pixels).mean((2, 3))).softmax(-1)  # (B, 1000)
    values, indices = probs.topk(5, dim=-1)
    return [[(backbone.class_names[int(i)], float(p)) for p, i in zip(ps, ix, strict=True)]
            for ps, ix in zip(values, indices, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=COCO_IMAGES)
    parser.add_argument("--norm", choices=["backbone", "imagenet"], default="backbone")
    args = parser.parse_args()
    backbone = pretrained_backbone("efficientnet_lite0").eval()
    assert isinstance(backbone, EfficientNetLite)
    mean, std = ((backbone.pixel_mean, backbone.pixel_std) if args.norm == "backbone"
                 else (IMAGENET_MEAN, IMAGENET_STD))
    files = sorted(args.images.glob("*.jpg"))
    if not files:
        raise SystemExit(f"{args.images}: no .jpg photos")
    x = torch.stack([image_to_tensor(centre_crop(load_image(f))) for f in files])
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    results = {}
    for file, classes in zip(files, top5(backbone, x), strict=True):
        print(file.name)
        for name, p in classes:
            print(f"  {p:6.1%}  {name}")
        results[file.name] = [[name, round(p, 4)] for name, p in classes]
    write_results(RESULTS / f"imagenet_top5_{args.norm}_norm_cpu.json",
                  {"norm": args.norm, "top5": results})


if __name__ == "__main__":
    main()
