"""The objective interface: (model output, batch) → loss (+ accuracy counts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp.data.batch import Batch
from vlp.models.outputs import UnimodalOutput, VLOutput

if TYPE_CHECKING:  # the loss model holds objectives; an objective's hook reads it
    from vlp.objectives.loss_model import LossModel

MaskedModality = Literal["text", "image", "none"]
Inputs = Literal["joint", "unimodal"]


@dataclass
class ObjectiveOutput:
    """A loss and, for classification objectives, how many predictions were right."""

    loss: Tensor
    correct: Tensor | None = None
    count: int | None = None  # known on the host: reading it never waits for the device


OutputT = TypeVar("OutputT", VLOutput, UnimodalOutput)


class Objective(nn.Module, Generic[OutputT]):
    """Base of objectives and task heads: (encoder output, batch) → loss. Each holds its
    own head; ``Objective[VLOutput]`` reads the joint pass, ``Objective[UnimodalOutput]``
    text and image encoded apart.

    Class attributes tell the data side what a batch for this objective needs:
    ``masks`` — which modality it masks; ``pairs`` — whether it needs mismatched pairs;
    and the model side what to compute: ``inputs`` — ``"joint"`` or ``"unimodal"``
    (which output ``forward`` receives).

    Two hooks let an objective take part in a run without the loop naming it:
    :meth:`configure` reads its settings from the run's objectives config, and
    :meth:`prepare` rebuilds a training batch with the model's help before the step
    (hard negatives, model-driven sampling).
    """

    masks: MaskedModality = "none"
    pairs: bool = False
    inputs: Inputs = "joint"

    def forward(self, output: OutputT, batch: Batch) -> ObjectiveOutput:  # pragma: no cover
        raise NotImplementedError

    def __call__(self, output: OutputT, batch: Batch) -> ObjectiveOutput:
        out: ObjectiveOutput = super().__call__(output, batch)
        return out

    def configure(self, settings: object) -> None:
        """Take this objective's settings from the run's objectives config (a
        :class:`~vlp.train.config.ObjectivesConfig`); none by default."""

    @property
    def prepares(self) -> bool:
        """Whether :meth:`prepare` does anything (the loop skips the hook, and the switch to
        scoring mode around it, otherwise): by default, whether a subclass defines it."""
        return type(self).prepare is not Objective.prepare

    def prepare(self, batch: Batch, model: LossModel, seed: int) -> Batch:
        """The training batch this objective will see, rebuilt with ``model`` (which
        scores in eval mode without gradients); ``seed`` seeds any draw. As is by default.
        """
        return batch


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


def fp32_logits(head: nn.Module, x: Tensor) -> Tensor:
    """``head(x)`` in fp32 outside autocast: a task or ITM head is small beside the
    encoder, and bf16 logits (8 bits of mantissa) tie near neighbours when they rank
    retrieval candidates or answers, and round the losses taken from them."""
    with torch.autocast(x.device.type, enabled=False):
        return head(x.float())


def zero_loss(reference: Tensor) -> Tensor:
    """A zero loss still connected to the graph (a batch with nothing to predict)."""
    return reference.sum() * 0.0


def classification(logits: Tensor, targets: Tensor) -> ObjectiveOutput:
    """Cross-entropy of (N, C) ``logits`` against (N,) class ``targets``, with argmax
    accuracy counts (MLM, MVM, MRC, ITM)."""
    correct, count = accuracy_counts(logits, targets)
    return ObjectiveOutput(F.cross_entropy(logits, targets), correct, count)


def accuracy_counts(logits: Tensor, targets: Tensor) -> tuple[Tensor, int]:
    """(number right, number of predictions) for argmax classification."""
    correct = (logits.argmax(-1) == targets).sum()
    return correct, targets.numel()
