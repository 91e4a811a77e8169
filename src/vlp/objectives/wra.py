"""Word-region alignment (UNITER's WRA): optimal transport between a pair's word states and
region states, pulled down for matching pairs and pushed up for mismatched ones.

The cost of moving word i to region j is their cosine distance, ``1 − cos(w_i, r_j)``. The
transport plan T spreads each word's mass (1 / #words) over the regions and each region's
(1 / #regions) over the words, and minimises ``Σ T_ij C_ij``. T is found without gradient by
IPOT (the inexact proximal point method of Xie et al., 2019), as UNITER does. The loss is
the transport distance ``Σ T_ij C_ij``, with gradient through the costs. It is averaged over
matching pairs, minus the same average over mismatched pairs. So the encoder learns to put
each word near the regions it names, without region-level labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vlp.data.batch import Batch
from vlp.errors import VlpError
from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.models.outputs import VLOutput
from vlp.objectives.base import Objective, ObjectiveOutput


@torch.no_grad()
def ipot_plan(cost: Tensor, rows: Tensor, cols: Tensor, beta: float = 0.5,
              iterations: int = 50) -> Tensor:
    """Transport plans between uniform masses, by IPOT.

    Args:
        cost: (B, M, N) costs; entries on padding are ignored.
        rows: (B, M) True on real rows (words).
        cols: (B, N) True on real columns (regions).
        beta: proximal step (smaller: closer to exact OT, slower to converge).
        iterations: outer iterations (UNITER: 50, one Sinkhorn step each).

    Returns:
        (B, M, N) plans: each real row sums to 1 / #rows, each real column to 1 / #cols,
        zero on padding.
    """
    cost = cost.float()
    real = rows[:, :, None] & cols[:, None, :]  # (B, M, N)
    kernel = torch.exp(-cost / beta) * real
    n_rows = rows.sum(1, keepdim=True).clamp(min=1).float()  # (B, 1)
    n_cols = cols.sum(1, keepdim=True).clamp(min=1).float()
    plan = real.float()
    b = torch.ones_like(cols, dtype=torch.float) / n_cols  # (B, N) column scaling
    tiny = 1e-30
    for _ in range(iterations):
        q = kernel * plan  # (B, M, N)
        a = rows / (n_rows * (q @ b[..., None]).squeeze(-1) + tiny)  # (B, M)
        b = cols / (n_cols * (a[:, None, :] @ q).squeeze(1) + tiny)  # (B, N)
        plan = a[..., None] * q * b[:, None, :]
    return plan


def transport_distance(words: Tensor, word_mask: Tensor, regions: Tensor,
                       region_mask: Tensor, iterations: int = 50) -> Tensor:
    """(B,) optimal-transport distance between each row's words and regions under
    cosine cost; the plan is held fixed, so the gradient flows through the costs."""
    w, r = F.normalize(words.float(), dim=-1), F.normalize(regions.float(), dim=-1)
    cost = 1.0 - w @ r.transpose(1, 2)  # (B, M, N) cosine distance
    plan = ipot_plan(cost.detach(), word_mask, region_mask, iterations=iterations)
    return (cost * plan).sum(dim=(1, 2))


class WRA(Objective[VLOutput]):
    """UNITER's word-region alignment on pairs with ITM labels (1 match, 0 mismatch).

    Words are the text positions after [CLS] (the [SEP] included, as UNITER does).
    """

    pairs = True

    def __init__(self, iterations: int = 50) -> None:
        super().__init__()
        self.iterations = iterations

    def forward(self, output: VLOutput, batch: Batch) -> ObjectiveOutput:
        """Mean distance of matching pairs minus mean distance of mismatched ones."""
        if batch.itm_labels is None:
            raise ValueError("WRA needs batch.itm_labels")
        if output.text.shape[-1] != output.image.shape[-1]:
            raise VlpError(f"objective wra compares word and region states, but they have "
                           f"widths {output.text.shape[-1]} and {output.image.shape[-1]} "
                           "(set model.image_hidden_size to the text width)")
        word_mask = output.text_mask[:, 1:]
        distance = transport_distance(output.text[:, 1:], word_mask, output.image,
                                      output.image_mask, self.iterations)  # (B,)
        match = (batch.itm_labels == 1).to(distance.dtype)  # (B,)
        # each mean over its rows, 0 when there are none (a weighted sum: no host read)
        matched = (distance * match).sum() / match.sum().clamp(min=1.0)
        mismatched = (distance * (1.0 - match)).sum() / (1.0 - match).sum().clamp(min=1.0)
        return ObjectiveOutput(matched - mismatched)


def build_wra(cfg: ModelConfig, model: VLEncoder) -> WRA:
    """WRA has no parameters of its own: it shapes the encoder's states."""
    return WRA()
