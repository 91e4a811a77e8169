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
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, cast, overload

import numpy as np
import torch
from torch import Tensor

from vlp.data.batch import Batch
from vlp.data.pretrain import collate_text
from vlp.data.readers import examples
from vlp.data.tokenizer import Tokenizer
from vlp.data.visuals import RegionSource, Visuals
from vlp.errors import VlpError, data_warning, input_error

# a row's label: a class id, VQA's soft scores (answer → score), RefCOCO's xyxy box
TaskTarget = int | dict[str, float] | tuple[float, ...]

RecordT = TypeVar("RecordT")  # one record of a split (question, pair, image, ref …)
KeyT = TypeVar("KeyT", bound=Hashable)  # what names a record in a predictions file
PredT = TypeVar("PredT")  # one record's prediction
ItemT = TypeVar("ItemT")  # what scored_records chooses from (records by default)
PartT = TypeVar("PartT")  # the vocabulary or the images, which scoring does without


@dataclass(frozen=True)
class TaskExample:
    """One row of a task batch: a text with one image.

    Attributes:
        record: index of the record (question, hypothesis, statement …) it came from.
        image_id: the image, as keyed in the region store or the images list.
        token_ids: ``[CLS] text [SEP]`` ids.
        target: the task's label for this row (class id, soft-score dict, …).
        group: rows of one record share it (NLVR2's two images, VCR's options).
    """

    record: int
    image_id: int
    token_ids: list[int]
    target: TaskTarget | None = None
    group: int = -1


class TaskData(ABC, Generic[RecordT, KeyT, PredT]):
    """One split of a task's data: records of type ``RecordT``, predictions
    ``KeyT → PredT`` (VQA: ``TaskData[VQAQuestion, int, str]``, question id → answer).

    Subclasses set ``name``, ``roles`` (the files a split needs, e.g. ``questions`` and
    ``annotations``) and ``world_files`` (each role's path template inside a ``vlp world``
    directory, with ``{split}``), and implement :meth:`read`, :meth:`target_tensor`,
    :meth:`predictions`, :meth:`score` and :meth:`write_predictions`.

    Args:
        files: role → path of this split's file.
        split: the split's name.
        tokenizer: text → ids; None reads the records only, for scoring a predictions
            file (:meth:`score` needs what the official evaluation script needs: no
            vocabulary, no images).
        visuals: the images, as the model reads them (regions or pixels); None with
            ``tokenizer`` None.
        max_text_len: tokens kept per text.
        limit: keep the first ``limit`` records only (a labelled budget); 0 keeps all.
    """

    name: ClassVar[str]
    roles: ClassVar[tuple[str, ...]]
    world_files: ClassVar[dict[str, str]]
    split_names: ClassVar[dict[str, str]] = {}  # our split name → the file's own name
    labels: Sequence[str] = ()  # what the head's outputs mean (classes, answers)
    predictions_suffix: ClassVar[str] = ".json"  # of the official predictions file
    predictions_source: str = "predictions"  # named in scoring errors; read_predictions sets it

    def __init__(self, files: dict[str, Path], split: str, tokenizer: Tokenizer | None,
                 visuals: Visuals | None, max_text_len: int = 40, limit: int = 0) -> None:
        self.files, self.split = files, split
        self._tokenizer, self._visuals = tokenizer, visuals
        self.max_text_len = max_text_len
        self.all_records: list[RecordT] = self.read()  # the whole split, for scoring files
        self.records: list[RecordT] = self.all_records[:limit] if limit else self.all_records
        if not self.records:
            raise VlpError(f"{self.name}: no records in split '{split}' "
                           f"({', '.join(str(p) for p in files.values())})")
        self.examples: list[TaskExample] = []
        if tokenizer is not None:
            self.examples = self.build_examples()
            self.visuals.require((e.image_id for e in self.examples), f"{self.name} {split}")

    @property
    def scoring_only(self) -> bool:
        """Read for scoring a predictions file: records, no rows, tokens or images."""
        return self._tokenizer is None

    @property
    def tokenizer(self) -> Tokenizer:
        return self._needed(self._tokenizer, "vocabulary")

    @property
    def visuals(self) -> Visuals:
        return self._needed(self._visuals, "images")

    def _needed(self, part: PartT | None, what: str) -> PartT:
        """``part``, which a split read for scoring only does not have."""
        if part is None:
            raise VlpError(f"{self.name}: split '{self.split}' was read for scoring only "
                           f"(no {what})")
        return part

    # ---------------------------------------------------------------- reading
    @abstractmethod
    def read(self) -> list[RecordT]:
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
        """(N, 2) tokens and visual tokens per row, for token-budget batching."""
        image = self.visuals.tokens([e.image_id for e in self.examples])
        return np.stack([np.array([len(e.token_ids) for e in self.examples], dtype=np.int64),
                         image], axis=1)

    def regions(self) -> RegionSource:
        """The images as detector regions, for a task that reads their boxes.

        Raises:
            VlpError: the model reads pixels (``model.visual`` patches or grid).
        """
        if not isinstance(self.visuals, RegionSource):
            raise VlpError(f"task {self.name} chooses among detector regions, but the "
                           f"model reads pixels ({self.visuals.source}); fine-tune a "
                           "region model (model.visual: regions) on it")
        return self.visuals

    def __getitem__(self, index: int) -> TaskExample:
        return self.examples[index]

    def collate(self, rows: list[TaskExample], seed: int | None = None) -> Batch:
        """The batch of ``rows``: text, regions, targets. A training batch passes its
        ``seed`` (any randomness it has, e.g. retrieval's negatives); None collates the
        rows as they are, for prediction."""
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        if gen is not None:
            rows = self.training_rows(rows, gen)
        batch = collate_text([r.token_ids for r in rows], self.tokenizer.pad_id)
        # a task's pixels are never mirrored (fine-tuning builds its pixel source without
        # flips): a label may name a side (VQA's "left", NLVR2's left image)
        self.visuals.collate(batch, [r.image_id for r in rows], gen)
        batch.image_ids = torch.tensor([r.image_id for r in rows])
        if rows[0].group >= 0:
            batch.group_ids = torch.tensor([r.group for r in rows])
        if all(r.target is not None for r in rows):
            batch.targets = self.target_tensor(rows, batch)
        return batch

    def shared(self) -> dict[str, object]:
        """What every other split takes from this, the training split, as keyword
        arguments (VQA: its answer vocabulary, so the head's outputs mean the same
        everywhere). Nothing by default."""
        return {}

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
    def predictions(self, scores: dict[int, Tensor]) -> dict[KeyT, PredT]:
        """Record key → prediction, from the head's output on each of :meth:`eval_rows`
        (row index → scores)."""

    @abstractmethod
    def score(self, predictions: dict[KeyT, PredT]) -> dict[str, float]:
        """The task's official metrics of ``predictions`` against this split's labels."""

    def require_labels(self) -> None:
        """Raise one line naming what is missing when the split has no labels to train on
        or to score against (a test split)."""
        if not all(e.target is not None for e in self.examples):
            raise VlpError(f"{self.name}: split '{self.split}' has no labels to score "
                           f"against ({', '.join(str(p) for p in self.files.values())})")

    @overload
    def scored_records(self, predictions: dict[KeyT, PredT], key: Callable[[RecordT], KeyT],
                       what: str) -> list[RecordT]: ...

    @overload
    def scored_records(self, predictions: dict[KeyT, PredT], key: Callable[[ItemT], KeyT],
                       what: str, pool: Sequence[ItemT],
                       evaluated: Sequence[ItemT] | None = None) -> list[ItemT]: ...

    def scored_records(self, predictions: dict[KeyT, PredT], key: Callable[[ItemT], KeyT],
                       what: str, pool: Sequence[ItemT] | None = None,
                       evaluated: Sequence[ItemT] | None = None) -> list[ItemT]:
        """The records of the whole split that ``predictions`` name, in split order.

        A predictions file may cover more than the records evaluated in training
        (``task.eval_limit``): every record it names is scored. A key that is no record of
        the split is an error; evaluated records without a prediction are one data warning.

        Args:
            predictions: record key → prediction.
            key: a record → its key in ``predictions``.
            what: what a record is, plural, for messages (e.g. ``pairs``).
            pool: the items to choose from, when a record is several (RefCOCO's
                expressions); the whole split's records by default.
            evaluated: the items evaluated (``records`` by default).

        Raises:
            VlpError: a prediction names no record of the split, or none is left to score.
        """
        # without a pool the items are the records (the first overload)
        pool = cast(Sequence[ItemT], self.all_records) if pool is None else pool
        evaluated = cast(Sequence[ItemT], self.records) if evaluated is None else evaluated
        keys = {key(r) for r in pool}
        unknown = [k for k in predictions if k not in keys]
        source = self.predictions_source
        if unknown:
            raise input_error(source, None, f"{unknown[0]!r} is none of the {what} of split "
                              f"'{self.split}' ({len(unknown)} such predictions; were they "
                              "made on another split?)")
        missing = [key(r) for r in evaluated if key(r) not in predictions]
        if missing:
            data_warning(source, None, f"no prediction for {len(missing)} of the "
                         f"{len(evaluated)} {what} evaluated (e.g. {examples(missing)}); "
                         "scoring the others")
        scored = [r for r in pool if key(r) in predictions]
        if not scored:
            raise input_error(source, None, f"no predictions to score (split '{self.split}')")
        return scored

    @abstractmethod
    def write_predictions(self, path: Path, predictions: dict[KeyT, PredT]) -> None:
        """Write ``predictions`` in the task's official submission format (atomically)."""

    @abstractmethod
    def read_predictions(self, path: Path) -> dict[KeyT, PredT]:
        """Read a predictions file in the official format (as :meth:`write_predictions`)."""


# any task's data, for code that handles every task alike (prediction, fine-tuning, the registry)
AnyTaskData = TaskData[Any, Any, Any]
