"""Visual inputs: turn the visual part of a :class:`Batch` into tokens and a mask.

Each input is built once and passed into a model, so the same single- or two-stream
encoder runs on detector regions, CNN grids or patches.
"""

from __future__ import annotations

from torch import Tensor, nn

from vlp.data.batch import Batch
from vlp.errors import VlpError
from vlp.layers.embeddings import RegionEmbedding, VisualBertRegionEmbedding


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
