"""An encoder plus its objectives (or task head): one forward gives the named losses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import Tensor, nn

from vlp.data.batch import Batch
from vlp.models.encoder import VLEncoder
from vlp.models.outputs import UnimodalOutput, VLOutput
from vlp.objectives.base import Objective


@dataclass
class LossOutput:
    """Total loss, per-objective losses, and accuracy counts where an objective has them."""

    loss: Tensor
    losses: dict[str, Tensor]
    correct: dict[str, Tensor] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)


class LossModel(nn.Module):
    """What a run trains: an encoder and a ``ModuleDict`` of objectives, each holding its
    head (pre-training: MLM, ITM, …; fine-tuning: the task head). Checkpoints hold its
    state: ``encoder.*`` and ``objectives.<name>.*``.

    Args:
        encoder: any :class:`VLEncoder`.
        objectives: name → objective.
        weights: name → loss weight (1.0 when missing).
    """

    def __init__(self, encoder: VLEncoder, objectives: dict[str, Objective],
                 weights: dict[str, float] | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.objectives = nn.ModuleDict(objectives)
        self.weights = dict(weights or {})

    def objective(self, name: str) -> Objective:
        """The objective called ``name``."""
        return cast(Objective, self.objectives[name])

    def prepare(self, batch: Batch, names: Iterable[str], seed: int) -> Batch:
        """``batch`` as the objectives in ``names`` rebuild it with the model's help (each
        objective's :meth:`~Objective.prepare`, in order); call it in scoring mode."""
        for name in names:
            batch = self.objective(name).prepare(batch, self, seed)
        return batch

    def forward(self, batch: Batch, names: Sequence[str]) -> LossOutput:
        """Encode ``batch`` as the objectives in ``names`` need (a joint pass, text and
        image apart, or both — each at most once) and apply them."""
        objectives = {n: self.objective(n) for n in names}
        kinds = {o.inputs for o in objectives.values()}
        joint: VLOutput | None = self.encoder(batch) if "joint" in kinds else None
        apart: UnimodalOutput | None = (self.encoder.encode_unimodal(batch)
                                        if "unimodal" in kinds else None)
        result = LossOutput(loss=torch.zeros((), device=batch.input_ids.device), losses={})
        for name, objective in objectives.items():
            out = objective(joint if objective.inputs == "joint" else apart, batch)
            result.losses[name] = out.loss
            result.loss = result.loss + self.weights.get(name, 1.0) * out.loss
            if out.correct is not None and out.count is not None:
                result.correct[name] = out.correct
                result.count[name] = out.count
        return result
