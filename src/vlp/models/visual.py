"""Visual inputs: turn the visual part of a :class:`Batch` into tokens and a mask.

Each input is built once and passed into a model, so the same single- or two-stream
encoder runs on detector regions, CNN grids or patches.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vlp.data.batch import Batch
from vlp.errors import VlpError
from vlp.layers.embeddings import PatchEmbedding, RegionEmbedding, VisualBertRegionEmbedding


class RegionInput(nn.Module):
    """Detector regions: ``region_feats`` + ``region_loc`` → embedded tokens."""

    def __init__(self, embedding: RegionEmbedding | VisualBertRegionEmbedding) -> None:
        super().__init__()
        self.embedding = embedding

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Returns tokens (B, R, D) and mask (B, R), True on real regions."""
        if batch.region_feats is None or batch.region_loc is None or batch.region_mask is None:
            raise VlpError("model expects region features, but the batch has none "
                           "(check data.features in the config)")
        got = batch.region_feats.shape[-1]
        if got != self.embedding.feature_dim:
            raise VlpError(f"region features have size {got}, the model expects "
                           f"{self.embedding.feature_dim} (model.region_feature_dim)")
        return self.embedding(batch.region_feats, batch.region_loc), batch.region_mask


class PatchInput(nn.Module):
    """Pixels: ``pixel_values`` (B, C, H, W) → a [CLS] token and one token per patch.

    Every image of a batch has the same size (the collator resizes or pads them), so every
    token is real and the mask is all True.
    """

    def __init__(self, embedding: PatchEmbedding) -> None:
        super().__init__()
        self.embedding = embedding

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Returns tokens (B, 1 + N, D) and mask (B, 1 + N)."""
        pixels = batch.pixel_values
        if pixels is None:
            raise VlpError("model expects pixels (model.visual: patches), but the batch has "
                           "none (pixel_values)")
        e = self.embedding
        if pixels.ndim != 4 or pixels.shape[1] != e.channels:
            raise VlpError(f"pixel_values have shape {tuple(pixels.shape)}, the model expects "
                           f"(B, {e.channels}, H, W) (model.num_channels)")
        if min(pixels.shape[2:]) < e.patch_size:
            raise VlpError(f"images of {pixels.shape[2]}×{pixels.shape[3]} pixels are smaller "
                           f"than one patch ({e.patch_size}, model.patch_size)")
        tokens = e(pixels)
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
