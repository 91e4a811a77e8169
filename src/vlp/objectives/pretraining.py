"""A model plus its objectives: one forward gives the named losses and their total."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from vlp.data.batch import Batch
from vlp.errors import VlpError
from vlp.objectives.base import Objective


@dataclass
class PretrainOutput:
    """Total loss, per-objective losses, and accuracy counts where an objective has them."""

    loss: Tensor
    losses: dict[str, Tensor]
    correct: dict[str, Tensor] = field(default_factory=dict)
    count: dict[str, Tensor] = field(default_factory=dict)


class PretrainingModel(nn.Module):
    """Wraps an encoder and a ``ModuleDict`` of objectives (each holding its head).

    Args:
        model: any vlp encoder whose ``forward(batch)`` returns a ``VLOutput``.
        objectives: name → objective.
        weights: name → loss weight (1.0 when missing).
    """

    def __init__(self, model: nn.Module, objectives: dict[str, Objective],
                 weights: dict[str, float] | None = None) -> None:
        super().__init__()
        self.model = model
        self.objectives = nn.ModuleDict(objectives)
        self.weights = dict(weights or {})

    def forward(self, batch: Batch, names: Sequence[str]) -> PretrainOutput:
        """Encode ``batch`` as the objectives in ``names`` need (a joint pass, text and
        image apart, or both — each at most once) and apply them."""
        objectives: dict[str, Objective] = {n: self.objectives[n] for n in names}  # type: ignore[misc]
        kinds = {o.inputs for o in objectives.values()}
        outputs: dict[str, object] = {}
        if "joint" in kinds:
            outputs["joint"] = self.model(batch)
        if "unimodal" in kinds:
            encode = getattr(self.model, "encode_unimodal", None)
            if encode is None:
                raise VlpError(f"{type(self.model).__name__} cannot encode text and image "
                               "apart, which a contrastive objective needs")
            outputs["unimodal"] = encode(batch)
        result = PretrainOutput(loss=torch.zeros((), device=batch.input_ids.device), losses={})
        for name in names:
            objective = objectives[name]
            out = objective(outputs[objective.inputs], batch)
            result.losses[name] = out.loss
            result.loss = result.loss + self.weights.get(name, 1.0) * out.loss
            if out.correct is not None and out.count is not None:
                result.correct[name] = out.correct
                result.count[name] = out.count
        return result
