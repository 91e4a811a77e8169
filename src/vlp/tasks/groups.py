"""Tasks whose records are several rows (NLVR2's two images, VCR's four options).

Samplers, batching and prediction see one example per record; :meth:`GroupedTaskData.collate`
expands each into its rows, consecutive and in order, so a group is never split across
batches and the head can reshape ``(G * K, …)`` to ``(G, K, …)``.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from vlp.data.batch import Batch
from vlp.errors import VlpError
from vlp.tasks.base import KeyT, PredT, RecordT, TaskData, TaskExample


def join_segments(segments: list[list[int]], max_len: int) -> list[int]:
    """``[CLS] a [SEP] b [SEP] …`` from ``[CLS] x [SEP]`` encodings, cut to ``max_len``
    tokens by shortening the longest segment first (BERT's ``longest_first``).

    Args:
        segments: each segment's ids, framed by ``[CLS]`` … ``[SEP]``.
        max_len: tokens kept in all.
    """
    bodies = [s[1:-1] for s in segments]
    room = max_len - 1 - len(bodies)  # [CLS] and one [SEP] per segment
    while sum(len(b) for b in bodies) > max(room, 0):
        # the longest; on a tie the later one, as Hugging Face's pair truncation does
        longest = max(reversed(range(len(bodies))), key=lambda i: len(bodies[i]))
        bodies[longest] = bodies[longest][:-1]
    cls, sep = segments[0][0], segments[0][-1]
    return [cls, *(t for b in bodies for t in (*b, sep))]


class GroupedTaskData(TaskData[RecordT, KeyT, PredT]):
    """A task of ``group_size`` rows per record.

    Subclasses implement :meth:`build_groups`; ``examples`` holds each group's first row
    (``record`` and ``group`` are the record's index) and ``groups`` all its rows. Each
    row's ``target`` is the record's label, so ``batch.targets`` is (G,) — one label per
    group.
    """

    group_size: ClassVar[int]

    @abstractmethod
    def build_groups(self) -> list[list[TaskExample]]:
        """The rows of each record, ``group_size`` each, in the order the head reads them."""

    def build_examples(self) -> list[TaskExample]:
        self.groups = self.build_groups()
        sizes = {len(g) for g in self.groups}
        if sizes != {self.group_size}:
            raise VlpError(f"{self.name}: expected {self.group_size} rows per record, "
                           f"found {sorted(sizes)}")
        # the base class checks the first rows' images; check the others here
        self.visuals.require((r.image_id for g in self.groups for r in g[1:]),
                             f"{self.name} {self.split}")
        return [g[0] for g in self.groups]

    def lengths(self) -> np.ndarray:
        """(N, 2) tokens and regions per record: its rows × the longest of them, which is
        what a record adds to a padded batch of records like it."""
        k = self.group_size
        return np.array([[k * max(len(r.token_ids) for r in g),
                          k * int(self.visuals.tokens([r.image_id for r in g]).max())]
                         for g in self.groups], dtype=np.int64)

    def rows_of(self, examples: list[TaskExample]) -> list[TaskExample]:
        """Every row of ``examples``' records, group by group: ``(G * K)`` rows."""
        return [row for e in examples for row in self.groups[e.record]]

    def collate(self, rows: list[TaskExample], seed: int | None = None) -> Batch:
        """The batch of the records of ``rows`` (one example per record): ``G * K`` rows,
        each group's consecutive; ``targets`` (G,) and ``group_ids`` (G * K,)."""
        return super().collate(self.rows_of(rows), seed)

    def target_tensor(self, rows: list[TaskExample], batch: Batch) -> Tensor:
        return torch.tensor([r.target for r in rows[::self.group_size]])  # (G,)
