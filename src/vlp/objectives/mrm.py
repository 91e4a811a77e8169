"""Masked region modelling: MRFR (feature regression), MRC (hard class), MRC-KL (soft class).

Masked regions arrive with zeroed features; targets are the original feature and the
detector's class distribution for that region. The three differ only in the head's
output size and the loss, so they share one module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from vlp.data.batch import Batch
from vlp.errors import VlpError
from vlp.layers.packing import gather_positions, real_index, true_count
from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.models.outputs import VLOutput
from vlp.objectives.base import (
    Objective,
    ObjectiveOutput,
    accuracy_counts,
    classification,
    classifier,
    zero_loss,
)

Target = Literal["feature", "class", "distribution"]


def _feature_loss(pred: Tensor, batch: Batch, index: Tensor) -> ObjectiveOutput:
    """MRFR: L2 to the original (pre-mask) detector feature."""
    assert batch.region_targets is not None
    target = gather_positions(batch.region_targets, index).float()
    return ObjectiveOutput(F.mse_loss(pred, target))


def _class_loss(pred: Tensor, batch: Batch, index: Tensor) -> ObjectiveOutput:
    """MRC: cross-entropy to the detector's argmax class."""
    assert batch.region_cls is not None
    return classification(pred, gather_positions(batch.region_cls, index).argmax(-1))


def _distribution_loss(pred: Tensor, batch: Batch, index: Tensor) -> ObjectiveOutput:
    """MRC-KL: KL(detector ‖ prediction), averaged over masked regions."""
    assert batch.region_cls is not None
    target = gather_positions(batch.region_cls, index).float()
    log_probs = F.log_softmax(pred, dim=-1)
    correct, count = accuracy_counts(log_probs, target.argmax(-1))
    return ObjectiveOutput(F.kl_div(log_probs, target, reduction="batchmean"), correct, count)


_LOSSES: dict[Target, Callable[[Tensor, Batch, Tensor], ObjectiveOutput]] = {
    "feature": _feature_loss,
    "class": _class_loss,
    "distribution": _distribution_loss,
}
_NEEDS = {"feature": "region_targets", "class": "region_cls", "distribution": "region_cls"}


class MaskedRegionModelling(Objective[VLOutput]):
    """Predict something about each masked region from its contextual state.

    Args:
        head: maps visual states (N, D) to feature-size or class-count outputs.
        target: "feature" (MRFR), "class" (MRC) or "distribution" (MRC-KL).
    """

    masks = "image"

    def __init__(self, head: nn.Module, target: Target) -> None:
        super().__init__()
        self.head = head
        self.target = target

    def forward(self, output: VLOutput, batch: Batch) -> ObjectiveOutput:
        """Loss over ``batch.region_masked`` (real regions only)."""
        if batch.region_masked is None:
            raise ValueError("masked region modelling needs batch.region_masked")
        where = batch.region_masked & output.image_mask  # (B, R)
        # the batch counted its masked real regions; the model's mask must be the regions'
        known = output.image_mask is batch.region_mask
        count = true_count(where, batch.counts.get("region_masked") if known else None)
        if count == 0 or getattr(batch, _NEEDS[self.target]) is None:
            return ObjectiveOutput(zero_loss(output.image))
        index = real_index(where, count)  # (N,) into the flattened (B·R)
        pred = self.head(gather_positions(output.image, index)).float()  # (N, F) or (N, C)
        return _LOSSES[self.target](pred, batch, index)


def _check_regions(cfg: ModelConfig, name: str) -> None:
    if cfg.visual != "regions":
        raise VlpError(f"objective {name} masks detector regions, but the model reads "
                       f"{cfg.visual} (model.visual); on a grid use mvm")


def _check_classes(cfg: ModelConfig) -> int:
    if cfg.num_region_classes <= 0:
        raise VlpError("objectives: mrc / mrc_kl need region class distributions, but the "
                       "feature store has none (num_classes 0); use mrfr or re-extract with "
                       "class probabilities")
    return cfg.num_region_classes


def build_mrfr(cfg: ModelConfig, model: VLEncoder) -> MaskedRegionModelling:
    """MRFR head: transform → linear to the region feature size."""
    _check_regions(cfg, "mrfr")
    head = classifier(cfg.image_width, cfg.region_feature_dim, cfg.layer_norm_eps)
    return MaskedRegionModelling(head, "feature")


def build_mrc(cfg: ModelConfig, model: VLEncoder) -> MaskedRegionModelling:
    """MRC head: transform → linear to the detector's classes."""
    _check_regions(cfg, "mrc")
    head = classifier(cfg.image_width, _check_classes(cfg), cfg.layer_norm_eps)
    return MaskedRegionModelling(head, "class")


def build_mrc_kl(cfg: ModelConfig, model: VLEncoder) -> MaskedRegionModelling:
    """MRC-KL head: transform → linear to the detector's classes."""
    _check_regions(cfg, "mrc_kl")
    head = classifier(cfg.image_width, _check_classes(cfg), cfg.layer_norm_eps)
    return MaskedRegionModelling(head, "distribution")
