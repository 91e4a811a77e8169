"""The objective interface: (model output, batch) → loss (+ accuracy counts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

MaskedModality = Literal["text", "image", "none"]
Inputs = Literal["joint", "unimodal"]


@dataclass
class ObjectiveOutput:
    """A loss and, for classification objectives, how many predictions were right."""

    loss: Tensor
    correct: Tensor | None = None
    count: Tensor | None = None


class Objective(nn.Module):
    """Base of pre-training objectives. Each holds its own head.

    Class attributes tell the data side what a batch for this objective needs:
    ``masks`` — which modality it masks; ``pairs`` — whether it needs mismatched pairs;
    and the model side what to compute: ``inputs`` — ``"joint"`` (a ``VLOutput`` of the
    fused pair) or ``"unimodal"`` (a ``UnimodalOutput``: text and image encoded apart).
    """

    masks: MaskedModality = "none"
    pairs: bool = False
    inputs: Inputs = "joint"

    def forward(self, output: object, batch: object) -> ObjectiveOutput:  # pragma: no cover
        raise NotImplementedError


class Transform(nn.Module):
    """BERT's prediction-head transform: dense → GELU → LayerNorm."""

    def __init__(self, dim: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        """(..., D) → (..., D)."""
        return self.norm(self.act(self.dense(x)))


def classifier(dim: int, num_classes: int, eps: float = 1e-12) -> nn.Sequential:
    """Transform followed by a linear layer to ``num_classes`` logits."""
    return nn.Sequential(Transform(dim, eps), nn.Linear(dim, num_classes))


def zero_loss(reference: Tensor) -> Tensor:
    """A zero loss still connected to the graph (a batch with nothing to predict)."""
    return reference.sum() * 0.0


def accuracy_counts(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(number right, number of predictions) for argmax classification."""
    correct = (logits.argmax(-1) == targets).sum()
    return correct, torch.tensor(targets.numel(), device=targets.device)
