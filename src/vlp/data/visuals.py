"""Where a batch's images come from: detector regions from a store, or decoded pixels.

Pre-training pairs and task records name images by id; a :class:`Visuals` turns ids into
the visual fields of a :class:`Batch`. :class:`RegionSource` reads a region store (the
``region_*`` fields); :class:`PixelSource` decodes image files found through an
:class:`~vlp.data.image_files.ImageIndex` and transforms them (``pixel_values``,
``pixel_mask``). Everything else — pairing, negatives, text masking, task targets — is the
same for both, so every objective and task runs on region, grid and patch models alike.
"""

from __future__ import annotations

import dataclasses
import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from vlp.data.batch import Batch
from vlp.data.features import Regions, RegionStore
from vlp.data.image_files import ImageIndex
from vlp.data.locations import location_features
from vlp.data.transforms import DecodedImageCache, ImageTransform, pad_images
from vlp.errors import VlpError


class Visuals(ABC):
    """Image ids → the visual part of a batch.

    Attributes:
        kind: ``"regions"`` or ``"pixels"``.
        source: what the images are read from, for messages.
    """

    kind: ClassVar[Literal["regions", "pixels"]]
    source: str

    @abstractmethod
    def __contains__(self, image_id: object) -> bool:
        """Whether the source has the image."""

    @abstractmethod
    def tokens(self, image_ids: Sequence[int]) -> np.ndarray:
        """(N,) visual tokens each image becomes (for token-budget batching)."""

    @abstractmethod
    def collate(self, batch: Batch, image_ids: Sequence[int],
                gen: torch.Generator | None = None) -> list[bool]:
        """Fill ``batch``'s visual fields with one image per row.

        Args:
            batch: the batch (its text is collated already).
            image_ids: the image of each row.
            gen: a training batch's generator (augmentation draws from it); None for a
                batch as it is (prediction, held-out evaluation).

        Returns:
            Per row, whether the image was mirrored left-right (its text must swap
            "left" and "right").
        """

    @abstractmethod
    def require(self, image_ids: Iterable[int], what: str) -> None:
        """Every image of ``image_ids`` must be in the source (``what``: whose images, for
        the message).

        Raises:
            VlpError: naming the first missing image and how many are missing.
        """

    def for_eval(self) -> Visuals:
        """The source as evaluation reads it (no augmentation)."""
        return self


class RegionsInMemory:
    """Regions held in a dict, read as a :class:`RegionStore` is (``get``,
    ``region_counts``, ``root``): regions computed on the fly, in tests and benchmarks.

    Args:
        regions: image id → its regions.
        root: what to call the source in messages.
    """

    def __init__(self, regions: Mapping[int, Regions], root: str = "regions in memory") -> None:
        self.regions, self.root = dict(regions), root

    def get(self, image_id: int) -> Regions:
        """The regions of one image."""
        return self.regions[image_id]

    def region_counts(self) -> dict[int, int]:
        """Regions per image id."""
        return {i: len(r) for i, r in self.regions.items()}

    @property
    def feature_dim(self) -> int:
        """Size of a region feature (0 when empty)."""
        first = next(iter(self.regions.values()), None)
        return 0 if first is None else int(first.features.shape[1])

    @property
    def num_classes(self) -> int:
        """Classes of the class distributions (0 when empty)."""
        first = next(iter(self.regions.values()), None)
        return 0 if first is None else int(first.cls_probs.shape[1])


class RegionSource(Visuals):
    """Detector regions from a :class:`RegionStore` (or :class:`RegionsInMemory`).

    Args:
        store: the region store.
        max_regions: regions kept per image (the detector's first, most confident ones).
        loc_dim: location features per region (4, 5 or 7, as the model expects).
    """

    kind = "regions"

    def __init__(self, store: RegionStore | RegionsInMemory, max_regions: int = 100,
                 loc_dim: int = 7) -> None:
        self.store, self.max_regions, self.loc_dim = store, max_regions, loc_dim
        self.source = str(store.root)
        self._counts = store.region_counts()

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._counts

    def require(self, image_ids: Iterable[int], what: str) -> None:
        missing = sorted({i for i in image_ids if i not in self})
        if missing:
            raise VlpError(f"{self.source}: no regions for image {missing[0]} "
                           f"({len(missing)} images of {what} are missing from the store)")

    def tokens(self, image_ids: Sequence[int]) -> np.ndarray:
        return np.array([min(self._counts[i], self.max_regions) for i in image_ids],
                        dtype=np.int64)

    def collate(self, batch: Batch, image_ids: Sequence[int],
                gen: torch.Generator | None = None) -> list[bool]:
        collate_regions(batch, [self.store.get(i) for i in image_ids], self.max_regions,
                        self.loc_dim)
        return [False] * len(image_ids)


def collate_regions(batch: Batch, regions: Sequence[Regions], max_regions: int,
                    loc_dim: int) -> None:
    """Fill ``batch``'s region fields from one :class:`Regions` per row (first
    ``max_regions`` of each), padded: features, locations, mask and class distributions."""
    counts = [min(len(r.features), max_regions) for r in regions]
    b, r_max = len(regions), max(counts)
    feat_dim, n_cls = regions[0].features.shape[1], regions[0].cls_probs.shape[1]
    feats = torch.zeros(b, r_max, feat_dim)
    boxes = torch.zeros(b, r_max, 4)
    cls = torch.zeros(b, r_max, n_cls)
    sizes = torch.ones(b, 1, 2)
    for row, (reg, n) in enumerate(zip(regions, counts, strict=True)):
        feats[row, :n] = torch.from_numpy(np.asarray(reg.features[:n], dtype=np.float32))
        boxes[row, :n] = torch.from_numpy(np.asarray(reg.boxes[:n], dtype=np.float32))
        cls[row, :n] = torch.from_numpy(np.asarray(reg.cls_probs[:n], dtype=np.float32))
        sizes[row, 0] = torch.tensor([reg.width, reg.height], dtype=torch.float32)
    valid = torch.arange(r_max)[None] < torch.tensor(counts)[:, None]  # (B, R)
    batch.region_loc = location_features(boxes, sizes[..., 0], sizes[..., 1], loc_dim)
    batch.region_loc[~valid] = 0.0
    batch.region_feats, batch.region_mask, batch.region_cls = feats, valid, cls
    batch.region_boxes = boxes


@dataclass
class PixelSource(Visuals):
    """Decoded pixels of image files.

    Args:
        index: image id → file.
        transform: pixels as training reads them (augmented when its settings say so).
        eval_transform: pixels as evaluation and prediction read them.
        token_pixels: the side in pixels one visual token covers (the patch size, or the
            grid's stride); images are padded to a multiple of it.
        tokens_per_image: visual tokens of a typical image, for token-budget batching.
        augment: whether :meth:`collate` with a generator uses ``transform``.
        cache: decoded images kept in memory (each loader worker has its own), or None.
    """

    index: ImageIndex
    transform: ImageTransform
    eval_transform: ImageTransform
    token_pixels: int
    tokens_per_image: int
    augment: bool = True
    cache: DecodedImageCache | None = None
    kind: ClassVar[Literal["regions", "pixels"]] = "pixels"

    @property
    def source(self) -> str:  # type: ignore[override]
        return self.index.source

    def __contains__(self, image_id: object) -> bool:
        return image_id in self.index

    def tokens(self, image_ids: Sequence[int]) -> np.ndarray:
        return np.full(len(image_ids), self.tokens_per_image, dtype=np.int64)

    def require(self, image_ids: Iterable[int], what: str) -> None:
        """Every image must be listed and its file present (:meth:`ImageIndex.require_files`)."""
        self.index.require_files(image_ids, what)

    def for_eval(self) -> PixelSource:
        return dataclasses.replace(self, augment=False)

    def pixels(self, image_id: int, gen: torch.Generator | None = None,
               record: str | None = None) -> tuple[Tensor, bool]:
        """One image's (3, H, W) pixels and whether they were mirrored.

        Raises:
            VlpError: unlisted id, missing, truncated or undecodable file — one line naming
                the file and the record that wanted it (or where the image is listed).
        """
        f = self.index.file(image_id, record)
        train = gen is not None and self.augment
        transform = self.transform if train else self.eval_transform
        wanted = record or f.listed
        image = (self.cache.load(f.path, transform, wanted) if self.cache is not None
                 else transform.load(f.path, wanted))
        return transform(image, gen if train else None)

    def collate(self, batch: Batch, image_ids: Sequence[int],
                gen: torch.Generator | None = None) -> list[bool]:
        images, flipped = [], []
        for image_id in image_ids:
            pixels, flip = self.pixels(image_id, gen)
            images.append(pixels)
            flipped.append(flip)
        batch.pixel_values, batch.pixel_mask = pad_images(images, self.token_pixels)
        batch.pixel_sizes = [(x.shape[1], x.shape[2]) for x in images]  # read on the host
        # runs of identical neighbours, which a grid's backbone sees once (distinct_images)
        batch.counts["image_runs"] = 1 + sum(
            not (a is b or (a.shape == b.shape and torch.equal(a, b)))
            for a, b in itertools.pairwise(images))
        return flipped

