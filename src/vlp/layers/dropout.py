"""Dropout whose mask is cheap to draw on CPU.

On CPU, ``F.dropout`` draws one Bernoulli variate per element, and at BERT-base size that
is about a tenth of a bf16 training step (it is mostly the random number generator; the
multiply is nothing beside it). Here one 64-bit draw from torch's generator gives four
16-bit uniforms, so the mask costs a quarter of the draws: forward + backward take about
half the time on one core (``benchmarks/dropout.py``). The mask is kept for backward in
the input's dtype, as CPU ``F.dropout`` keeps it. The rate is a multiple of 1/65,536
(0.1 becomes 6554/65536 = 0.100006; a rate below 1/131,072 goes to ``F.dropout``) and the
kept elements are scaled by the inverse of the rate really used, so the expected output
still equals the input. The scale multiplies as a Python number, so each output is
rounded once from the exact product; CPU ``F.dropout`` multiplies by a scale already
rounded to the input's dtype, which in bf16 (1/0.9 → 1.109375) shrinks every kept
element by 0.16 %. Elsewhere (CUDA, which has a fused kernel; inside ``torch.compile``,
which draws its own masks) it is ``F.dropout``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LEVELS = 1 << 16


def _keep_mask(shape: torch.Size, drop: int, device: torch.device) -> Tensor:
    """A bool mask of ``shape``: each element kept with probability 1 − drop / 65536,
    independently, from torch's default generator."""
    n = shape.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-(1 << 63), None)  # every 64-bit pattern: four uniform 16-bit lanes
    lanes = words.view(torch.int16)[:n].view(shape)
    return lanes >= drop - (1 << 15)  # int16 runs -32768..32767: drop levels below this


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Zero each element of ``x`` with probability ``p`` and scale the rest to keep the
    expectation (training only); ``F.dropout``'s contract, with the CPU mask above."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return x
    drop = round(p * _LEVELS)
    if (x.device.type != "cpu" or drop in (0, _LEVELS)
            or torch.compiler.is_compiling()):
        return F.dropout(x, p, training)
    keep = _keep_mask(x.shape, drop, x.device).to(x.dtype)  # backward multiplies by it too
    # the scale as a Python number: each output rounded once (a bf16 1/0.9 would shrink
    # every kept element by 0.16 %)
    return (x * keep).mul_(_LEVELS / (_LEVELS - drop))


class Dropout(nn.Dropout):
    """``nn.Dropout`` with :func:`dropout`'s cheaper CPU mask (same ``p``, repr, state)."""

    def forward(self, x: Tensor) -> Tensor:
        if self.inplace:
            return super().forward(x)
        return dropout(x, self.p, self.training)
