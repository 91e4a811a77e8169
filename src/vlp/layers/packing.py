"""Packed sequences: the real positions of a padded batch, without its padding.

A batch of sequences of different lengths arrives padded, (B, N, D) with a (B, N) mask.
Every part of a transformer layer but attention treats each position on its own (the
linear layers, LayerNorms, MLP, residuals, dropout), so those run on the T real positions
alone, packed into (T, D): with ITM negatives and regions of 10–100 per image, 30–40 % of a
padded batch's positions are padding. Attention unpacks its queries, keys and values to
(B, N) for one batched kernel over the real keys (a small share of the FLOPs at these
lengths) and packs its output again.
"""

from __future__ import annotations

from torch import Tensor


class Packing:
    """Where the real positions of a padded batch lie.

    Args:
        mask: (B, N) bool, True on real positions.

    Attributes:
        mask: as given.
        index: (T,) the real positions' indices in the flattened (B·N) batch, in order.
    """

    def __init__(self, mask: Tensor) -> None:
        self.mask = mask
        # a host-device synchronisation (T is data-dependent), once per stream and pass
        self.index = mask.reshape(-1).nonzero().squeeze(1)

    @property
    def shape(self) -> tuple[int, int]:
        """(B, N) of the padded batch."""
        b, n = self.mask.shape
        return b, n

    def pack(self, x: Tensor) -> Tensor:
        """(B, N, D) → (T, D): the real positions, in order."""
        return x.reshape(-1, x.shape[-1]).index_select(0, self.index)

    def unpack(self, x: Tensor) -> Tensor:
        """(T, D) → (B, N, D), zeros on the padding."""
        b, n = self.shape
        out = x.new_zeros(b * n, x.shape[-1]).index_copy(0, self.index, x)
        return out.view(b, n, x.shape[-1])


def packing_for(mask: Tensor | None) -> Packing | None:
    """A :class:`Packing` for ``mask``, or None when there is no padding to leave out
    (finding out reads the mask on the host, as packing does anyway)."""
    if mask is None or bool(mask.all()):
        return None
    return Packing(mask)


__all__ = ["Packing", "packing_for"]
