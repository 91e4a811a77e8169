"""Does the image pipeline keep up? Loader images/s against the model's training samples/s.

For a patch model (ViLT) and a grid model (SOHO-style, CNN + grid tokens), each at two
sizes — the world's (64-pixel images, a 4-layer 256-wide transformer, as
``configs/vilt_world.yaml`` / ``configs/soho_world.yaml``) and the published one (COCO
photos at ViLT's 384 / 640, BERT-base; the grid model on EfficientNet-lite0) — it measures:

- **loader**: images/s of one loader worker (one process, one thread) turning image ids
  into a training batch's pixels — decode, EXIF, random resized crop, jitter, flip,
  normalise, pad (:class:`vlp.data.visuals.PixelSource` with augmentation on);
- **model**: training samples/s of the model on those batches — forward, backward and an
  AdamW step, in fp32 on all the threads torch has.

The loader must deliver at least 3× what the model consumes with the workers a run gives
it (``data.num_workers``; 0 loads in the training process itself). The ratio printed is
for ONE worker.

Usage: ``.venv/bin/python benchmarks/loader.py [--world demo/world_v2] [--seconds 20]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from _common import RESULTS, ROOT, format_table, ratio, write_results
from vlp.data.batch import Batch
from vlp.data.image_files import ImageIndex
from vlp.data.pretrain import collate_text
from vlp.data.transforms import ImageTransform
from vlp.data.visuals import PixelSource
from vlp.models import ModelConfig, build_model
from vlp.models.presets import preset_config
from vlp.objectives import LossModel, build_objectives

COCO = ROOT.parent / "shared" / "data" / "coco"
VOCAB = 1000
_WORLD_MODEL = ModelConfig(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024,
                           vocab_size=VOCAB, initializer_range=0.05, dropout=0.0)


def coco_index() -> ImageIndex:
    """The six real photos, named by their COCO ids."""
    return ImageIndex.read(COCO / "sample_captions.json")


def world_index(world: Path) -> ImageIndex:
    """The world's images (its COCO captions file lists them)."""
    return ImageIndex.from_list(world / "annotations" / "captions.json", world / "images")


Norm = tuple[tuple[float, float, float], tuple[float, float, float]]
VILT: Norm = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
IMAGENET: Norm = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
LITE0: Norm = ((127 / 255, 127 / 255, 127 / 255), (128 / 255, 128 / 255, 128 / 255))


def source(index: ImageIndex, size: int, shorter: bool, multiple: int, norm: Norm
           ) -> PixelSource:
    """Training pixels: ViLT's resize (or a square), crop, jitter and flip."""
    train = ImageTransform(size=size, resize="shorter" if shorter else "square",
                           max_size=640 if shorter else 0, mean=norm[0], std=norm[1],
                           augment=True, crop_scale=(0.5, 1.0), jitter=0.2, flip="swap")
    return PixelSource(index, train, train, multiple, 1)


def loader_rate(pixels: PixelSource, ids: list[int], batch: int, seconds: float) -> float:
    """Images/s of one process collating training batches of ``ids``."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        rows = [ids[(n + k) % len(ids)] for k in range(batch)]
        b = Batch(input_ids=torch.ones(batch, 2, dtype=torch.long),
                  text_mask=torch.ones(batch, 2, dtype=torch.bool))
        pixels.collate(b, rows, gen)
        n += batch
    return n / (time.perf_counter() - start)


def model_rate(cfg: ModelConfig, pixels: PixelSource, ids: list[int], batch: int,
               seconds: float, threads: int) -> float:
    """Training samples/s (MLM + ITM on every batch) on pixel batches of ``ids``."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    encoder = build_model(cfg)
    model = LossModel(encoder, build_objectives(["mlm", "itm"], cfg, encoder))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    g = torch.Generator().manual_seed(1)
    batches = []
    for first in range(0, 4 * batch, batch):
        b = collate_text([[2, *torch.randint(5, VOCAB, (14,), generator=g).tolist(), 3]
                          for _ in range(batch)], 0)
        pixels.collate(b, [ids[(first + k) % len(ids)] for k in range(batch)], g)
        b.mlm_labels = torch.where(torch.rand(b.input_ids.shape, generator=g) < 0.15,
                                   b.input_ids, torch.full_like(b.input_ids, -100))
        b.itm_labels = torch.randint(0, 2, (batch,), generator=g)
        batches.append(b)
    n, start, k = 0, None, 0
    while start is None or time.perf_counter() - start < seconds:
        out = model(batches[k % len(batches)], ["mlm", "itm"])
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if start is None:  # the first step warms up
            start = time.perf_counter()
        else:
            n += batch
        k += 1
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=ROOT / "demo" / "world_v2")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "loader_cpu.json")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    world, coco = world_index(args.world), coco_index()
    cases = {
        "patch, world (64 px, 4 × 256)": (
            ModelConfig(**{**_WORLD_MODEL.__dict__, "visual": "patches", "image_size": 64,
                           "patch_size": 8, "norm_first": True, "modality_embed": True}),
            source(world, 64, False, 8, VILT), world.ids(), 32),
        "grid, world (128 px, ConvNet, 4 × 256)": (
            ModelConfig(**{**_WORLD_MODEL.__dict__, "visual": "grid", "image_size": 128,
                           "vd_size": 256}),
            source(world, 128, False, 32, IMAGENET), world.ids(), 32),
        "patch, COCO (384/640 px, ViLT-B/32)": (
            preset_config("vilt_base", vocab_size=VOCAB),
            source(coco, 384, True, 32, VILT), coco.ids(), 8),
        "grid, COCO (384/640 px, EfficientNet-lite0 + BERT-base)": (
            preset_config("uniter_base", vocab_size=VOCAB, visual="grid",
                          backbone="efficientnet_lite0", vd_size=2048, image_size=384),
            source(coco, 384, True, 64, LITE0), coco.ids(), 8),
    }
    results: dict[str, dict[str, float]] = {}
    for name, (cfg, pixels, ids, batch) in cases.items():
        load = loader_rate(pixels, ids, batch, args.seconds / 2)
        train = model_rate(cfg, pixels, ids, batch, args.seconds, threads)
        results[name] = {"loader_images_per_s": load, "model_samples_per_s": train}
        print(f"{name}: loader {load:.1f} images/s, model {train:.1f} samples/s", flush=True)
    rows = [[name, f"{r['loader_images_per_s']:.1f}", f"{r['model_samples_per_s']:.1f}",
             ratio(r["loader_images_per_s"], r["model_samples_per_s"])]
            for name, r in results.items()]
    print(f"\none loader worker (1 thread) vs training on {threads} threads, fp32")
    print(format_table(["model", "loader img/s", "model samples/s", "loader/model"], rows))
    write_results(args.out, {"results": results, "seconds": args.seconds,
                             "note": "one loader worker (1 thread); training on all threads"})


if __name__ == "__main__":
    main()
