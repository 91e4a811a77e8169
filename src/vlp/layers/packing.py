"""Packed sequences: the real positions of a padded batch, without its padding.

A batch of sequences of different lengths arrives padded, (B, N, D) with a (B, N) mask.
Every part of a transformer layer but attention treats each position on its own (the
linear layers, LayerNorms, MLP, residuals, dropout), so those run on the T real positions
alone, packed into (T, D): with ITM negatives and regions of 10–100 per image, 30–40 % of a
padded batch's positions are padding. Attention unpacks its queries, keys and values to
(B, N) for one batched kernel over the real keys (a small share of the FLOPs at these
lengths) and packs its output again.

How many positions are real decides the packed shape. Read from a mask on an accelerator,
that number costs a host-device synchronisation (the host waits for the device to finish
everything queued before it); a batch knows it on the host already (``Batch.counts``,
counted on the CPU before the batch moved), and given it, the index is found without one.
"""

from __future__ import annotations

import torch
from torch import Tensor


def real_index(mask: Tensor, count: int | None = None) -> Tensor:
    """(T,) indices of the True elements of ``mask``, flattened, in order.

    ``count`` is T when the caller knows it on the host: on an accelerator the index is
    then found without waiting for the device. On the CPU, where reading costs nothing,
    the count is checked instead, so that a stale one fails loudly wherever tests run.
    """
    flat = mask.reshape(-1)
    if count is not None and not reads_free(flat):
        return torch.nonzero_static(flat, size=count).squeeze(1)
    index = flat.nonzero().squeeze(1)
    if count is not None and index.numel() != count:
        raise RuntimeError(f"a mask holds {index.numel()} real positions, but its batch "
                           f"counted {count} (was a mask changed after Batch.to?)")
    return index


def true_count(mask: Tensor, count: int | None = None) -> int:
    """How many elements of ``mask`` are True: ``count`` when the host knows it, else read
    from the mask (on an accelerator, a wait for the device)."""
    return int(mask.sum()) if count is None else count


def gather_positions(x: Tensor, index: Tensor) -> Tensor:
    """(B, N, ...) → (T, ...): the positions at ``index`` into the flattened (B·N), as
    :func:`real_index` gives them. ``x`` may be a view (a slice of a joint sequence):
    it is indexed in place, not copied to be flattened."""
    n = x.shape[1]
    return x[index // n, index % n]


def reads_free(t: Tensor) -> bool:
    """Whether the host reads ``t`` without waiting for a device (it lives on the CPU);
    elsewhere code takes the sizes the batch counted on the host (``Batch.counts``)."""
    return t.device.type == "cpu"


class Packing:
    """Where the real positions of a padded batch lie.

    Args:
        mask: (B, N) bool, True on real positions.
        count: how many are, when known on the host (:func:`real_index`).

    Attributes:
        mask: as given.
        index: (T,) the real positions' indices in the flattened (B·N) batch, in order.
    """

    def __init__(self, mask: Tensor, count: int | None = None) -> None:
        self.mask = mask
        self.index = real_index(mask, count)

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


def packing_for(mask: Tensor | None, count: int | None = None) -> Packing | None:
    """A :class:`Packing` for ``mask``, or None when there is no padding to leave out.
    Without ``count`` (how many positions are real), finding out reads the mask on the
    host, as packing it would."""
    if mask is None:
        return None
    count = true_count(mask, count)
    if count == mask.numel():
        return None
    return Packing(mask, count)


__all__ = ["Packing", "gather_positions", "packing_for", "reads_free", "real_index",
           "true_count"]
