"""The batch every model, objective and task reads: typed tensors, and what the host knows
of them without reading the device."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

IGNORE_INDEX = -100


@dataclass
class Batch:
    """One collated batch. Optional fields are None when the batch has no use for them.

    Text:
        input_ids: (B, L) token ids, possibly with [MASK] / random replacements.
        text_mask: (B, L) True on real tokens.
        mlm_labels: (B, L) original ids at positions to predict, ``IGNORE_INDEX`` elsewhere.
    Regions (detector features):
        region_feats: (B, R, F) features; masked regions are all zero.
        region_loc: (B, R, 4|5|7) normalised locations.
        region_mask: (B, R) True on real regions.
        region_masked: (B, R) True on masked regions (MRM targets).
        region_targets: (B, R, F) original features (MRFR target).
        region_cls: (B, R, C) detector class distribution (MRC / MRC-KL targets).
        region_boxes: (B, R, 4) region corners ``x1, y1, x2, y2`` in pixels (grounding).
    Pixels (grid and patch models):
        pixel_values: (B, 3, H, W) normalised pixels; images of different sizes are
            padded at the bottom and right with zeros.
        pixel_mask: (B, H, W) True on real pixels; None when no image of the batch is
            padded.
        vd_draw: (B,) masked visual modelling on a visual dictionary (SOHO's MVM): a
            number in [0, 1) picks, among the dictionary entries present in the row's
            image, the one whose tokens are masked; -1 masks nothing in that row. Rows of
            mismatched pairs are masked too and left unscored (``itm_labels`` 0).
    Pairs:
        itm_labels: (B,) 1 when text and image belong together, 0 for a swapped negative.
        example_ids: (B,) dataset index of each example, for predictions.
        image_ids: (B,) id of each example's image (pairs with equal ids both match in
            contrastive objectives and retrieval). On a mismatched row (``itm_labels`` 0)
            pre-training names the text's own image, a task the image shown; objectives
            read it on true pairs only.
    Tasks:
        targets: the task's labels — (B,) class ids, (B, C) soft scores (VQA), or
            (B, R) per-region scores (referring expressions).
        group_ids: (B,) rows that make up one example (NLVR2's two images, VCR's four
            options) share an id; None when every row is its own example.
    Host-side:
        counts: how many elements of the masks are True, counted on the CPU by :meth:`to`
            (or :meth:`pin_memory`) — ``"text"`` (``text_mask``), ``"regions"``
            (``region_mask``), ``"mlm"`` (``mlm_labels`` to predict), ``"itm_true"`` (rows
            whose ``itm_labels`` is 1), ``"region_masked"`` (masked real regions) and
            ``"group_runs"`` (the greatest common divisor of the lengths of the runs of
            equal ``group_ids``: rows come in consecutive groups of K when K divides it);
            the collator that pads images adds ``"image_runs"`` (runs of identical
            neighbouring images, which a grid's backbone sees once). With them, packing, the
            objectives' gathers, the grouped heads' check and a grid's repeated images need
            no host-device synchronisation on an accelerator. Empty when unknown (a batch
            built on the device, or re-paired by :meth:`pair`); code that changes a mask
            after :meth:`to` must clear them (``dataclasses.replace`` copies them as they
            are).
        pixel_sizes: each row's image height and width in pixels before padding, as the
            collator that padded them knows them: a pixel model finds its real patches or
            cells and their positions without reading ``pixel_mask`` on the device. None
            when unknown (re-paired by :meth:`pair`).
    """

    input_ids: Tensor
    text_mask: Tensor
    mlm_labels: Tensor | None = None
    region_feats: Tensor | None = None
    region_loc: Tensor | None = None
    region_mask: Tensor | None = None
    region_masked: Tensor | None = None
    region_targets: Tensor | None = None
    region_cls: Tensor | None = None
    region_boxes: Tensor | None = None
    pixel_values: Tensor | None = None
    pixel_mask: Tensor | None = None
    vd_draw: Tensor | None = None
    itm_labels: Tensor | None = None
    example_ids: Tensor | None = None
    image_ids: Tensor | None = None
    targets: Tensor | None = None
    group_ids: Tensor | None = None
    counts: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    pixel_sizes: list[tuple[int, int]] | None = field(default=None, repr=False, compare=False)

    @property
    def size(self) -> int:
        """Number of examples."""
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        """A copy with every tensor on ``device``, and :attr:`counts` (counted while the
        masks are still on the CPU, else kept)."""
        return self._map(lambda t: t.to(device, non_blocking=True))

    def pin_memory(self) -> Batch:
        """A copy in page-locked host memory, which ``DataLoader(pin_memory=True)`` asks
        for: from there :meth:`to` an accelerator copies without the host waiting for the
        device (from ordinary memory it waits for the copy, queued behind the step)."""
        return self._map(lambda t: t.pin_memory())

    def _map(self, fn: Callable[[Tensor], Tensor]) -> Batch:
        out: dict[str, Any] = {
            f.name: (fn(v) if isinstance(v, Tensor) else v)
            for f in dataclasses.fields(self)
            for v in [getattr(self, f.name)]
        }
        on_host = self.text_mask.device.type == "cpu"
        # on the CPU the masks are counted afresh; elsewhere the counts made there are kept
        out["counts"] = {**self.counts, **self.host_counts()} if on_host else dict(self.counts)
        out["pixel_sizes"] = None if self.pixel_sizes is None else list(self.pixel_sizes)
        return Batch(**out)

    def host_counts(self) -> dict[str, int]:
        """:attr:`counts` of this batch's masks, read where they are."""
        counts = {"text": int(self.text_mask.sum())}
        if self.mlm_labels is not None:
            counts["mlm"] = int((self.mlm_labels != IGNORE_INDEX).sum())
        if self.itm_labels is not None:
            counts["itm_true"] = int((self.itm_labels == 1).sum())
        if self.region_mask is not None:
            counts["regions"] = int(self.region_mask.sum())
            if self.region_masked is not None:
                counts["region_masked"] = int((self.region_masked & self.region_mask).sum())
        if self.group_ids is not None and self.group_ids.numel():
            ids = self.group_ids.tolist()
            starts = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]]
            lengths = [b - a for a, b in zip(starts, [*starts[1:], len(ids)], strict=True)]
            counts["group_runs"] = math.gcd(*lengths)
        return counts

    def pair(self, text_index: Tensor, image_index: Tensor) -> Batch:
        """New pairs: row ``k`` is text ``text_index[k]`` with image ``image_index[k]``.

        Text-side and per-example fields (labels, ids, targets) follow the text; region,
        pixel and image-id fields follow the image. Retrieval's hard negatives are made so.
        """
        picked: dict[str, Any] = {"counts": {}, "pixel_sizes": None}
        for f in dataclasses.fields(self):
            if f.name in picked:
                continue
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                index = image_index if f.name in IMAGE_FIELDS else text_index
                value = value[index.to(value.device)]
            picked[f.name] = value
        return Batch(**picked)


IMAGE_FIELDS = frozenset({"region_feats", "region_loc", "region_mask", "region_masked",
                          "region_targets", "region_cls", "region_boxes", "pixel_values",
                          "pixel_mask", "vd_draw",
                          "image_ids"})


def describe_images(batch: Batch) -> str:
    """The images of a batch, for an error message: ``images [3, 8, …] and N more``."""
    if batch.image_ids is None:
        return f"a batch of {batch.size}"
    ids = sorted(set(batch.image_ids.tolist()))
    more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
    return f"images {ids[:5]}{more}"
