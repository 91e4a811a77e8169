"""Image-text pairs with their images (regions or pixels), and the collator that builds
pre-training batches.

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
from vlp.data.masking import choose_positions, mask_tokens, split_modalities
from vlp.data.tokenizer import Tokenizer
from vlp.data.visuals import Visuals


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
    index: int = -1  # the pair's index in its dataset (-1: none)


class PairDataset:
    """Captions paired with their images, which ``visuals`` (regions or pixels) provides.

    Args:
        image_ids: image of each pair.
        token_ids: tokenised caption of each pair (with ``[CLS]``/``[SEP]``).
        visuals: the images; every image id must be in it.
        what: the pairs, for messages (e.g. ``the captions of split train``).
    """

    def __init__(self, image_ids: list[int], token_ids: list[list[int]], visuals: Visuals,
                 what: str = "the captions") -> None:
        visuals.require(image_ids, what)
        self.image_ids = image_ids
        self.token_ids = token_ids
        self.visuals = visuals

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> Example:
        return Example(self.image_ids[index], self.token_ids[index], index)

    def text_lengths(self) -> np.ndarray:
        """(N,) tokens per caption."""
        return np.array([len(t) for t in self.token_ids], dtype=np.int64)

    def image_lengths(self) -> np.ndarray:
        """(N,) visual tokens per pair (regions after the ``max_regions`` cap, patches …)."""
        return self.visuals.tokens(self.image_ids)

    def lengths(self) -> np.ndarray:
        """(N, 2) tokens and visual tokens per pair: the two parts padded separately."""
        return np.stack([self.text_lengths(), self.image_lengths()], axis=1)


class TextPool:
    """Captions to draw SOHO's texts from: each image's own, and all of them (one split).

    Args:
        pairs: the split's pairs.
    """

    def __init__(self, pairs: PairDataset) -> None:
        self.token_ids = pairs.token_ids
        self.image_ids = np.asarray(pairs.image_ids, dtype=np.int64)
        self.of_image: dict[int, list[int]] = {}
        for i, image_id in enumerate(pairs.image_ids):
            self.of_image.setdefault(image_id, []).append(i)

    def other_caption(self, index: int, gen: torch.Generator) -> int:
        """Another caption of pair ``index``'s image (the same one if it has no other)."""
        own = self.of_image[int(self.image_ids[index])]
        others = [i for i in own if i != index]
        return others[int(torch.randint(len(others), (1,), generator=gen))] if others else index

    def foreign_caption(self, image_id: int, gen: torch.Generator) -> int | None:
        """A caption of an image other than ``image_id`` (None if there is none)."""
        if len(self.of_image) < 2:
            return None
        while True:
            pick = int(torch.randint(len(self.token_ids), (1,), generator=gen))
            if int(self.image_ids[pick]) != image_id:
                return pick


class ImagePool:
    """Images to draw ITM negatives from: the image ids allowed (one split).

    With ``lengths`` (visual tokens per image: regions, patches), a negative's image has
    as many tokens as the image it replaces whenever another such image exists, else the
    nearest count there is. So a length-bucketed batch keeps its region counts after the
    negatives are drawn (no padding added), and a pair's region count says nothing of
    whether it is a negative.

    Args:
        image_ids: the images (repeats are ignored).
        lengths: image id → visual tokens, for every image of ``image_ids``; None —
            draw from all of them.
    """

    def __init__(self, image_ids: list[int], lengths: dict[int, int] | None = None) -> None:
        self.image_ids = np.array(sorted(set(image_ids)), dtype=np.int64)
        self.lengths = lengths
        self.by_length: dict[int, np.ndarray] = {}
        if lengths is not None:
            counts = np.array([lengths[int(i)] for i in self.image_ids], dtype=np.int64)
            self.by_length = {int(n): self.image_ids[counts == n] for n in np.unique(counts)}
        self._sizes = np.array(sorted(self.by_length), dtype=np.int64)

    def sample(self, exclude: int, gen: torch.Generator) -> int | None:
        """A random image other than ``exclude`` (None if there is none); of
        ``exclude``'s length when the pool knows lengths and has another such image."""
        if len(self.image_ids) < 2:
            return None
        candidates = self.image_ids
        if self.lengths is not None and exclude in self.lengths:
            candidates = self._nearest(self.lengths[exclude], exclude)
        while True:
            pick = int(candidates[int(torch.randint(len(candidates), (1,), generator=gen))])
            if pick != exclude:
                return pick

    def _nearest(self, length: int, exclude: int) -> np.ndarray:
        """The images of the length nearest ``length`` that holds one other than
        ``exclude`` (ties: the shorter)."""
        order = np.argsort(np.abs(self._sizes - length), kind="stable")
        for n in self._sizes[order].tolist():
            same = self.by_length[n]
            if len(same) > 1 or int(same[0]) != exclude:
                return same
        return self.image_ids


@dataclass
class PretrainCollator:
    """Builds a :class:`Batch` from examples according to a :class:`BatchPlan`.

    Args:
        tokenizer: for special-token ids and vocabulary size.
        visuals: the images (regions or pixels) of the examples and of their negatives.
        mask_prob: share of tokens / regions masked (0.15).
        itm_neg_prob: share of pairs turned into negatives when the plan asks for pairs.
        conditional: mask one modality per example (UNITER) rather than both (joint).
        negative_pool: where ITM negatives' images come from. None swaps images within
            the batch — which leaks the answer under length-bucketed batching: a batch
            holds pairs of similar (tokens + regions), so a foreign image's region count
            gives a negative away. UNITER draws them from the whole data set; so does the
            trainer, through this pool.
        texts: SOHO's sampling, when set and the plan asks for pairs: each example's
            image becomes four rows — its own caption and another of the same image
            (positives), then two captions of other images from this pool (negatives) —
            instead of UNITER's one pair with about ``itm_neg_prob`` foreign images.

    Masking the image means, on regions, zeroing ``mask_prob`` of them (MRM); on pixels,
    drawing ``vd_draw``: the visual-dictionary entry whose tokens the model masks (MVM).
    A training image mirrored by augmentation has "left" and "right" swapped in its text.
    """

    tokenizer: Tokenizer
    visuals: Visuals
    mask_prob: float = 0.15
    itm_neg_prob: float = 0.5
    conditional: bool = True
    negative_pool: ImagePool | None = None
    texts: TextPool | None = None

    def __call__(self, examples: list[Example], plan: BatchPlan, seed: int) -> Batch:
        """Collate ``examples`` into one batch; randomness from ``seed`` only."""
        gen = torch.Generator().manual_seed(seed)
        image_ids = [e.image_id for e in examples]
        negative = torch.zeros(len(examples), dtype=torch.bool)
        text_images = image_ids  # the image each row's text describes
        if plan.pairs and self.texts is not None:
            examples, image_ids, text_images, negative = self._soho_rows(examples, gen)
        elif plan.pairs:
            image_ids, negative = self._negatives(examples, gen)
        # negatives are masked like positives, or ITM could answer from the masks alone
        # (in a summed batch only positives would carry [MASK] and zeroed regions)
        everyone = torch.ones(len(examples), dtype=torch.bool)
        mask_text, mask_image = split_modalities(
            everyone, plan.mask_text, plan.mask_image, self.conditional, gen)
        batch = collate_text([e.token_ids for e in examples], self.tokenizer.pad_id)
        batch.image_ids = torch.tensor(text_images)
        flipped = self.visuals.collate(batch, image_ids, gen)
        if any(flipped):
            mirror_text(batch, torch.tensor(flipped), self.tokenizer.mirror_pairs())
        if plan.mask_text:
            self._mask_text(batch, mask_text, gen)
        if plan.mask_image:
            self._mask_image(batch, mask_image, gen)
        if plan.pairs:
            batch.itm_labels = (~negative).long()
            # but only positives are scored: a foreign image says nothing of masked words
            if batch.mlm_labels is not None:
                batch.mlm_labels[negative] = IGNORE_INDEX
            if batch.region_masked is not None:
                batch.region_masked[negative] = False
            # a negative's image is masked like a positive's (vd_draw kept), or ITM could
            # answer from the [MASK] tokens alone; MVM scores true pairs only (itm_labels)
        return batch

    def _soho_rows(self, examples: list[Example], gen: torch.Generator
                   ) -> tuple[list[Example], list[int], list[int], torch.Tensor]:
        """Each example's image with two of its captions and two foreign ones: the rows,
        the image each shows, the image each text describes, and which are negatives."""
        texts = self.texts
        assert texts is not None
        rows: list[Example] = []
        shown: list[int] = []
        described: list[int] = []
        for e in examples:
            second = texts.other_caption(e.index, gen) if e.index >= 0 else -1
            picks = [(e.token_ids, e.image_id),
                     (e.token_ids, e.image_id) if second < 0
                     else (texts.token_ids[second], e.image_id)]
            for _ in range(2):
                foreign = texts.foreign_caption(e.image_id, gen)
                picks.append((e.token_ids, e.image_id) if foreign is None else
                             (texts.token_ids[foreign], int(texts.image_ids[foreign])))
            rows += [Example(e.image_id, ids) for ids, _ in picks]
            shown += [e.image_id] * 4
            described += [image for _, image in picks]
        negative = torch.tensor(shown) != torch.tensor(described)
        return rows, shown, described, negative

    def _negatives(self, examples: list[Example],
                   gen: torch.Generator) -> tuple[list[int], torch.Tensor]:
        """Give about ``itm_neg_prob`` of the pairs another image."""
        negative = torch.rand(len(examples), generator=gen) < self.itm_neg_prob
        image_ids = [e.image_id for e in examples]
        for i in torch.nonzero(negative).flatten().tolist():
            other = self._other_image(examples, i, gen)
            if other is None:  # no other image to be had: keep the pair positive
                negative[i] = False
            else:
                image_ids[i] = other
        return image_ids, negative

    def _other_image(self, examples: list[Example], i: int, gen: torch.Generator) -> int | None:
        own = examples[i].image_id
        if self.negative_pool is not None:
            return self.negative_pool.sample(own, gen)
        others = [e for e in examples if e.image_id != own]
        if not others:
            return None
        return others[int(torch.randint(len(others), (1,), generator=gen))].image_id

    def _mask_text(self, batch: Batch, mask_rows: torch.Tensor, gen: torch.Generator) -> None:
        tok = self.tokenizer
        ids, text_mask = batch.input_ids, batch.text_mask
        special = torch.isin(ids, torch.tensor(tok.special_ids))
        maskable = text_mask & ~special & mask_rows[:, None]
        batch.input_ids, batch.mlm_labels = mask_tokens(
            ids, maskable, self.mask_prob, tok.mask_id, tok.vocab_size, gen)

    def _mask_image(self, batch: Batch, mask_rows: torch.Tensor, gen: torch.Generator) -> None:
        feats, valid = batch.region_feats, batch.region_mask
        if feats is not None and valid is not None:
            masked = choose_positions(valid & mask_rows[:, None], self.mask_prob, gen)
            batch.region_masked, batch.region_targets = masked, feats.clone()
            feats[masked] = 0.0  # a masked region is a zero vector (in place)
        elif batch.pixel_values is not None:
            draw = torch.rand(batch.size, generator=gen)
            batch.vd_draw = torch.where(mask_rows, draw, torch.full_like(draw, -1.0))


def mirror_text(batch: Batch, rows: torch.Tensor, pairs: list[tuple[int, int]]) -> None:
    """Swap each pair's two token ids (``left`` ↔ ``right``) in the text of ``rows``."""
    ids = batch.input_ids
    swapped = ids.clone()
    for a, b in pairs:
        swapped[ids == a] = b
        swapped[ids == b] = a
    batch.input_ids = torch.where(rows[:, None], swapped, ids)


def collate_text(token_ids: list[list[int]], pad_id: int) -> Batch:
    """A batch holding ``token_ids`` right-padded: ``input_ids`` and ``text_mask`` (B, L)."""
    length = max(len(t) for t in token_ids)
    ids = torch.full((len(token_ids), length), pad_id, dtype=torch.long)
    for row, t in enumerate(token_ids):
        ids[row, :len(t)] = torch.tensor(t)
    return Batch(input_ids=ids, text_mask=ids != pad_id)


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
        # SOHO's sampling makes several rows of each example, consecutively
        batch.example_ids = torch.tensor(key.indices).repeat_interleave(
            batch.size // len(examples))
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
