"""Attention on CPU: SDPA's fused kernel, SDPA's math path and vlp's plain-ops path.

``vlp.layers.attention`` writes attention out in plain ops (``eager_attention``: bf16
matmuls, fp32 softmax) for bf16 on CPU with at most ``_CPU_BF16_EAGER_MAX_KEYS`` keys and
calls SDPA otherwise; this script shows why, per precision and sequence length: one
forward + backward of padded self-attention (half the batch padded to half length),
4 heads × 64, about 3000 query positions a batch.

Usage: ``.venv/bin/python benchmarks/attention.py [--lengths 32 64 128 256 512 1024]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from _common import RESULTS, format_table, ratio, write_results
from vlp.layers.attention import eager_attention

Attend = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def sdpa(backend: SDPBackend) -> Attend:
    def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return attend


PATHS: dict[str, Attend] = {"fused": sdpa(SDPBackend.FLASH_ATTENTION),
                            "math": sdpa(SDPBackend.MATH), "vlp eager": eager_attention}


def step_ms(length: int, bf16: bool, attend: Attend, repeats: int = 10) -> float:
    """Mean milliseconds of one forward + backward."""
    batch = max(1, 3000 // length)
    q, k, v = (torch.randn(batch, 4, length, 64, requires_grad=True) for _ in range(3))
    mask = torch.ones(batch, 1, 1, length, dtype=torch.bool)
    mask[: batch // 2, ..., length // 2:] = False

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = attend(q, k, v, mask)
        out.float().sum().backward()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128, 256, 512, 1024])
    parser.add_argument("--out", type=Path, default=RESULTS / "attention_cpu.json")
    args = parser.parse_args()
    rows, results = [], []
    for precision in ("bf16", "fp32"):
        for length in args.lengths:
            ms = {name: step_ms(length, precision == "bf16", fn) for name, fn in PATHS.items()}
            rows.append([precision, str(length), *(f"{t:.1f}" for t in ms.values()),
                         ratio(ms["fused"], ms["vlp eager"]),
                         ratio(ms["math"], ms["vlp eager"])])
            results.append({"precision": precision, "length": length, "ms": ms})
    print("forward + backward, ms")
    print(format_table(["precision", "keys", *PATHS, "fused/eager", "math/eager"], rows))
    write_results(args.out, {"rows": results})


if __name__ == "__main__":
    main()
