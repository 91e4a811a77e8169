"""Input embedders: text tokens, detector regions and image patches (grids plug in beside)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp.layers import packing
from vlp.layers.dropout import Dropout

TEXT_TYPE = 0
IMAGE_TYPE = 1


class TextEmbedding(nn.Module):
    """Token + position + type embeddings, summed, then LayerNorm and dropout (BERT)."""

    def __init__(self, vocab_size: int, dim: int, max_positions: int = 512,
                 type_vocab_size: int = 2, dropout: float = 0.1, pad_id: int = 0,
                 eps: float = 1e-12) -> None:
        super().__init__()
        self.word = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.position = nn.Embedding(max_positions, dim)
        self.token_type = nn.Embedding(type_vocab_size, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.drop = Dropout(dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """(B, L) token ids → (B, L, D)."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        types = (token_type_ids if token_type_ids is not None
                 else torch.full_like(input_ids, TEXT_TYPE))
        x = self.word(input_ids) + self.position(positions)[None] + self.token_type(types)
        return self.drop(self.norm(x))


class RegionEmbedding(nn.Module):
    """UNITER's region embedder (or LXMERT's, with ``style="lxmert"``).

    UNITER: ``LN(FC(feature)) + LN(FC(location))`` plus an image type embedding, then
    LayerNorm and dropout. LXMERT: ``(LN(FC(feature)) + LN(FC(location))) / 2`` and dropout,
    with no type embedding and no final LayerNorm (its image stream never meets text
    tokens in one sequence). A masked region arrives with an all-zero feature (done by the
    data side).

    Args:
        feature_dim: detector feature size (2048 for BUTD Faster R-CNN).
        loc_dim: 4, 5 or 7 location features.
        dim: transformer width.
        type_embedding: embedding table shared with the text side's token types, so the
            transformer knows which token is which; a fresh one when None (UNITER style
            only; LXMERT style has none).
        style: "uniter" or "lxmert".
    """

    def __init__(self, feature_dim: int, loc_dim: int, dim: int, dropout: float = 0.1,
                 type_embedding: nn.Embedding | None = None, eps: float = 1e-12,
                 style: Literal["uniter", "lxmert"] = "uniter") -> None:
        super().__init__()
        if style not in ("uniter", "lxmert"):
            raise ValueError(f"region embedding style must be 'uniter' or 'lxmert', not {style!r}")
        self.feature_dim = feature_dim
        self.loc_dim = loc_dim
        self.feat_fc = nn.Linear(feature_dim, dim)
        self.feat_norm = nn.LayerNorm(dim, eps=eps)
        self.loc_fc = nn.Linear(loc_dim, dim)
        self.loc_norm = nn.LayerNorm(dim, eps=eps)
        self.token_type: nn.Embedding | None = None
        self.norm: nn.LayerNorm | None = None
        if style == "uniter":
            self.token_type = type_embedding if type_embedding is not None else nn.Embedding(2, dim)
            self.norm = nn.LayerNorm(dim, eps=eps)
        self.drop = Dropout(dropout)

    def forward(self, features: Tensor, locations: Tensor) -> Tensor:
        """features (B, R, F), locations (B, R, loc_dim) → (B, R, D)."""
        x = self.feat_norm(self.feat_fc(features)) + self.loc_norm(self.loc_fc(locations))
        if self.token_type is None or self.norm is None:  # LXMERT: the mean of the two
            return self.drop(x / 2)
        x = x + self.token_type.weight[IMAGE_TYPE]
        return self.drop(self.norm(x))


class VisualBertRegionEmbedding(nn.Module):
    """VisualBERT's region embedder.

    ``FC(feature)`` plus a visual type embedding (row 1) and a visual position embedding
    (row 0: VisualBERT without image-text alignment gives every region position 0), then
    the text side's LayerNorm and dropout. VisualBERT applies one LayerNorm to the
    concatenated text and visual embeddings; LayerNorm works per position, so sharing the
    text module computes the same. Locations are ignored.

    Args:
        feature_dim: detector feature size (``visual_embedding_dim`` in VisualBERT).
        dim: transformer width.
        norm: the text embedding's LayerNorm, shared.
        dropout: dropout after the LayerNorm.
        type_vocab_size: rows of the visual type table.
        max_positions: rows of the visual position table.
    """

    def __init__(self, feature_dim: int, dim: int, norm: nn.LayerNorm, dropout: float = 0.1,
                 type_vocab_size: int = 2, max_positions: int = 512) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.proj = nn.Linear(feature_dim, dim)
        self.token_type = nn.Embedding(type_vocab_size, dim)
        self.position = nn.Embedding(max_positions, dim)
        self.norm = norm
        self.drop = Dropout(dropout)

    def forward(self, features: Tensor, locations: Tensor | None = None) -> Tensor:
        """features (B, R, F) → (B, R, D); ``locations`` is accepted and ignored."""
        x = self.proj(features) + self.token_type.weight[IMAGE_TYPE] + self.position.weight[0]
        return self.drop(self.norm(x))


class PatchEmbedding(nn.Module):
    """ViT's patch embedder, as ViLT uses it: a strided convolution cuts the image into
    ``patch_size`` squares, a learned [CLS] token goes first, learned position embeddings
    are added, then dropout.

    The position embeddings are laid out for ``image_size``; an image of another size gets
    them bilinearly resized to its patch grid (``align_corners=True``, as ViLT does), so
    one model serves any resolution. In a batch of images of different sizes (padded, with
    ``real`` saying which patches hold pixels) each image gets the positions of its own
    grid, as it would alone, and the padding none (ViLT's ``visual_embed``).
    """

    def __init__(self, image_size: int, patch_size: int, channels: int, dim: int,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.channels = channels
        self.grid = image_size // patch_size
        self.proj = nn.Conv2d(channels, dim, kernel_size=patch_size, stride=patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.zeros(1, self.grid * self.grid + 1, dim))
        self.drop = Dropout(dropout)

    def positions(self, h: int, w: int) -> Tensor:
        """(h·w, D) position embeddings of an h × w patch grid, raster order."""
        d = self.position.shape[-1]
        grid = self.position[:, 1:].transpose(1, 2).reshape(1, d, self.grid, self.grid)
        if (h, w) != (self.grid, self.grid):
            grid = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=True)
        return grid[0].flatten(1).t()  # (h·w, D)

    def forward(self, pixels: Tensor, real: Tensor | None = None,
                grids: list[tuple[int, int]] | None = None) -> Tensor:
        """(B, C, H, W) → (B, 1 + (H // P) · (W // P), D), patches in raster order.

        Args:
            pixels: the images, padded at the bottom and right to a common size.
            real: (B, H // P, W // P) True on patches holding real pixels (each image's
                top-left rectangle); None — every patch of every image is real.
            grids: each image's (rows, columns) of real patches, when the host knows them
                (:func:`per_image_positions`).
        """
        x = self.proj(pixels)  # (B, D, h, w)
        b, _, h, w = x.shape
        pos = (self.positions(h, w)[None] if real is None
               else per_image_positions(real, self.positions, grids))  # (1 | B, h·w, D)
        patches = x.flatten(2).transpose(1, 2) + pos  # (B, h·w, D)
        cls = (self.cls + self.position[:, :1]).expand(b, -1, -1)  # (B, 1, D)
        return self.drop(torch.cat([cls, patches], dim=1))


def per_image_positions(real: Tensor, positions: Callable[[int, int], Tensor],
                        grids: list[tuple[int, int]] | None = None) -> Tensor:
    """Each image's own grid positions in a padded batch: (B, h·w, D), zero on padding.

    Args:
        real: (B, h, w) True on the cells that hold an image (its top-left rectangle).
        positions: (rows, cols) → (rows · cols, D) positions of a grid of that size.
        grids: each image's (rows, cols) of real cells when the host knows them (from
            ``Batch.pixel_sizes``); else they are read from ``real``, which on an
            accelerator waits for the device. On the CPU they are checked against ``real``.
    """
    b, h, w = real.shape
    if grids is None or packing.reads_free(real):
        rows = real.any(2).sum(1).tolist()  # (B,) real rows of each image
        cols = real.any(1).sum(1).tolist()  # (B,) real columns
        if grids is not None and list(zip(rows, cols, strict=True)) != list(grids):
            raise RuntimeError(f"images of {list(zip(rows, cols, strict=True))} real cells, "
                               f"but their batch's pixel_sizes give {list(grids)}")
    else:
        rows, cols = [r for r, _ in grids], [c for _, c in grids]
    out: Tensor | None = None
    for size in sorted(set(zip(rows, cols, strict=True))):
        pos = positions(*size)  # (rows · cols, D)
        if out is None:
            out = pos.new_zeros(b, h, w, pos.shape[-1])
        which = [i for i, s in enumerate(zip(rows, cols, strict=True)) if s == size]
        out[which, :size[0], :size[1]] = pos.view(size[0], size[1], -1)
    assert out is not None
    return out.flatten(1, 2)
