"""Training throughput of a UNITER-style model, fp32 vs bf16 (and fp16 on CUDA).

A step is the forward of MLM + MRFR + MRC-KL + ITM on one batch, backward and an AdamW
step. Batches have real caption lengths (WordPiece on the COCO Karpathy test captions),
10..100 regions with random features, and are cut under a token budget as in training;
the same few batches serve every precision. Precisions are timed in alternating rounds
in one process; the median round is reported. Each step's FLOP/s (counted with
``FlopCounterMode``) is set against a plain ``a @ b`` in the same precision.

With ``--compile`` each precision is also timed on a copy of the model (same weights)
whose transformer layers are compiled (``train.compile``); the warm-up steps compile.

Usage: ``.venv/bin/python benchmarks/throughput.py [--size demo|base] [--device cuda]
[--compile]``
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils import flop_counter

from _common import (
    KARPATHY_TEST,
    RESULTS,
    caption_tokenizer,
    format_table,
    load_captions,
    ratio,
    write_results,
)
from vlp.data.batch import Batch
from vlp.data.batching import ResumableBatchSampler, token_budget_batches
from vlp.data.features import Regions
from vlp.data.pretrain import BatchPlan, Example, PretrainCollator
from vlp.data.tokenizer import Tokenizer
from vlp.data.visuals import RegionsInMemory, RegionSource
from vlp.models import ModelConfig, build_model
from vlp.objectives import LossModel, build_objectives
from vlp.train.demo import demo_config
from vlp.train.runtime import autocast, compile_layers, make_optimizer

OBJECTIVES = ["mlm", "mrfr", "mrc_kl", "itm"]
MIN_FILL = 0.75  # batches kept must fill this share of the token budget
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# --------------------------------------------------------------------------- model


def model_config(args: argparse.Namespace) -> ModelConfig:
    """The demo's UNITER size, or BERT-base's, with BUTD-like input sizes."""
    cfg = demo_config(Path("."), Path("."), steps=1).model
    if args.size == "base":
        cfg = dataclasses.replace(cfg, hidden_size=768, num_layers=12, num_heads=12,
                                  intermediate_size=3072)
    return dataclasses.replace(cfg, vocab_size=args.vocab_size,
                               region_feature_dim=args.feature_dim,
                               num_region_classes=args.num_classes)


def build(cfg: ModelConfig, device: torch.device) -> tuple[LossModel, torch.optim.Optimizer]:
    """Encoder + the four objectives, in training mode, with its AdamW."""
    model = build_model(cfg)
    pretraining = LossModel(model, build_objectives(OBJECTIVES, cfg, model)).to(device)
    pretraining.train()
    return pretraining, make_optimizer(pretraining, lr=1e-4, weight_decay=0.01, betas=[0.9, 0.98])


# --------------------------------------------------------------------------- data


def random_regions(rng: np.random.Generator, image_id: int, n: int, feature_dim: int,
                   num_classes: int) -> Regions:
    """``n`` detector-like regions: non-negative features, boxes in 640×480, softmax classes."""
    features = np.abs(rng.standard_normal((n, feature_dim), dtype=np.float32))
    xy = rng.random((n, 2), dtype=np.float32) * [560, 400]
    wh = 16 + rng.random((n, 2), dtype=np.float32) * [80, 80]
    boxes = np.concatenate([xy, xy + wh], axis=1)
    logits = 3 * rng.standard_normal((n, num_classes), dtype=np.float32)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return Regions(image_id, 640, 480, features, boxes, probs / probs.sum(axis=1, keepdims=True))


def make_batches(args: argparse.Namespace) -> tuple[list[Batch], str]:
    """A fixed set of token-budget batches with real caption lengths; and a description."""
    texts = [c for caps in load_captions(args.captions) for c in caps]
    tokenizer = caption_tokenizer(texts, args.vocab)
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(texts), size=min(args.pool, len(texts)), replace=False)
    token_ids = tokenizer.encode([texts[i] for i in chosen], args.max_text_len)
    regions = rng.integers(10, 101, size=len(token_ids))
    lengths = np.stack([np.array([len(t) for t in token_ids]), regions], axis=1)  # (N, 2)
    make = token_budget_batches(lengths, args.token_budget)
    index_batches = ResumableBatchSampler(len(lengths), make, args.seed).epoch_batches(0)
    # a bucket's last, part-filled batch would weigh too much among a handful
    index_batches = [b for b in index_batches
                     if len(b) * lengths[b].max(axis=0).sum() >= MIN_FILL * args.token_budget]
    used = sorted({i for b in index_batches[:args.batches] for i in b})
    store = RegionsInMemory({i: random_regions(rng, i, int(regions[i]), args.feature_dim,
                                               args.num_classes) for i in used})
    collate = PretrainCollator(tokenizer, RegionSource(store))
    plan = BatchPlan(mask_text=True, mask_image=True, pairs=True)
    batches = []
    for k, indices in enumerate(index_batches[:args.batches]):
        examples = [Example(i, token_ids[i]) for i in indices]
        batches.append(collate(examples, plan, seed=args.seed + k))
    desc = _describe(batches, tokenizer, args)
    return batches, desc


def _describe(batches: list[Batch], tokenizer: Tokenizer, args: argparse.Namespace) -> str:
    sizes = [b.size for b in batches]
    shapes = ", ".join(f"{b.size}×({b.input_ids.shape[1]}+{b.region_feats.shape[1]})"
                       for b in batches if b.region_feats is not None)
    return (f"{len(batches)} batches under a {args.token_budget}-position budget "
            f"(≥{MIN_FILL:.0%} full), "
            f"{sum(sizes) / len(sizes):.1f} pairs each [B×(L+R): {shapes}]; caption lengths "
            f"from {args.captions.name} (WordPiece {tokenizer.vocab_size}, ≤{args.max_text_len}), "
            "10..100 random regions")


# --------------------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (CUDA); nothing to wait for on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(pm: LossModel, opt: torch.optim.Optimizer, device: torch.device,
              precision: str) -> Callable[[Batch], torch.Tensor]:
    """One training step: all objectives forward, backward, AdamW (fp16: loss scaling)."""
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def step(batch: Batch) -> torch.Tensor:
        with autocast(device, precision):
            loss = pm(batch, OBJECTIVES).loss
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def timed_round(step: Callable[[Batch], torch.Tensor], batches: list[Batch], steps: int,
                device: torch.device) -> tuple[float, int, list[int]]:
    """Run ``steps`` steps cycling through ``batches``: (seconds, samples, batch indices)."""
    used = [i % len(batches) for i in range(steps)]
    synchronize(device)
    start = time.perf_counter()
    losses = [step(batches[i]) for i in used]
    synchronize(device)
    seconds = time.perf_counter() - start
    if not all(bool(torch.isfinite(x)) for x in losses):
        print(f"warning: non-finite loss in a round ({[float(x) for x in losses]})")
    return seconds, sum(batches[i].size for i in used), used


def _cpu_sdpa(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any,
              **kwargs: Any) -> int:
    return int(flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape))


def _cpu_sdpa_backward(grad_out_shape: Any, query_shape: Any, key_shape: Any, value_shape: Any,
                       *args: Any, **kwargs: Any) -> int:
    return int(flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape,
                                                     value_shape))


def step_flops(pm: LossModel, batch: Batch) -> int:
    """Forward + backward FLOPs of one batch (matmuls and attention; the optimizer not)."""
    aten = torch.ops.aten
    # FlopCounterMode knows CUDA's SDPA kernels but not the CPU flash kernel
    custom = {aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
              aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward}
    counter = flop_counter.FlopCounterMode(display=False, custom_mapping=custom)
    with counter:
        pm(batch, OBJECTIVES).loss.backward()
    pm.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def matmul_flops_per_s(n: int, precision: str, device: torch.device, reps: int) -> float:
    """Best FLOP/s of a square ``a @ b`` of size ``n`` in ``precision``."""
    a = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    b = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    a @ b  # warm-up: kernel selection, caches
    best = float("inf")
    for _ in range(reps):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


# --------------------------------------------------------------------------- the benchmark


def run(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Warm up, then alternate precisions over ``args.rounds`` rounds."""
    torch.manual_seed(args.seed)
    cfg = model_config(args)
    pm, opt = build(cfg, device)
    batches, desc = make_batches(args)
    batches = [b.to(device) for b in batches]
    flops = [step_flops(pm, b) for b in batches]
    steps = {p: make_step(pm, opt, device, p) for p in args.precisions}
    if args.compile:  # the same weights, each layer compiled (train.compile)
        compiled = copy.deepcopy(pm)
        compile_layers(compiled)
        opt_c = make_optimizer(compiled, lr=1e-4, weight_decay=0.01, betas=[0.9, 0.98])
        steps.update({f"{p}+compile": make_step(compiled, opt_c, device, p)
                      for p in args.precisions})
    names = list(steps)
    for name in names:  # compiles, for the compiled settings
        t0 = time.perf_counter()
        timed_round(steps[name], batches, args.warmup, device)
        print(f"   warm-up {name}: {time.perf_counter() - t0:.0f} s")
    rounds: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:  # A B, B A, ...
            seconds, samples, used = timed_round(steps[name], batches, args.steps, device)
            rounds[name].append({"seconds": seconds, "steps": len(used), "samples": samples,
                                 "flops": float(sum(flops[i] for i in used))})
    matmul = {p: matmul_flops_per_s(args.matmul_size, p, device, args.matmul_reps)
              for p in args.precisions}
    params = sum(x.numel() for x in pm.parameters())
    return {"benchmark": "throughput", "device": str(device), "size": args.size,
            "cuda_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "model": dataclasses.asdict(cfg), "parameters": params, "batches": desc,
            "step_flops": flops, "steps_per_round": args.steps,
            "results": {n: summarize(rounds[n], matmul[n.split("+")[0]]) for n in names}}


def summarize(rounds: list[dict[str, float]], matmul: float) -> dict[str, Any]:
    """Median samples/s, step time and FLOP/s over rounds, and the matmul reference."""
    per_s = [r["samples"] / r["seconds"] for r in rounds]
    flop_s = statistics.median(r["flops"] / r["seconds"] for r in rounds)
    return {
        "samples_per_s": statistics.median(per_s),
        "samples_per_s_min": min(per_s),
        "samples_per_s_max": max(per_s),
        "step_ms": 1e3 * statistics.median(r["seconds"] / r["steps"] for r in rounds),
        "step_flop_per_s": flop_s,
        "matmul_flop_per_s": matmul,
        "step_over_matmul": flop_s / matmul,
        "rounds": rounds,
    }


def print_table(result: dict[str, Any], args: argparse.Namespace) -> None:
    """Side by side: each precision, and its ratio to the first (fp32)."""
    res, names = result["results"], list(result["results"])
    base = names[0]
    print(f"\n== {args.size} UNITER ({result['parameters'] / 1e6:.1f} M parameters), "
          f"{result['device']}, {torch.get_num_threads()} threads; "
          f"{args.steps} steps × {args.rounds} rounds per precision")
    print(f"   {result['batches']}")
    rows_spec = [("samples/s (median round)", "samples_per_s", "{:.1f}", 1.0),
                 ("samples/s (min..max)", None, "", 1.0),
                 ("step time, ms", "step_ms", "{:.0f}", 1.0),
                 ("step GFLOP/s (fwd+bwd)", "step_flop_per_s", "{:.1f}", 1e-9),
                 (f"matmul {args.matmul_size}² GFLOP/s", "matmul_flop_per_s", "{:.1f}", 1e-9),
                 ("step FLOP/s / matmul FLOP/s", "step_over_matmul", "{:.2f}", 1.0)]
    header = ["", *names, *[f"{n}/{base}" for n in names[1:]]]
    rows = []
    for label, key, fmt, scale in rows_spec:
        if key is None:
            rows.append([label, *[f"{res[n]['samples_per_s_min']:.1f}.."
                                  f"{res[n]['samples_per_s_max']:.1f}" for n in names],
                         *["" for _ in names[1:]]])
            continue
        vals = [res[n][key] * scale for n in names]
        rows.append([label, *[fmt.format(v) for v in vals],
                     *[ratio(v, vals[0]) for v in vals[1:]]])
    print(format_table(header, rows))
    print(f"   step GFLOP per batch: {', '.join(f'{f / 1e9:.1f}' for f in result['step_flops'])}")


def parse_args() -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=["demo", "base"], default="demo")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--precisions", nargs="+", choices=list(DTYPES), default=None,
                   help="default: fp32 bf16 (CPU), fp32 bf16 fp16 (CUDA); the first is the "
                        "reference of the ratios")
    p.add_argument("--steps", type=int, default=4, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per precision")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per precision")
    p.add_argument("--batches", type=int, default=4, help="distinct batches (cycled)")
    p.add_argument("--token-budget", type=int, default=4096, help="positions per batch")
    p.add_argument("--pool", type=int, default=4096, help="captions the batches are cut from")
    p.add_argument("--vocab-size", type=int, default=30522)
    p.add_argument("--feature-dim", type=int, default=2048)
    p.add_argument("--num-classes", type=int, default=1601)
    p.add_argument("--captions", type=Path, default=KARPATHY_TEST)
    p.add_argument("--vocab", type=Path, default=None, help="a BERT vocab.txt for the captions")
    p.add_argument("--max-text-len", type=int, default=40)
    p.add_argument("--matmul-size", type=int, default=2048)
    p.add_argument("--matmul-reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--compile", action="store_true",
                   help="also time each precision with every layer compiled (train.compile)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default: benchmarks/results/throughput_<device>.json)")
    return p.parse_args()


def main() -> None:
    """Measure, print the table, write the JSON."""
    args = parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.precisions is None:
        args.precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    if "fp16" in args.precisions and device.type != "cuda":
        raise SystemExit("--precisions: fp16 needs a CUDA device; use bf16 on CPU")
    result = run(args, device)
    print_table(result, args)
    suffix = "" if args.size == "demo" else f"_{args.size}"
    out = args.out or RESULTS / f"throughput{suffix}_{device.type}.json"
    write_results(out, result)


if __name__ == "__main__":
    main()
