"""Inference latency per image-text pair: region, grid and patch models of one transformer size.

Each of the six real COCO photos (``../shared/data/coco``) is paired with one of its
captions and scored one pair at a time (batch 1, eval mode, no gradient), as a served
model answers a query:

- **region** (UNITER-base): region extraction — selective search, EfficientNet-lite0 over
  the image, RoIAlign, NMS, up to 100 regions (``vlp features extract``'s defaults) — then
  the transformer over words and regions;
- **grid** (SOHO-style): EfficientNet-lite0 over the image, a 1×1 conv and a 2×2 max-pool
  into grid tokens, then the same transformer;
- **patch** (ViLT-B/32): the image cut into 32-pixel patches, then the same transformer.

The transformer is BERT-base in all three (12 layers, 768 wide). Pixel models read the
image at ViLT's size (shorter side 384, longer at most 640). Decoding the JPEG is counted
in every row. Times are medians over ``--repeats`` passes of the six pairs.

Usage: ``.venv/bin/python benchmarks/latency.py [--repeats 3] [--device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from _common import RESULTS, ROOT, format_table, write_results
from vlp.convert.extract import ExtractOptions, RegionExtractor, load_pretrained
from vlp.data.batch import Batch
from vlp.data.images import load_image
from vlp.data.pretrain import collate_text
from vlp.data.tokenizer import Tokenizer
from vlp.data.transforms import ImageTransform, pad_images
from vlp.data.visuals import collate_regions
from vlp.models import build_model
from vlp.models.presets import preset_config
from vlp.models.single_stream import build_grid_input

COCO = ROOT.parent / "shared" / "data" / "coco"


def pairs() -> list[tuple[Path, str]]:
    """The six photos, each with its first caption."""
    entries = json.loads((COCO / "sample_captions.json").read_text())
    return [(COCO / e["image"], e["caption"][0]) for e in entries]


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds ``fn`` takes (synchronised on a GPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    from vlp.convert import load_imported

    tokenizer = Tokenizer.from_vocab(load_imported("minilm").vocab)  # a real BERT vocabulary
    cnn = load_pretrained("efficientnet_lite0")
    extractor = RegionExtractor(cnn.backbone.to(device), cnn.mean, cnn.std, ExtractOptions())
    size = {"vocab_size": tokenizer.vocab_size, "pad_id": tokenizer.pad_id}
    region = build_model(preset_config("uniter_base", **size, region_feature_dim=1280,
                                       num_region_classes=1000)).to(device).eval()
    patch_cfg = preset_config("vilt_base", **size)
    patch = build_model(patch_cfg).to(device).eval()
    grid_cfg = preset_config("uniter_base", **size, visual="grid",
                             backbone="efficientnet_lite0", vd_size=0, image_size=384)
    grid = build_model(grid_cfg).to(device).eval()
    grid.visual_input = build_grid_input(grid_cfg, cnn.backbone).to(device).eval()
    vilt_pixels = ImageTransform(size=384, resize="shorter", max_size=640,
                                 mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    cnn_pixels = ImageTransform(size=384, resize="shorter", max_size=640,
                                mean=cnn.mean, std=cnn.std)

    def text(caption: str) -> Batch:
        return collate_text(tokenizer.encode([caption], 40), tokenizer.pad_id)

    def run_region(path: Path, caption: str) -> tuple[float, float]:
        t0 = time.perf_counter()
        regions = extractor(0, load_image(path))
        batch = text(caption)
        collate_regions(batch, [regions], 100, 7)
        t1 = time.perf_counter()
        return t1 - t0, timed(lambda: region(batch.to(device)), device)

    def run_pixels(model: torch.nn.Module, transform: ImageTransform, multiple: int
                   ) -> Callable[[Path, str], tuple[float, float]]:
        def run(path: Path, caption: str) -> tuple[float, float]:
            t0 = time.perf_counter()
            pixels, _ = transform(load_image(path))
            batch = text(caption)
            batch.pixel_values, batch.pixel_mask = pad_images([pixels], multiple)
            t1 = time.perf_counter()
            return t1 - t0, timed(lambda: model(batch.to(device)), device)
        return run

    kinds = {"region (UNITER-base, extraction incl.)": run_region,
             "grid (EfficientNet-lite0 + BERT-base)": run_pixels(grid, cnn_pixels, 64),
             "patch (ViLT-B/32)": run_pixels(patch, vilt_pixels, 32)}
    results: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for name, run in kinds.items():
            run(*pairs()[0])  # warm-up
            prep, model_s = [], []
            for _ in range(args.repeats):
                for path, caption in pairs():
                    a, b = run(path, caption)
                    prep.append(a)
                    model_s.append(b)
            total = [a + b for a, b in zip(prep, model_s, strict=True)]
            results[name] = {"input_ms": 1000 * statistics.median(prep),
                             "model_ms": 1000 * statistics.median(model_s),
                             "total_ms": 1000 * statistics.median(total)}
    rows = [[name, f"{r['input_ms']:.0f}", f"{r['model_ms']:.0f}", f"{r['total_ms']:.0f}"]
            for name, r in results.items()]
    print(f"\nper image-text pair, batch 1, {device.type}, median of {args.repeats} × 6 pairs")
    print(format_table(["model", "input ms", "model ms", "total ms"], rows))
    out = args.out or RESULTS / f"latency_{device.type}.json"
    write_results(out, {"results": results, "repeats": args.repeats})


if __name__ == "__main__":
    main()
