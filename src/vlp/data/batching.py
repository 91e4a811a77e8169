"""Batch samplers: dynamic batching under a token budget, and fixed-size batches.

UNITER's dynamic batching: attention cost grows with the square of (text tokens +
regions), so examples of similar length go together and a batch holds as many as a
token budget allows. Both samplers are resumable: their position is part of a
checkpoint, and an epoch's batches depend only on (seed, epoch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

BatchFn = Callable[[np.ndarray, np.random.Generator], list[list[int]]]
# the padded share a batch cut part by part may reach once it fills half its budget
TIGHT = 0.03
MORE_BATCHES = 1.05  # how many more batches a tighter cut may make


def token_budget_batches(lengths: np.ndarray, token_budget: int, bucket_size: int = 4096,
                         max_batch_size: int | None = None) -> BatchFn:
    """Batches whose padded size stays within ``token_budget`` positions.

    ``lengths`` is (N,) or (N, K): one column per separately padded part (text tokens,
    regions). A batch of n examples costs ``n × Σ_k max(lengths[:, k])`` — exactly
    the positions of the padded tensors the collator builds. The shuffled order is cut
    into buckets of ``bucket_size`` examples and each bucket is cut greedily in two
    orders, keeping the one that pads less: by total length, and part by part (the part
    of fewest distinct lengths first; a batch that fills half its budget is closed before
    its padded share passes :data:`TIGHT`) — the first in small buckets, the second in
    large ones (where it makes about as many batches), a batch then holding one caption
    length and a narrow range of region counts. Batches are then shuffled so
    lengths do not come in order. An example longer than the budget forms a batch alone.

    Args:
        lengths: positions per example, (N,) or (N, K).
        token_budget: padded positions allowed per batch.
        bucket_size: examples sorted together (bigger: less padding, less randomness);
            0 — the whole epoch at once.
        max_batch_size: optional cap on examples per batch.
    """
    parts = np.asarray(lengths, dtype=np.int64)
    parts = parts[:, None] if parts.ndim == 1 else parts  # (N, K)
    total = parts.sum(axis=1)
    # part by part: the part of fewest distinct lengths is the major key
    keys = sorted(range(parts.shape[1]), key=lambda k: len(np.unique(parts[:, k])))
    step = bucket_size or max(len(parts), 1)

    def make(order: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
        batches: list[list[int]] = []
        for start in range(0, len(order), step):
            bucket = order[start:start + step]
            by_total = _cut_sorted(bucket[np.argsort(total[bucket], kind="stable")], parts,
                                   token_budget, max_batch_size)
            lex = bucket[np.lexsort([parts[bucket, k] for k in reversed(keys)])]
            by_part = _cut_sorted(lex, parts, token_budget, max_batch_size, tight=True)
            batches.extend(_tighter(by_total, by_part, parts))
        perm = rng.permutation(len(batches))
        return [batches[i] for i in perm]

    return make


def _tighter(by_total: list[list[int]], by_part: list[list[int]], parts: np.ndarray
             ) -> list[list[int]]:
    """The cut part by part when it pads less in about as many batches (at most
    :data:`MORE_BATCHES` more: in a small bucket it would pad less by making many small
    batches), else the cut by total length."""
    if len(by_part) <= MORE_BATCHES * len(by_total) and \
            _positions(by_part, parts) < _positions(by_total, parts):
        return by_part
    return by_total


def _positions(batches: list[list[int]], parts: np.ndarray) -> int:
    """Padded positions the collator builds for ``batches``."""
    return sum(len(b) * int(parts[b].max(axis=0).sum()) for b in batches)


def _cut_sorted(bucket: np.ndarray, parts: np.ndarray, budget: int,
                max_batch_size: int | None, tight: bool = False) -> list[list[int]]:
    """Cut ``bucket`` (in its order) greedily into batches within ``budget`` positions;
    with ``tight`` (for an order part by part), also where one more example would pad
    more than :data:`TIGHT` of a batch that already fills half the budget (where the
    major part's length changes, or the minor part's range grows too wide)."""
    batches: list[list[int]] = []
    current: list[int] = []
    longest = np.zeros(parts.shape[1], dtype=np.int64)  # running max of each part
    real = 0  # positions of the current batch that are not padding
    for idx in bucket.tolist():
        grown = np.maximum(longest, parts[idx])
        full = max_batch_size is not None and len(current) >= max_batch_size
        size = int(grown.sum()) * (len(current) + 1)
        loose = (tight and 2 * len(current) * int(longest.sum()) >= budget
                 and size - real - int(parts[idx].sum()) > TIGHT * size)
        if current and (size > budget or full or loose):
            batches.append(current)
            current, grown, real = [], parts[idx].copy(), 0
        current.append(idx)
        longest = grown
        real += int(parts[idx].sum())
    if current:
        batches.append(current)
    return batches


def fixed_size_batches(batch_size: int, drop_last: bool = False) -> BatchFn:
    """Plain batches of ``batch_size`` examples in shuffled order."""

    def make(order: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
        cuts = range(0, len(order), batch_size)
        batches = [order[i:i + batch_size].tolist() for i in cuts]
        if drop_last and batches and len(batches[-1]) < batch_size:
            batches.pop()
        return batches

    return make


class ResumableBatchSampler:
    """Yields batches of dataset indices epoch after epoch, resumable mid-epoch.

    Args:
        num_examples: dataset size.
        make_batches: how an epoch's shuffled order becomes batches.
        seed: base seed; epoch ``e`` uses ``(seed, e)``.
        shuffle: shuffle the order each epoch (False: dataset order, for evaluation).
        rank, world_size: under DDP each rank takes every ``world_size``-th batch.
    """

    def __init__(self, num_examples: int, make_batches: BatchFn, seed: int = 0,
                 shuffle: bool = True, rank: int = 0, world_size: int = 1) -> None:
        self.num_examples = num_examples
        self.make_batches = make_batches
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.position = 0  # batches of the current epoch already handed out (this rank)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch``, in order."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.num_examples) if self.shuffle else np.arange(
            self.num_examples)
        batches = self.make_batches(order, rng)
        usable = len(batches) - len(batches) % self.world_size if self.world_size > 1 else len(
            batches)
        return batches[self.rank:usable:self.world_size]

    def __len__(self) -> int:
        return len(self.epoch_batches(self.epoch))

    def __iter__(self) -> Iterator[list[int]]:
        """Batches from the saved position to the end of the current epoch, then
        the epoch advances."""
        batches = self.epoch_batches(self.epoch)
        while self.position < len(batches):
            batch = batches[self.position]
            self.position += 1
            yield batch
        self.epoch += 1
        self.position = 0

    def state_dict(self) -> dict[str, Any]:
        """Where the sampler stands."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position."""
        self.epoch, self.position, self.seed = state["epoch"], state["position"], state["seed"]


def padding_fraction(batches: list[list[int]], *lengths: np.ndarray) -> float:
    """Share of padded positions when each length array is padded to its batch maximum.

    Pass text lengths and region counts separately: each is padded on its own before
    the modalities are concatenated.
    """
    padded = real = 0
    for batch in batches:
        for lens in lengths:
            sel = lens[batch]
            padded += int(sel.max()) * len(batch)
            real += int(sel.sum())
    return 1.0 - real / padded if padded else 0.0
