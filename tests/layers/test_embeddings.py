"""The region embedder's shape."""

from __future__ import annotations

import torch

from vlp.layers.embeddings import RegionEmbedding


def test_region_embedding_shape() -> None:
    emb = RegionEmbedding(feature_dim=8, loc_dim=7, dim=16)
    out = emb(torch.randn(2, 3, 8), torch.rand(2, 3, 7))
    assert out.shape == (2, 3, 16)
