"""Masked region modelling: MRFR (feature regression), MRC (hard class), MRC-KL (soft class).

Masked regions arrive with zeroed features; targets are the original feature and the
detector's class distribution for that region.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from vlp.data.batch import Batch
from vlp.models.config import ModelConfig
from vlp.models.outputs import VLOutput
from vlp.objectives.base import (
    Objective,
    ObjectiveOutput,
    accuracy_counts,
    classifier,
    zero_loss,
)


def _masked_states(output: VLOutput, batch: Batch) -> tuple[Tensor, Tensor] | None:
    """Visual states of masked regions (N, D) and the (B, R) selector, or None if none."""
    if batch.region_masked is None:
        raise ValueError("masked region modelling needs batch.region_masked")
    where = batch.region_masked & output.image_mask
    if not bool(where.any()):
        return None
    return output.image[where], where


class MRFR(Objective):
    """Masked region feature regression: L2 from a projection of the output to the
    original (pre-mask) detector feature."""

    masks = "image"

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, output: VLOutput, batch: Batch) -> ObjectiveOutput:  # type: ignore[override]
        """Mean squared error over masked regions."""
        picked = _masked_states(output, batch)
        if picked is None or batch.region_targets is None:
            return ObjectiveOutput(zero_loss(output.image))
        states, where = picked
        pred = self.head(states).float()  # (N, F)
        return ObjectiveOutput(F.mse_loss(pred, batch.region_targets[where].float()))


class MRC(Objective):
    """Masked region classification against the detector's argmax class (hard label)."""

    masks = "image"

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, output: VLOutput, batch: Batch) -> ObjectiveOutput:  # type: ignore[override]
        """Cross-entropy over masked regions."""
        picked = _masked_states(output, batch)
        if picked is None or batch.region_cls is None:
            return ObjectiveOutput(zero_loss(output.image))
        states, where = picked
        logits = self.head(states).float()  # (N, C)
        targets = batch.region_cls[where].argmax(-1)
        correct, count = accuracy_counts(logits, targets)
        return ObjectiveOutput(F.cross_entropy(logits, targets), correct, count)


class MRCKL(Objective):
    """Masked region classification with KL divergence to the detector's distribution."""

    masks = "image"

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, output: VLOutput, batch: Batch) -> ObjectiveOutput:  # type: ignore[override]
        """KL(detector ‖ prediction), averaged over masked regions."""
        picked = _masked_states(output, batch)
        if picked is None or batch.region_cls is None:
            return ObjectiveOutput(zero_loss(output.image))
        states, where = picked
        log_probs = F.log_softmax(self.head(states).float(), dim=-1)  # (N, C)
        target = batch.region_cls[where].float()
        correct, count = accuracy_counts(log_probs, target.argmax(-1))
        loss = F.kl_div(log_probs, target, reduction="batchmean")
        return ObjectiveOutput(loss, correct, count)


def _check_classes(cfg: ModelConfig) -> int:
    if cfg.num_region_classes <= 0:
        raise ValueError("region classification needs model.num_region_classes > 0")
    return cfg.num_region_classes


def build_mrfr(cfg: ModelConfig, model: nn.Module) -> MRFR:
    """MRFR head: transform → linear to the region feature size."""
    return MRFR(classifier(cfg.hidden_size, cfg.region_feature_dim, cfg.layer_norm_eps))


def build_mrc(cfg: ModelConfig, model: nn.Module) -> MRC:
    """MRC head: transform → linear to the detector's classes."""
    return MRC(classifier(cfg.hidden_size, _check_classes(cfg), cfg.layer_norm_eps))


def build_mrc_kl(cfg: ModelConfig, model: nn.Module) -> MRCKL:
    """MRC-KL head: transform → linear to the detector's classes."""
    return MRCKL(classifier(cfg.hidden_size, _check_classes(cfg), cfg.layer_norm_eps))
