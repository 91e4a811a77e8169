"""A training step with glibc's default malloc against ``keep_freed_memory()``.

The setting is process-wide, so each arm runs in its own process, alternately (``--pairs``
of each). Each process times two things: the fresh buffers of a BERT-base step alone (the
30,522 × 768 word-embedding gradient zeroed, that matrix cast to bf16 and a bf16 copy cast
back, as autocast and the backward do), and the base-size bf16 UNITER step of
``throughput.py`` (MLM + MRFR + MRC-KL + ITM, AdamW) on the same batches. vlp's command
line applies ``keep_freed_memory()`` to every command it runs.

Usage: ``.venv/bin/python benchmarks/allocator.py [--pairs 2] [--threads 1]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from _common import KARPATHY_TEST, RESULTS, format_table, ratio, write_results

ARMS = ("default", "keep")


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One process: apply the arm, time the buffers and the step, return the medians."""
    import throughput
    from vlp.train.allocator import keep_freed_memory

    applied = keep_freed_memory() if args.child == "keep" else False
    torch.set_num_threads(args.threads)
    weight = torch.randn(30522, 768)
    copy = weight.bfloat16()

    def buffers() -> None:
        torch.zeros(30522, 768)
        weight.bfloat16()
        copy.float()

    buffers()
    times = []
    for _ in range(10):
        start = time.perf_counter()
        buffers()
        times.append(time.perf_counter() - start)
    targs = argparse.Namespace(size="base", vocab_size=30522, feature_dim=2048,
                               num_classes=1601, captions=args.captions, vocab=None,
                               max_text_len=40, pool=4096, seed=0,
                               token_budget=args.token_budget, batches=args.batches)
    batches, desc = throughput.make_batches(targs)
    device = torch.device("cpu")
    pm, opt = throughput.build(throughput.model_config(targs), device)
    step = throughput.make_step(pm, opt, device, "bf16")
    for batch in batches:  # warm-up: the allocator's state settles
        step(batch)
    rounds = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for batch in batches:
            step(batch)
        rounds.append(sum(b.size for b in batches) / (time.perf_counter() - start))
    return {"applied": applied, "buffers_ms": 1e3 * statistics.median(times),
            "samples_per_s": statistics.median(rounds), "rounds": rounds, "batches": desc}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=2, help="processes of each arm, alternating")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds a process")
    p.add_argument("--batches", type=int, default=2)
    p.add_argument("--token-budget", type=int, default=2048)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--captions", type=Path, default=KARPATHY_TEST)
    p.add_argument("--child", choices=ARMS, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=RESULTS / "allocator_cpu.json")
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    runs: dict[str, list[dict[str, Any]]] = {a: [] for a in ARMS}
    passed = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
              if k in ("rounds", "batches", "token_budget", "threads", "captions")]
    for i in range(args.pairs):
        for arm in ARMS:
            done = subprocess.run([sys.executable, __file__, "--child", arm, *passed],
                                  capture_output=True, text=True, check=True)
            runs[arm].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"   pair {i + 1}/{args.pairs} {arm}: "
                  f"{runs[arm][-1]['samples_per_s']:.2f} samples/s, "
                  f"buffers {runs[arm][-1]['buffers_ms']:.0f} ms", flush=True)
    med = {a: {k: statistics.median(r[k] for r in runs[a])
               for k in ("buffers_ms", "samples_per_s")} for a in ARMS}
    print(f"\nbase-size bf16 step: {runs['keep'][0]['batches']}")
    print(format_table(
        ["malloc", "fresh buffers ms", "step samples/s", "step vs default"],
        [[a, f"{med[a]['buffers_ms']:.0f}", f"{med[a]['samples_per_s']:.2f}",
          ratio(med[a]["samples_per_s"], med["default"]["samples_per_s"])] for a in ARMS]))
    write_results(args.out, {"benchmark": "allocator", "runs": runs, "median": med,
                             "buffers_speedup": med["default"]["buffers_ms"]
                             / med["keep"]["buffers_ms"]})


if __name__ == "__main__":
    main()
