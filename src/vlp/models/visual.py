"""Visual inputs: turn the visual part of a :class:`Batch` into tokens and a mask.

Each input is built once and passed into a model, so the same single- or two-stream
encoder runs on detector regions, CNN grids or patches. Every input gives
:class:`VisualTokens` (:meth:`VisualInput.embed`); calling it gives the tokens and their
mask alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlp.data.batch import Batch
from vlp.errors import VlpError
from vlp.layers.backbones import Backbone
from vlp.layers.dropout import Dropout
from vlp.layers.embeddings import (
    PatchEmbedding,
    RegionEmbedding,
    VisualBertRegionEmbedding,
    per_image_positions,
)
from vlp.layers.packing import real_index
from vlp.layers.visual_dictionary import VisualDictionary


@dataclass
class VisualTokens:
    """What a visual input gives the encoder.

    Attributes:
        tokens: (B, R, D) embedded visual tokens.
        mask: (B, R) True on real tokens.
        vd_indices: (B, R) visual-dictionary entry of each token, −1 on padding; None when
            the input has no dictionary.
        vd_masked: (B, R) True on tokens replaced by the [MASK] embedding for masked visual
            modelling (every token of the entry ``batch.vd_draw`` picked); None likewise.
        count: how many tokens are real, when the host knows it without reading ``mask``
            (:mod:`vlp.layers.packing`); None otherwise.
    """

    tokens: Tensor
    mask: Tensor
    vd_indices: Tensor | None = None
    vd_masked: Tensor | None = None
    count: int | None = None


class VisualInput(nn.Module):
    """Base of visual inputs: :meth:`embed` maps a batch to :class:`VisualTokens`."""

    def embed(self, batch: Batch) -> VisualTokens:  # pragma: no cover - abstract
        """The batch's visual tokens."""
        raise NotImplementedError

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Tokens (B, R, D) and mask (B, R), True on real tokens."""
        out = self.embed(batch)
        return out.tokens, out.mask


class RegionInput(VisualInput):
    """Detector regions: ``region_feats`` + ``region_loc`` → embedded tokens."""

    def __init__(self, embedding: RegionEmbedding | VisualBertRegionEmbedding) -> None:
        super().__init__()
        self.embedding = embedding

    def embed(self, batch: Batch) -> VisualTokens:
        """Tokens (B, R, D) and mask (B, R), True on real regions."""
        if batch.region_feats is None or batch.region_loc is None or batch.region_mask is None:
            raise VlpError("model expects region features, but the batch has none "
                           "(check data.features in the config)")
        got = batch.region_feats.shape[-1]
        if got != self.embedding.feature_dim:
            raise VlpError(f"region features have size {got}, the model expects "
                           f"{self.embedding.feature_dim} (model.region_feature_dim)")
        return VisualTokens(self.embedding(batch.region_feats, batch.region_loc),
                            batch.region_mask, count=batch.counts.get("regions"))


def _pixels(batch: Batch, channels: int, visual: str) -> Tensor:
    """``batch.pixel_values``, checked: (B, channels, H, W), with a matching pixel_mask."""
    pixels = batch.pixel_values
    if pixels is None:
        raise VlpError(f"model expects pixels (model.visual: {visual}), but the batch has "
                       "none (pixel_values)")
    if pixels.ndim != 4 or pixels.shape[1] != channels:
        raise VlpError(f"pixel_values have shape {tuple(pixels.shape)}, the model expects "
                       f"(B, {channels}, H, W) (model.num_channels)")
    pm = batch.pixel_mask
    if pm is not None and tuple(pm.shape) != (pixels.shape[0], *pixels.shape[2:]):
        raise VlpError(f"pixel_mask has shape {tuple(pm.shape)}, the pixels "
                       f"{tuple(pixels.shape)} need (B, H, W) = "
                       f"{(pixels.shape[0], *pixels.shape[2:])}")
    return pixels


def any_real(pixel_mask: Tensor, cell: int, size: tuple[int, int]) -> Tensor:
    """Which cells of a ``cell`` × ``cell`` tiling of the pixels hold a real pixel.

    Args:
        pixel_mask: (B, H, W) True on real pixels.
        cell: side of a cell in pixels; the tiling starts at the top left.
        size: (h, w) cells wanted: the tiling is cut to it (a partial last cell counts
            when it is wanted), or padded with False cells.

    Returns:
        (B, h, w) True on cells with at least one real pixel.
    """
    # (B, 1, ⌈H / cell⌉, ⌈W / cell⌉)
    cells = F.max_pool2d(pixel_mask[:, None].float(), cell, cell, ceil_mode=True)
    h, w = size
    cells = F.pad(cells, (0, max(0, w - cells.shape[3]), 0, max(0, h - cells.shape[2])))
    return cells[:, 0, :h, :w] > 0


def real_grids(sizes: list[tuple[int, int]], cell: int, size: tuple[int, int]
               ) -> list[tuple[int, int]]:
    """What :func:`any_real` finds, from each image's (height, width) alone (read on the
    host): the (rows, columns) of cells holding a real pixel, for each image."""
    h, w = size
    return [(min(-(-rows // cell), h), min(-(-cols // cell), w)) for rows, cols in sizes]


class PatchInput(VisualInput):
    """Pixels: ``pixel_values`` (B, C, H, W) → a [CLS] token and one token per patch.

    A patch is real when any pixel in it is (``batch.pixel_mask``; all are when it is
    None); [CLS] always is.
    """

    def __init__(self, embedding: PatchEmbedding) -> None:
        super().__init__()
        self.embedding = embedding

    def embed(self, batch: Batch) -> VisualTokens:
        """Tokens (B, 1 + N, D) and mask (B, 1 + N)."""
        e = self.embedding
        pixels = _pixels(batch, e.channels, "patches")
        if min(pixels.shape[2:]) < e.patch_size:
            raise VlpError(f"images of {pixels.shape[2]}×{pixels.shape[3]} pixels are smaller "
                           f"than one patch ({e.patch_size}, model.patch_size)")
        real, grids = None, None
        if batch.pixel_mask is not None:
            grid = (pixels.shape[2] // e.patch_size, pixels.shape[3] // e.patch_size)
            real = any_real(batch.pixel_mask, e.patch_size, grid)  # (B, h, w)
            if batch.pixel_sizes is not None:  # each image's real patches, known on the host
                grids = real_grids(batch.pixel_sizes, e.patch_size, grid)
        tokens = e(pixels, real, grids)  # (B, 1 + h·w, D)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        count: int | None = mask.numel()
        if real is not None:
            mask[:, 1:] = real.flatten(1)
            count = None if grids is None else len(grids) + sum(r * c for r, c in grids)
        return VisualTokens(tokens, mask, count=count)


class GridInput(VisualInput):
    """SOHO's grid: pixels → CNN backbone → 1×1 conv to the model width → 2×2 max-pool →
    one token per cell, raster order; optionally through a visual dictionary.

    Each token is ``LN(v + f(v) + row_r + col_c)``, then dropout: ``v`` the pooled cell
    feature, ``f(v)`` its visual-dictionary entry in straight-through form (left out
    without a dictionary), ``row_r`` and ``col_c`` learned embeddings of its row and
    column. The feature is kept beside its entry, as SOHO's released pre-training code
    does (the paper's equations show the entry alone): a dictionary of k entries alone
    would pass the transformer only log2 k bits a cell, and fine-tuning keeps the rest.

    Masked visual modelling (``batch.vd_draw``): in each row with a draw ≥ 0 the entry
    ``present[floor(draw · len(present))]`` is picked, ``present`` the sorted entries of
    the row's real cells, and every token mapped to it becomes the learned [MASK]
    embedding (zero at first) plus its position, before the LayerNorm.

    Cells: the backbone's map has one cell per ``stride`` pixels from the top left; the
    2×2 pool keeps a partial last row or column (``ceil_mode``), so no pixel is dropped.
    A cell is real when any pixel under it is (``batch.pixel_mask``; all when None).

    Positions: ``grid_size`` rows and columns (the grid of a ``model.image_size``
    image). A smaller grid takes the first rows and columns; a larger one gets the tables
    linearly resized to its size. In a padded batch each image gets the positions of its
    own grid (its real top-left rectangle), as it would alone.

    Args:
        backbone: pixels → feature map (:mod:`vlp.layers.backbones`).
        dim: the model width.
        grid_size: rows (and columns) of the position tables.
        channels: image channels the pixels must have.
        dropout: after the LayerNorm.
        eps: LayerNorm epsilon.
        dictionary: the visual dictionary, or None.
    """

    def __init__(self, backbone: Backbone, dim: int, grid_size: int, channels: int = 3,
                 dropout: float = 0.1, eps: float = 1e-12,
                 dictionary: VisualDictionary | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.proj = nn.Conv2d(backbone.out_channels, dim, kernel_size=1)
        self.rows = nn.Embedding(grid_size, dim)
        self.cols = nn.Embedding(grid_size, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.drop = Dropout(dropout)
        self.dictionary = dictionary
        self.mask_embedding = nn.Parameter(torch.zeros(dim)) if dictionary is not None else None
        self.channels = channels
        self.backbone_trainable = True

    def set_backbone_trainable(self, flag: bool) -> None:
        """Train the backbone (True) or freeze it (False): no gradients for its weights
        and its BatchNorm statistics held (eval mode, whatever :meth:`train` is called
        with) — SOHO's cold start keeps the ImageNet backbone frozen for the first epochs.
        """
        self.backbone_trainable = flag
        for p in self.backbone.parameters():
            p.requires_grad_(flag)
        self.backbone.train(self.training and flag)

    def train(self, mode: bool = True) -> GridInput:
        super().train(mode)
        if not self.backbone_trainable:
            self.backbone.eval()
        return self

    def embed(self, batch: Batch) -> VisualTokens:
        """Tokens (B, h·w, D), mask, and with a dictionary its indices and MVM mask."""
        pixels = _pixels(batch, self.channels, "grid")
        images, rows = distinct_images(pixels, batch.pixel_mask, batch.counts.get("image_runs"))
        fmap = self.proj(self.backbone(images))  # (N, D, h0, w0), h0 ≈ ⌈H / stride⌉
        x = F.max_pool2d(fmap, 2, 2, ceil_mode=True)  # (N, D, h, w), h = ⌈h0 / 2⌉
        if rows is not None:
            x = x[rows]  # (B, D, h, w): each row its image's cells
        b, _, h, w = x.shape
        count: int | None = b * h * w
        if batch.pixel_mask is None:
            mask = torch.ones(b, h * w, dtype=torch.bool, device=x.device)
            pos = self.positions(h, w)[None]  # (1, h·w, D)
        else:
            stride, before = self.backbone.stride, (fmap.shape[2], fmap.shape[3])
            cells = any_real(batch.pixel_mask, stride, before)  # (B, h0, w0)
            real = any_real(cells, 2, (h, w))  # (B, h, w)
            mask = real.flatten(1)  # (B, h·w)
            grids = None
            if batch.pixel_sizes is not None:  # each image's real cells, known on the host
                grids = real_grids(real_grids(batch.pixel_sizes, stride, before), 2, (h, w))
            count = None if grids is None else sum(r * c for r, c in grids)
            pos = per_image_positions(real, self.positions, grids)  # (B, h·w, D), its own
        v = x.flatten(2).transpose(1, 2)  # (B, h·w, D)
        out = VisualTokens(v, mask, count=count)
        tokens = v
        if self.dictionary is not None:
            assert self.mask_embedding is not None
            quantised, indices = self.dictionary(v, mask)  # (B, h·w, D), (B, h·w)
            out.vd_indices = indices.masked_fill(~mask, -1)
            out.vd_masked = mvm_mask(out.vd_indices, batch.vd_draw, self.dictionary.size)
            tokens = torch.where(out.vd_masked[..., None], self.mask_embedding.to(v.dtype),
                                 v + quantised)
        out.tokens = self.drop(self.norm(tokens + pos))  # (B, h·w, D)
        return out

    def positions(self, h: int, w: int) -> Tensor:
        """(h·w, D) position embeddings of an h × w grid, raster order."""
        rows = _resized(self.rows.weight, h)  # (h, D)
        cols = _resized(self.cols.weight, w)  # (w, D)
        return (rows[:, None, :] + cols[None, :, :]).flatten(0, 1)  # (h·w, D)


def distinct_images(pixels: Tensor, pixel_mask: Tensor | None,
                    runs: int | None = None) -> tuple[Tensor, Tensor | None]:
    """The batch's images with runs of identical neighbours kept once, and each row's
    image among them (None when no row repeats the one before).

    SOHO's sampling shows each image in four consecutive rows (two positive texts, two
    negative): the backbone then sees it once, not four times. Rows are compared exactly
    (pixels and mask), so differently augmented copies each get their own pass. ``runs``,
    how many distinct runs there are, when the collator counted them on the host
    (``Batch.counts["image_runs"]``): then nothing is read back from the device.
    """
    b = pixels.shape[0]
    if b < 2 or runs == b:
        return pixels, None
    same = (pixels[1:] == pixels[:-1]).flatten(1).all(1)  # (B-1,)
    if pixel_mask is not None:
        same &= (pixel_mask[1:] == pixel_mask[:-1]).flatten(1).all(1)
    if runs is None:
        runs = b - int(same.sum())  # a read of the device
    if runs == b:
        return pixels, None
    first = torch.cat([same.new_ones(1), ~same])  # (B,) a row that starts a run
    return pixels.index_select(0, real_index(first, runs)), first.long().cumsum(0) - 1


def _resized(table: Tensor, n: int) -> Tensor:
    """The first ``n`` rows of ``table`` (n, D), or all of it linearly resized to ``n``."""
    if n <= table.shape[0]:
        return table[:n]
    return F.interpolate(table.t()[None], size=n, mode="linear", align_corners=True)[0].t()


def mvm_mask(indices: Tensor, draw: Tensor | None, size: int) -> Tensor:
    """Which tokens masked visual modelling masks (see :class:`GridInput`).

    Args:
        indices: (B, R) dictionary entry of each token, −1 on padding.
        draw: (B,) a number in [0, 1) picking one entry among those present in the row,
            −1 for rows left whole; None masks nothing.
        size: entries in the dictionary.

    Returns:
        (B, R) True on every real token of the picked entry.
    """
    masked = torch.zeros_like(indices, dtype=torch.bool)
    if draw is None:
        return masked
    if tuple(draw.shape) != tuple(indices.shape[:1]):
        raise VlpError(f"vd_draw has shape {tuple(draw.shape)}, the batch needs "
                       f"({indices.shape[0]},): one draw a row")
    real = indices >= 0
    counts = torch.zeros(indices.shape[0], size, dtype=torch.long, device=indices.device)
    present = counts.scatter_add_(1, indices.clamp(min=0), real.long()) > 0  # (B, k)
    n = present.sum(1)  # (B,) entries present in each row
    rank = torch.minimum((draw.float().clamp(min=0) * n).floor().long(), (n - 1).clamp(min=0))
    # the (rank + 1)-th present entry: as many entries precede it as have ≤ rank before them
    entry = (present.long().cumsum(1) <= rank[:, None]).sum(1)  # (B,)
    rows = (draw >= 0) & (n > 0)
    return masked | (real & (indices == entry[:, None]) & rows[:, None])
