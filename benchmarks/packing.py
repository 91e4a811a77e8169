"""Packed (unpadded) encoders against the same encoders computing every padded position.

vlp's encoders run their linear layers, LayerNorms and MLPs on the real positions only
(``vlp.layers.packing``). This script times forward + backward of the encoder on the same
batches both ways, in one process, alternating: packed (as vlp runs) and padded (every
layer on every position, as the layers compute when called on padded tensors). Batches:
real caption lengths (the Karpathy test captions, WordPiece ≤ 40 tokens) and 10..100
regions per image, either random fixed-size batches (much padding) or token-budget batches
of 4096-example buckets (some) — whatever the collator then holds.

Usage: ``.venv/bin/python benchmarks/packing.py [--size demo base] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from _common import KARPATHY_TEST, RESULTS, format_table, ratio, write_results
from padding import epoch_batches, karpathy_corpus
from vlp.data.batch import Batch
from vlp.data.batching import fixed_size_batches, padding_fraction, token_budget_batches
from vlp.models import ModelConfig, build_model
from vlp.models.single_stream import SingleStreamModel
from vlp.models.two_stream import TwoStreamModel

SIZES = {"demo": dict(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024),
         "base": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072)}


def configs(size: str) -> dict[str, ModelConfig]:
    """UNITER-style single-stream and ViLBERT-style two-stream models of ``size``."""
    base = ModelConfig(**SIZES[size], vocab_size=30522, region_feature_dim=2048, dropout=0.1)
    k = 2 if size == "demo" else 6
    two = dataclasses.replace(base, arch="two_stream", num_image_layers=k, num_cross_layers=k,
                              pooler="product", pooled="product", loc_dim=5)
    return {"single_stream": base, "two_stream": two}


def make_batch(rows: list[int], text: np.ndarray, regions: np.ndarray, loc_dim: int,
               g: torch.Generator) -> Batch:
    """A batch of ``rows``' lengths, padded per part, with random ids and features."""
    n, r = int(text[rows].max()), int(regions[rows].max())
    text_mask = torch.arange(n)[None] < torch.tensor(text[rows])[:, None]
    region_mask = torch.arange(r)[None] < torch.tensor(regions[rows])[:, None]
    ids = torch.randint(5, 30522, (len(rows), n), generator=g) * text_mask
    feats = torch.randn(len(rows), r, 2048, generator=g) * region_mask[..., None]
    return Batch(input_ids=ids, text_mask=text_mask, region_feats=feats,
                 region_loc=torch.rand(len(rows), r, loc_dim, generator=g),
                 region_mask=region_mask)


def padded_forward(model: torch.nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
    """The encoder with every layer on every padded position: (text, image) states."""
    if isinstance(model, SingleStreamModel):
        text, visual = model.embed_text(batch), model.embed_visual(batch)
        x = torch.cat([text, visual.tokens], dim=1)  # (B, L + R, D)
        mask = torch.cat([batch.text_mask, visual.mask], dim=1)
        for layer in model.encoder.layers:
            x = layer(x, mask)
        return x[:, :text.shape[1]], x[:, text.shape[1]:]
    assert isinstance(model, TwoStreamModel)
    image, image_mask = model.visual_input(batch)
    t = model.text_embed(batch.input_ids)
    for layer in model.text_encoder.layers:
        t = layer(t, batch.text_mask)
    for layer in model.image_encoder.layers:
        image = layer(image, image_mask)
    for block in model._blocks():
        t, image = block(t, batch.text_mask, image, image_mask)
    return t, image


def step(model: torch.nn.Module, batch: Batch, packed: bool) -> float:
    """Seconds of forward + backward of the real positions' states."""
    start = time.perf_counter()
    if packed:
        out = model(batch)
        text, image = out.text, out.image
    else:
        text, image = padded_forward(model, batch)
    assert batch.region_mask is not None
    (text[batch.text_mask].sum() + image[batch.region_mask].sum()).backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def time_cell(model: torch.nn.Module, batches: list[Batch], rounds: int
              ) -> dict[str, float]:
    """Median seconds per batch, packed and padded, alternating within each round."""
    times: dict[str, list[float]] = {"packed": [], "padded": []}
    for b in batches[:1]:  # warm-up
        step(model, b, True)
        step(model, b, False)
    for r in range(rounds):
        order = [True, False] if r % 2 == 0 else [False, True]
        for packed in order:
            seconds = sum(step(model, b, packed) for b in batches)
            times["packed" if packed else "padded"].append(seconds / len(batches))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    """Time every (size, architecture, batching) cell, print the table, write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", nargs="+", choices=list(SIZES), default=list(SIZES))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batches", type=int, default=3, help="batches per batching")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = karpathy_corpus(argparse.Namespace(
        captions=KARPATHY_TEST, vocab=None, max_text_len=40, seed=args.seed, min_regions=10,
        max_regions=100))
    text, regions = corpus.text_lengths, corpus.region_counts
    budget = args.batch_size * int(corpus.lengths.sum(axis=1).mean())
    n = len(text)
    batchings = {
        "fixed": epoch_batches(n, fixed_size_batches(args.batch_size), args.seed),
        "bucketed": epoch_batches(n, token_budget_batches(corpus.lengths, budget, 4096),
                                  args.seed)}
    rows, results = [], []
    g = torch.Generator().manual_seed(args.seed)
    for size in args.size:
        for arch, cfg in configs(size).items():
            torch.manual_seed(args.seed)
            model = build_model(cfg).train()
            for name, epoch in batchings.items():
                chosen = epoch[:args.batches]
                batches = [make_batch(b, text, regions, cfg.loc_dim, g) for b in chosen]
                pad = padding_fraction(chosen, text, regions)
                t = time_cell(model, batches, args.rounds)
                results.append({"size": size, "arch": arch, "batching": name,
                                "padded_share": pad, **{f"{k}_s": v for k, v in t.items()}})
                rows.append([size, arch, name, f"{pad:.2f}", f"{t['padded']:.3f}",
                             f"{t['packed']:.3f}", ratio(t["padded"], t["packed"])])
                print(f"   {size} {arch} {name}: padded {t['padded']:.3f} s, packed "
                      f"{t['packed']:.3f} s", flush=True)
    print(f"\n== encoder forward + backward per batch, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} rounds × {args.batches} batches")
    print(format_table(["size", "model", "batches", "padded share", "padded s", "packed s",
                        "speed-up"], rows))
    info: dict[str, Any] = {"benchmark": "packing", "results": results}
    write_results(RESULTS / "packing_cpu.json", info)


if __name__ == "__main__":
    main()

