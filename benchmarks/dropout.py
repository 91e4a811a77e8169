"""vlp's CPU dropout against ``F.dropout``: alone, and in a BERT-base training step.

Alone: forward + backward of each on the shapes a base-size step drops, attention
probabilities (B, 12, N, N) and hidden states (T, 768), fp32 and bf16. In a step: the
UNITER-style pre-training step of ``throughput.py`` (MLM + MRFR + MRC-KL + ITM, AdamW) at
base size with dropout 0.1, on one model whose dropout layers are switched between vlp's
and torch's between rounds (same weights, same batches), and with dropout off as the floor.
Torch's arm drops at vlp's places: on the attention probabilities after their cast to
bf16 (before this module, vlp dropped them in fp32, which cost more).
Rounds alternate in one process; the median is reported.

Usage: ``.venv/bin/python benchmarks/dropout.py [--threads 1] [--precision bf16]``
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import throughput
from _common import KARPATHY_TEST, RESULTS, format_table, ratio, write_results
from vlp.layers import attention
from vlp.layers.dropout import Dropout, dropout


def _time(fn: Callable[[], Any], reps: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def op_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Forward + backward of ``F.dropout`` and vlp's ``dropout`` on a step's shapes."""
    b, n, t = 16, 80, 16 * 80
    shapes = {"attention probabilities (16, 12, 80, 80)": (b, 12, n, n),
              "hidden states (1280, 768)": (t, 768)}
    rows = []
    for name, shape in shapes.items():
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(shape, dtype=dtype, requires_grad=True)
            grad = torch.randn(shape, dtype=dtype)

            def run(f: Callable[..., torch.Tensor], x: torch.Tensor = x,
                    grad: torch.Tensor = grad) -> Callable[[], None]:
                return lambda: f(x, 0.1, True).backward(grad)

            times: dict[str, list[float]] = {"torch": [], "vlp": []}
            for _ in range(args.rounds):
                times["torch"].append(_time(run(F.dropout), args.op_reps))
                times["vlp"].append(_time(run(dropout), args.op_reps))
            med = {k: statistics.median(v) for k, v in times.items()}
            rows.append({"shape": name, "dtype": str(dtype).removeprefix("torch."),
                         "torch_ms": 1e3 * med["torch"], "vlp_ms": 1e3 * med["vlp"],
                         "speedup": med["torch"] / med["vlp"]})
    return rows


@contextmanager
def torch_dropout(model: nn.Module) -> Iterator[None]:
    """Inside: the model's dropout layers and attention dropout are torch's own."""
    layers = [m for m in model.modules() if type(m) is Dropout]
    for m in layers:
        m.__class__ = nn.Dropout
    saved = attention.drop
    attention.drop = F.dropout
    try:
        yield
    finally:
        for m in layers:
            m.__class__ = Dropout
        attention.drop = saved


@contextmanager
def no_dropout(model: nn.Module) -> Iterator[None]:
    """Inside: every dropout rate is 0 (the floor: what the rest of the step costs)."""
    layers = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    heads = [m for m in model.modules() if isinstance(m, attention.MultiHeadAttention)]
    rates = [m.p for m in layers], [m.dropout for m in heads]
    for m in layers:
        m.p = 0.0
    for h in heads:
        h.dropout = 0.0
    try:
        yield
    finally:
        for m, p in zip(layers, rates[0], strict=True):
            m.p = p
        for h, p in zip(heads, rates[1], strict=True):
            h.dropout = p


def step_rows(args: argparse.Namespace) -> dict[str, Any]:
    """The base-size step with vlp's dropout, torch's, and none, in alternating rounds."""
    targs = argparse.Namespace(size="base", vocab_size=30522, feature_dim=2048,
                               num_classes=1601, captions=args.captions, vocab=None,
                               max_text_len=40, pool=4096, seed=0,
                               token_budget=args.token_budget, batches=args.batches)
    cfg = dataclasses.replace(throughput.model_config(targs), dropout=0.1)
    batches, desc = throughput.make_batches(targs)
    device = torch.device("cpu")
    pm, opt = throughput.build(cfg, device)
    step = throughput.make_step(pm, opt, device, args.precision)
    arms: dict[str, Callable[[], Any]] = {
        "vlp": contextmanager(lambda: iter([None])),
        "torch": lambda: torch_dropout(pm),
        "none": lambda: no_dropout(pm),
    }
    seconds: dict[str, list[float]] = {k: [] for k in arms}
    for batch in batches:  # warm-up
        step(batch)
    for _ in range(args.step_rounds):
        for name, arm in arms.items():
            with arm():
                start = time.perf_counter()
                for batch in batches:
                    step(batch)
                seconds[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    samples = sum(b.size for b in batches)
    return {"batches": desc, "precision": args.precision, "dropout": 0.1,
            "seconds_per_round": seconds,
            "samples_per_s": {k: samples / v for k, v in med.items()},
            "dropout_share": {k: (med[k] - med["none"]) / med[k] for k in ("vlp", "torch")},
            "step_speedup_vs_torch": med["torch"] / med["vlp"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    p.add_argument("--rounds", type=int, default=5, help="rounds of the op timings")
    p.add_argument("--op-reps", type=int, default=10)
    p.add_argument("--step-rounds", type=int, default=5)
    p.add_argument("--batches", type=int, default=2)
    p.add_argument("--token-budget", type=int, default=2048)
    p.add_argument("--captions", type=Path, default=KARPATHY_TEST)
    p.add_argument("--skip-step", action="store_true", help="the op timings only")
    p.add_argument("--out", type=Path, default=RESULTS / "dropout_cpu.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ops = op_rows(args)
    print(format_table(["shape", "dtype", "torch ms", "vlp ms", "vlp speed-up"],
                       [[r["shape"], r["dtype"], f"{r['torch_ms']:.2f}", f"{r['vlp_ms']:.2f}",
                         f"{r['speedup']:.2f}x"] for r in ops]))
    result: dict[str, Any] = {"benchmark": "dropout", "ops": ops}
    if not args.skip_step:
        step = step_rows(args)
        result["step"] = step
        sps = step["samples_per_s"]
        print(f"\nbase-size {args.precision} step, dropout 0.1: {step['batches']}")
        print(format_table(
            ["dropout", "samples/s", "vs torch's", "share of the step"],
            [[k, f"{sps[k]:.2f}", ratio(sps[k], sps["torch"]),
              f"{step['dropout_share'][k]:.1%}" if k != "none" else "-"] for k in sps]))
    write_results(args.out, result)


if __name__ == "__main__":
    main()
