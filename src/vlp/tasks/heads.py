"""Task heads: objectives on the encoder's pooled pair, its region states, or row groups."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp.data.batch import Batch
from vlp.models.outputs import VLOutput
from vlp.objectives.base import Objective, ObjectiveOutput


def mlp_head(dim: int, num_outputs: int, eps: float = 1e-12) -> nn.Sequential:
    """UNITER's task head: Linear(D, 2D) → GELU → LayerNorm → Linear(2D, outputs)."""
    return nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.LayerNorm(2 * dim, eps=eps),
                         nn.Linear(2 * dim, num_outputs))


class PairClassifier(Objective):
    """Classifies the pooled pair: one label per row (cross-entropy) or soft scores over
    a label set (binary cross-entropy, VQA).

    Args:
        dim: width of ``VLOutput.pooled``.
        num_outputs: classes or answers.
        soft: targets are (B, C) soft scores (VQA) instead of (B,) class ids.
    """

    def __init__(self, dim: int, num_outputs: int, soft: bool = False) -> None:
        super().__init__()
        self.head = mlp_head(dim, num_outputs)
        self.soft = soft

    def scores(self, output: VLOutput, batch: Batch) -> Tensor:
        """(B, C) logits."""
        return self.head(output.pooled).float()

    def forward(self, output: VLOutput, batch: Batch) -> ObjectiveOutput:  # type: ignore[override]
        """Loss and (for soft targets: summed target score of the argmax) correct count."""
        if batch.targets is None:
            raise ValueError("a task head needs batch.targets")
        logits = self.scores(output, batch)
        pick = logits.argmax(1)
        rows = torch.arange(logits.shape[0], device=logits.device)
        if self.soft:
            # UNITER: mean BCE over answers, times the number of answers
            loss = F.binary_cross_entropy_with_logits(logits, batch.targets) * logits.shape[1]
            correct = batch.targets[rows, pick].sum()
        else:
            loss = F.cross_entropy(logits, batch.targets)
            correct = (pick == batch.targets).sum()
        count = torch.tensor(logits.shape[0], device=logits.device)
        return ObjectiveOutput(loss, correct.detach(), count)
