"""The task interface: records → examples → batches, a head, predictions and metrics.

A task is two parts. :class:`TaskData` reads a split of the task's published files
into :class:`TaskExample` rows, collates them into a :class:`Batch` (``targets`` and,
for multi-row examples, ``group_ids``), turns model scores into predictions, writes them
in the task's official submission format and scores them. The head is an
:class:`~vlp.objectives.base.Objective` on the encoder's ``VLOutput``, so fine-tuning
runs through the same trainer as pre-training, and any encoder serves any task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from vlp.data.batch import Batch
from vlp.data.features import RegionStore
from vlp.data.pretrain import collate_regions, collate_text
from vlp.data.tokenizer import Tokenizer
from vlp.errors import VlpError


@dataclass(frozen=True)
class TaskExample:
    """One row of a task batch: a text with one image.

    Attributes:
        record: index of the record (question, hypothesis, statement …) it came from.
        image_id: the image, as keyed in the region store.
        token_ids: ``[CLS] text [SEP]`` ids.
        target: the task's label for this row (class id, soft-score dict, …).
        group: rows of one record share it (NLVR2's two images, VCR's options).
    """

    record: int
    image_id: int
    token_ids: list[int]
    target: Any = None
    group: int = -1


class TaskData(ABC):
    """One split of a task's data.

    Subclasses set ``name``, ``roles`` (the files a split needs, e.g. ``questions`` and
    ``annotations``) and ``world_files`` (each role's path template inside a ``vlp world``
    directory, with ``{split}``), and implement :meth:`read`, :meth:`target_tensor`,
    :meth:`predictions`, :meth:`score` and :meth:`write_predictions`.

    Args:
        files: role → path of this split's file.
        split: the split's name.
        tokenizer: text → ids.
        store: region features of the images.
        max_text_len: tokens kept per text.
        max_regions: regions kept per image.
        loc_dim: region location features (as the model expects).
        limit: keep the first ``limit`` records only (a labelled budget); 0 keeps all.
    """

    name: ClassVar[str]
    roles: ClassVar[tuple[str, ...]]
    world_files: ClassVar[dict[str, str]]
    split_names: ClassVar[dict[str, str]] = {}  # our split name → the file's own name
    labels: Sequence[str] = ()  # what the head's outputs mean (classes, answers)
    predictions_suffix: ClassVar[str] = ".json"  # of the official predictions file

    def __init__(self, files: dict[str, Path], split: str, tokenizer: Tokenizer,
                 store: RegionStore, max_text_len: int = 40, max_regions: int = 100,
                 loc_dim: int = 7, limit: int = 0) -> None:
        self.files, self.split = files, split
        self.tokenizer, self.store = tokenizer, store
        self.max_text_len, self.max_regions, self.loc_dim = max_text_len, max_regions, loc_dim
        self.records: list[Any] = self.read()
        if limit:
            self.records = self.records[:limit]
        if not self.records:
            raise VlpError(f"{self.name}: no records in split '{split}' "
                           f"({', '.join(str(p) for p in files.values())})")
        self.examples: list[TaskExample] = self.build_examples()
        missing = sorted({e.image_id for e in self.examples} - set(store.region_counts()))
        if missing:
            raise VlpError(f"{store.root}: no regions for image {missing[0]} "
                           f"({len(missing)} images of {self.name} {split} are missing)")

    # ---------------------------------------------------------------- reading
    @abstractmethod
    def read(self) -> list[Any]:
        """The split's records, from ``self.files``."""

    @abstractmethod
    def build_examples(self) -> list[TaskExample]:
        """Rows of the records (one or more per record)."""

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of ``texts``."""
        return self.tokenizer.encode(texts, self.max_text_len)

    # ---------------------------------------------------------------- batches
    def __len__(self) -> int:
        return len(self.examples)

    def lengths(self) -> np.ndarray:
        """(N, 2) tokens and regions per row, for token-budget batching."""
        counts = self.store.region_counts()
        return np.array([[len(e.token_ids), min(counts[e.image_id], self.max_regions)]
                         for e in self.examples], dtype=np.int64)

    def __getitem__(self, index: int) -> TaskExample:
        return self.examples[index]

    def collate(self, rows: list[TaskExample], seed: int | None = None) -> Batch:
        """The batch of ``rows``: text, regions, targets. A training batch passes its
        ``seed`` (any randomness it has, e.g. retrieval's negatives); None collates the
        rows as they are, for prediction."""
        if seed is not None:
            rows = self.training_rows(rows, torch.Generator().manual_seed(seed))
        batch = collate_text([r.token_ids for r in rows], self.tokenizer.pad_id)
        collate_regions(batch, [self.store.get(r.image_id) for r in rows], self.max_regions,
                        self.loc_dim)
        batch.image_ids = torch.tensor([r.image_id for r in rows])
        if rows[0].group >= 0:
            batch.group_ids = torch.tensor([r.group for r in rows])
        if all(r.target is not None for r in rows):
            batch.targets = self.target_tensor(rows, batch)
        return batch

    def training_rows(self, rows: list[TaskExample], gen: torch.Generator
                      ) -> list[TaskExample]:
        """Rows as a batch holds them (retrieval swaps in negative images here)."""
        return rows

    # a task that rebuilds its training batches with the model's help says so here
    uses_model_in_training: bool = False

    def with_model(self, batch: Batch, score: Callable[[Batch], Tensor],
                   gen: torch.Generator) -> Batch:
        """A training batch rebuilt with the model's help: ``score`` gives the head's
        scores (N, C) on any batch (retrieval mines hard negatives here). As is by default."""
        return batch

    def eval_rows(self) -> list[TaskExample]:
        """The rows scored at evaluation (retrieval: every text with every image)."""
        return self.examples

    @abstractmethod
    def target_tensor(self, rows: list[TaskExample], batch: Batch) -> Tensor:
        """``batch.targets`` for ``rows``."""

    # ---------------------------------------------------------------- results
    @abstractmethod
    def predictions(self, scores: dict[int, Tensor]) -> dict[Any, Any]:
        """Record key → prediction, from the head's output on each of :meth:`eval_rows`
        (row index → scores)."""

    @abstractmethod
    def score(self, predictions: dict[Any, Any]) -> dict[str, float]:
        """The task's official metrics of ``predictions`` against this split's labels."""

    @abstractmethod
    def write_predictions(self, path: Path, predictions: dict[Any, Any]) -> None:
        """Write ``predictions`` in the task's official submission format (atomically)."""

    @abstractmethod
    def read_predictions(self, path: Path) -> dict[Any, Any]:
        """Read a predictions file in the official format (as :meth:`write_predictions`)."""
