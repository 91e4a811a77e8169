"""Image-text matching: does this text belong to this image?"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from vlp.data.batch import Batch
from vlp.models.config import ModelConfig
from vlp.models.outputs import VLOutput
from vlp.objectives.base import Objective, ObjectiveOutput, accuracy_counts


class ITM(Objective):
    """Binary classification of the pooled pair representation; negatives are made by
    the data side swapping the image (equivalently the text) of an example."""

    pairs = True

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def scores(self, output: VLOutput, batch: Batch) -> Tensor:
        """(B, 2) logits: no match, match."""
        return self.head(output.pooled).float()

    def forward(self, output: VLOutput, batch: Batch) -> ObjectiveOutput:  # type: ignore[override]
        """Cross-entropy against ``batch.itm_labels``."""
        if batch.itm_labels is None:
            raise ValueError("ITM needs batch.itm_labels")
        logits = self.scores(output, batch)  # (B, 2)
        correct, count = accuracy_counts(logits, batch.itm_labels)
        return ObjectiveOutput(F.cross_entropy(logits, batch.itm_labels), correct, count)


def build_itm(cfg: ModelConfig, model: nn.Module) -> ITM:
    """ITM head: a linear layer on the pooled representation."""
    return ITM(nn.Linear(cfg.hidden_size, 2))
