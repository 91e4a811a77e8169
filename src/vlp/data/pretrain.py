"""Image-text pairs with region features, and the collator that builds pre-training batches.

A batch is named by a :class:`BatchKey` — its dataset indices, a seed and a
:class:`BatchPlan` (what to mask, whether to make mismatched pairs). Everything random
in it is drawn from that seed, so the same key always gives the same batch, in any
worker process and after any resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vlp.data.batch import IGNORE_INDEX, Batch
from vlp.data.batching import ResumableBatchSampler
from vlp.data.features import Regions, RegionStore
from vlp.data.locations import location_features
from vlp.data.masking import choose_positions, mask_tokens, split_modalities
from vlp.data.tokenizer import Tokenizer
from vlp.errors import VlpError


@dataclass(frozen=True)
class BatchPlan:
    """What a batch needs: masked text, masked regions, mismatched pairs."""

    mask_text: bool = False
    mask_image: bool = False
    pairs: bool = False


@dataclass(frozen=True)
class BatchKey:
    """Everything that determines one batch."""

    indices: tuple[int, ...]
    seed: int
    plan: BatchPlan
    objectives: tuple[str, ...] = ()
    epoch: int = 0
    position: int = 0  # the sampler's position after this batch, for exact resume


@dataclass(frozen=True)
class Example:
    """One image-text pair."""

    image_id: int
    token_ids: list[int]
    regions: Regions


class PairDataset:
    """Captions paired with their image's regions from a :class:`RegionStore`.

    Args:
        image_ids: image of each pair.
        token_ids: tokenised caption of each pair (with ``[CLS]``/``[SEP]``).
        store: region features; every image id must be in it.
        max_regions: regions kept per image (the detector's first, most confident ones).
    """

    def __init__(self, image_ids: list[int], token_ids: list[list[int]], store: RegionStore,
                 max_regions: int = 100) -> None:
        missing = [i for i in set(image_ids) if i not in store]
        if missing:
            raise VlpError(f"{store.root}: no regions for image {min(missing)} "
                           f"({len(missing)} images of the captions are missing from the store)")
        self.image_ids = image_ids
        self.token_ids = token_ids
        self.store = store
        self.max_regions = max_regions

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> Example:
        regions = self.store.get(self.image_ids[index])
        return Example(self.image_ids[index], self.token_ids[index], regions)

    def text_lengths(self) -> np.ndarray:
        """(N,) tokens per caption."""
        return np.array([len(t) for t in self.token_ids], dtype=np.int64)

    def region_counts(self) -> np.ndarray:
        """(N,) regions per pair after the ``max_regions`` cap."""
        counts = self.store.region_counts()
        return np.array([min(counts[i], self.max_regions) for i in self.image_ids],
                        dtype=np.int64)

    def lengths(self) -> np.ndarray:
        """(N, 2) tokens and regions per pair: the two parts padded separately."""
        return np.stack([self.text_lengths(), self.region_counts()], axis=1)


class ImagePool:
    """Images to draw ITM negatives from: a store and the image ids allowed (one split)."""

    def __init__(self, store: RegionStore, image_ids: list[int]) -> None:
        self.store = store
        self.image_ids = np.array(sorted(set(image_ids)), dtype=np.int64)

    def sample(self, exclude: int, gen: torch.Generator) -> Regions | None:
        """The regions of a random image other than ``exclude`` (None if there is none)."""
        if len(self.image_ids) < 2:
            return None
        while True:
            pick = int(self.image_ids[int(torch.randint(len(self.image_ids), (1,),
                                                        generator=gen))])
            if pick != exclude:
                return self.store.get(pick)


@dataclass
class PretrainCollator:
    """Builds a :class:`Batch` from examples according to a :class:`BatchPlan`.

    Args:
        tokenizer: for special-token ids and vocabulary size.
        mask_prob: share of tokens / regions masked (0.15).
        itm_neg_prob: share of pairs turned into negatives when the plan asks for pairs.
        conditional: mask one modality per example (UNITER) rather than both (joint).
        loc_dim: 4, 5 or 7 location features (4: LXMERT's normalised corners).
        max_regions: regions kept per image.
        negative_pool: where ITM negatives' images come from. None swaps images within
            the batch — which leaks the answer under length-bucketed batching: a batch
            holds pairs of similar (tokens + regions), so a foreign image's region count
            gives a negative away. UNITER draws them from the whole data set; so does the
            trainer, through this pool.
    """

    tokenizer: Tokenizer
    mask_prob: float = 0.15
    itm_neg_prob: float = 0.5
    conditional: bool = True
    loc_dim: int = 7
    max_regions: int = 100
    negative_pool: ImagePool | None = None

    def __call__(self, examples: list[Example], plan: BatchPlan, seed: int) -> Batch:
        """Collate ``examples`` into one batch; randomness from ``seed`` only."""
        gen = torch.Generator().manual_seed(seed)
        regions = [e.regions for e in examples]
        negative = torch.zeros(len(examples), dtype=torch.bool)
        if plan.pairs:
            regions, negative = self._negatives(examples, gen)
        # negatives are masked like positives, or ITM could answer from the masks alone
        # (in a summed batch only positives would carry [MASK] and zeroed regions)
        everyone = torch.ones(len(examples), dtype=torch.bool)
        mask_text, mask_image = split_modalities(
            everyone, plan.mask_text, plan.mask_image, self.conditional, gen)
        batch = self._text(examples, mask_text if plan.mask_text else None, gen)
        self._regions(batch, regions, mask_image if plan.mask_image else None, gen)
        if plan.pairs:
            batch.itm_labels = (~negative).long()
            # but only positives are scored: a foreign image says nothing of masked words
            if batch.mlm_labels is not None:
                batch.mlm_labels[negative] = IGNORE_INDEX
            if batch.region_masked is not None:
                batch.region_masked[negative] = False
        return batch

    def _negatives(self, examples: list[Example],
                   gen: torch.Generator) -> tuple[list[Regions], torch.Tensor]:
        """Give about ``itm_neg_prob`` of the pairs another image."""
        negative = torch.rand(len(examples), generator=gen) < self.itm_neg_prob
        regions = [e.regions for e in examples]
        for i in torch.nonzero(negative).flatten().tolist():
            other = self._other_image(examples, i, gen)
            if other is None:  # no other image to be had: keep the pair positive
                negative[i] = False
            else:
                regions[i] = other
        return regions, negative

    def _other_image(self, examples: list[Example], i: int,
                     gen: torch.Generator) -> Regions | None:
        own = examples[i].image_id
        if self.negative_pool is not None:
            return self.negative_pool.sample(own, gen)
        others = [e for e in examples if e.image_id != own]
        if not others:
            return None
        return others[int(torch.randint(len(others), (1,), generator=gen))].regions

    def _text(self, examples: list[Example], mask_rows: torch.Tensor | None,
              gen: torch.Generator) -> Batch:
        tok = self.tokenizer
        batch = collate_text([e.token_ids for e in examples], tok.pad_id)
        ids, text_mask = batch.input_ids, batch.text_mask
        if mask_rows is not None:
            special = torch.isin(ids, torch.tensor(tok.special_ids))
            maskable = text_mask & ~special & mask_rows[:, None]
            batch.input_ids, batch.mlm_labels = mask_tokens(
                ids, maskable, self.mask_prob, tok.mask_id, tok.vocab_size, gen)
        return batch

    def _regions(self, batch: Batch, regions: list[Regions], mask_rows: torch.Tensor | None,
                 gen: torch.Generator) -> None:
        collate_regions(batch, regions, self.max_regions, self.loc_dim)
        feats, valid = batch.region_feats, batch.region_mask
        assert feats is not None and valid is not None
        if mask_rows is not None:
            masked = choose_positions(valid & mask_rows[:, None], self.mask_prob, gen)
            batch.region_masked, batch.region_targets = masked, feats.clone()
            feats[masked] = 0.0  # a masked region is a zero vector (in place)


def collate_text(token_ids: list[list[int]], pad_id: int) -> Batch:
    """A batch holding ``token_ids`` right-padded: ``input_ids`` and ``text_mask`` (B, L)."""
    length = max(len(t) for t in token_ids)
    ids = torch.full((len(token_ids), length), pad_id, dtype=torch.long)
    for row, t in enumerate(token_ids):
        ids[row, :len(t)] = torch.tensor(t)
    return Batch(input_ids=ids, text_mask=ids != pad_id)


def collate_regions(batch: Batch, regions: list[Regions], max_regions: int, loc_dim: int) -> None:
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


class PretrainBatches(torch.utils.data.Dataset):
    """A map-style dataset whose items are whole batches, addressed by :class:`BatchKey`.

    With ``DataLoader(batch_sampler=keys, collate_fn=unwrap)`` the loader hands each
    key to ``__getitems__``, so collation (and its randomness) runs in the workers.
    """

    def __init__(self, pairs: PairDataset, collator: PretrainCollator) -> None:
        self.pairs = pairs
        self.collator = collator

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitems__(self, key: BatchKey) -> tuple[BatchKey, Batch]:
        """The batch named by ``key``."""
        examples = [self.pairs[i] for i in key.indices]
        batch = self.collator(examples, key.plan, key.seed)
        batch.example_ids = torch.tensor(key.indices)
        batch.image_ids = torch.tensor([e.image_id for e in examples])
        return key, batch

    def __getitem__(self, key: BatchKey) -> tuple[BatchKey, Batch]:
        return self.__getitems__(key)


def unwrap(item: Any) -> tuple[BatchKey, Batch]:
    """``collate_fn`` for :class:`PretrainBatches`: the item already is a batch."""
    key, batch = item
    return key, batch


def merge_plans(plans: list[BatchPlan]) -> BatchPlan:
    """One plan serving several objectives at once (SOHO-style summed losses)."""
    return BatchPlan(
        mask_text=any(p.mask_text for p in plans),
        mask_image=any(p.mask_image for p in plans),
        pairs=any(p.pairs for p in plans),
    )


class PretrainKeySampler:
    """Turns index batches into :class:`BatchKey` s: which objectives, which plan, which seed.

    Args:
        sampler: the index batch sampler (fixed-size or token-budget).
        plans: objective name → what its batches need.
        ratios: objective name → sampling ratio (``mix="sample"``, UNITER: one objective
            per batch) — ignored for ``mix="sum"`` (SOHO: every objective on every batch).
        mix: "sample" or "sum".
        seed: base seed; batch seeds derive from (seed, epoch, position).
    """

    def __init__(self, sampler: ResumableBatchSampler, plans: dict[str, BatchPlan],
                 ratios: dict[str, float], mix: str, seed: int) -> None:
        self.sampler = sampler
        self.names = list(plans)
        self.plans = plans
        total = sum(ratios[n] for n in self.names)
        self.probs = np.array([ratios[n] / total for n in self.names])
        self.mix = mix
        self.seed = seed

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[BatchKey]:
        for indices in self.sampler:
            epoch, position = self.sampler.epoch, self.sampler.position
            rng = np.random.default_rng([self.seed, epoch, position])
            if self.mix == "sum":
                names = self.names
            else:
                names = [self.names[int(rng.choice(len(self.names), p=self.probs))]]
            plan = merge_plans([self.plans[n] for n in names])
            yield BatchKey(tuple(indices), int(rng.integers(2**62)), plan, tuple(names),
                           epoch, position)

    def state_dict(self) -> dict[str, Any]:
        """The index sampler's position."""
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position."""
        self.sampler.load_state_dict(state)
