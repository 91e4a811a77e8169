"""Image-text retrieval: rank every image for each caption and every caption for each image,
by a cross-encoder's ITM score over all pairs (UNITER; ``task.options.rank: itm``) or by the
cosine of dual-encoder ITC embeddings (ALIGN / CLIP; ``task.options.rank: itc``) — fine-tuned from,
or zero-shot with, the pre-trained head of that name."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

import numpy as np
import torch
from torch import Tensor

from vlp.config import check, check_fields, ranged
from vlp.data.batch import Batch
from vlp.data.formats.caption_files import CaptionedImage, read_captioned_images
from vlp.data.readers import check_kind, json_field, load_json
from vlp.errors import input_error
from vlp.eval.ranking import recall_at_k
from vlp.fileio import write_text_atomic
from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.objectives.base import Objective
from vlp.objectives.itc import build_itc
from vlp.objectives.itm import build_itm
from vlp.tasks.base import AnyTaskData, TaskData, TaskExample
from vlp.tasks.registry import HeadSpec, TaskSpec, register_task

RANKS: tuple[str, ...] = ("itm", "itc")

# retrieval's predictions: "image_ids" and "text_image_ids" (each text's own image) → ids,
# "scores" → the (images, texts) score matrix
RankingField = list[int] | list[list[float]]
RankingPredictions = dict[str, RankingField]


@dataclass(frozen=True)
class RetrievalOptions:
    """Retrieval's options (``task.options``).

    Attributes:
        eval_texts_per_image: captions per image kept in the ranking pool.
        rank: ``itm`` (cross-encoder over every pair) or ``itc`` (dual-encoder embeddings;
            needs a model that encodes text and image apart).
        hard_negatives: (``rank: itm``) K > 0 trains on UNITER's hard negatives: of K
            other images in the batch, the one the model scores highest; 0 draws negative
            images at random from the split.
    """

    eval_texts_per_image: int = ranged(5, ge=1)
    rank: Literal["itm", "itc"] = "itm"
    hard_negatives: int = ranged(0, ge=0)

    def __post_init__(self) -> None:
        check_fields(self, "task.options")
        check(self.rank in RANKS, "task.options.rank", f"expected one of "
              f"{', '.join(RANKS)}, got {self.rank!r}")


class RetrievalData(TaskData[CaptionedImage, str, RankingField]):
    """One split of a caption file as a retrieval task: a Karpathy file, COCO captions, an
    ALBEF / BLIP list or JSONL (:mod:`vlp.data.formats.caption_files`; ``task.files.captions``
    may hold ``{split}`` for one file per split).

    Records are images (with their captions). Training rows are the true pairs; each batch
    swaps the image of about half of them (``neg_prob``) for another image (label 0): a
    random image of the split, as in ITM pre-training — or, with ``hard_negatives`` = K,
    UNITER's hard negative: of K images of the batch not the text's own, the one the model
    being trained scores highest (:meth:`with_model`). Evaluation scores all
    ``images × captions`` pairs: ``limit`` images and ``eval_texts_per_image`` captions each
    (COCO's 1K / 5K test protocol at full size).

    Predictions are ``{"image_ids": [...], "text_image_ids": [...], "scores": [[...]]}``:
    the (images, texts) score matrix, with each text's true image id.
    """

    name = "retrieval"
    roles = ("captions",)
    world_files: ClassVar[dict[str, str]] = {"captions": "annotations/dataset_world.json"}
    labels = ("no match", "match")

    def __init__(self, *args: Any, eval_texts_per_image: int = 5, neg_prob: float = 0.5,
                 rank: str = "itm", hard_negatives: int = 0, **kwargs: Any) -> None:
        self.texts_per_image = eval_texts_per_image
        self.neg_prob = neg_prob
        self.rank = rank
        self.hard_negatives = hard_negatives if rank == "itm" else 0
        self.uses_model_in_training = self.hard_negatives > 0
        super().__init__(*args, **kwargs)

    def read(self) -> list[CaptionedImage]:
        # any caption format; a file of one split is the split it is given for
        images = [im for im in read_captioned_images(self.files["captions"], split=self.split)
                  if im.split == self.split or (self.split == "train" and im.split == "restval")]
        return [im for im in images if im.captions]

    def build_examples(self) -> list[TaskExample]:
        # contrastive (ITC) heads train on true pairs only, with in-batch negatives
        self.neg_prob = 0.0 if self.rank == "itc" else self.neg_prob
        texts = [c for im in self.records for c in im.captions[:self.texts_per_image]]
        ids = iter(self.encode(texts))
        return [TaskExample(i, im.image_id, next(ids), 1)
                for i, im in enumerate(self.records) for _ in im.captions[:self.texts_per_image]]

    def training_rows(self, rows: list[TaskExample], gen: torch.Generator
                      ) -> list[TaskExample]:
        if self.hard_negatives:
            return rows  # negatives are mined with the model (with_model)
        images = [im.image_id for im in self.records]
        out = []
        for row in rows:
            if len(images) > 1 and float(torch.rand((), generator=gen)) < self.neg_prob:
                other = row.image_id
                while other == row.image_id:
                    other = images[int(torch.randint(len(images), (), generator=gen))]
                row = TaskExample(row.record, other, row.token_ids, 0, row.group)
            out.append(row)
        return out

    @torch.no_grad()
    def with_model(self, batch: Batch, score: Callable[[Batch], Tensor],
                   gen: torch.Generator) -> Batch:
        """Hard negatives: about ``neg_prob`` of the rows get, of ``hard_negatives`` images
        of the batch that are not their own, the one whose pair ``score`` rates most
        likely a match (ITM logit margin); those rows are relabelled 0."""
        assert batch.image_ids is not None
        ids = batch.image_ids.cpu()  # indices are drawn on the CPU, with ``gen``
        size = batch.size
        foreign = ids[None, :] != ids[:, None]  # (B, B) image j is not text i's own
        negative = (torch.rand(size, generator=gen) < self.neg_prob) & foreign.any(1)
        rows = negative.nonzero().flatten()  # (N,)
        image_index = torch.arange(size)
        if len(rows):
            k = min(self.hard_negatives, int(foreign[rows].sum(1).min()))
            cand = torch.multinomial(foreign[rows].float(), k, generator=gen)  # (N, k)
            logits = score(batch.pair(rows.repeat_interleave(k), cand.flatten())).float()
            margin = (logits[:, 1] - logits[:, 0]).view(len(rows), k).cpu()
            image_index[rows] = cand.gather(1, margin.argmax(1, keepdim=True)).flatten()
        mined = batch.pair(torch.arange(size), image_index)
        labels = (~negative).long().to(batch.input_ids.device)
        mined.targets = mined.itm_labels = labels
        return mined

    def eval_rows(self) -> list[TaskExample]:
        """Every caption of the pool with every image: row ``i * T + t``."""
        return [TaskExample(text.record, im.image_id, text.token_ids, None)
                for im in self.records for text in self.examples]

    def target_tensor(self, rows: list[TaskExample], batch: Batch) -> Tensor:
        labels = torch.tensor([r.target for r in rows])
        batch.itm_labels = labels  # the head is the ITM objective (ITC needs no labels)
        return labels

    def predictions(self, scores: dict[int, Tensor]) -> RankingPredictions:
        n_img, n_txt = len(self.records), len(self.examples)
        matrix = np.zeros((n_img, n_txt), dtype=np.float32)
        for row, s in scores.items():
            matrix[row // n_txt, row % n_txt] = float(s[1] - s[0])  # match logit margin
        return self.matrix_predictions(matrix)

    def embedding_predictions(self, text: Tensor, image: dict[int, Tensor]) -> RankingPredictions:
        """Dual-encoder predictions: cosine of each text's embedding (T, E) with each
        image's (image id → (E,)), as ALIGN / CLIP rank."""
        images = torch.stack([image[im.image_id] for im in self.records])  # (I, E)
        # scored in fp32 outside any autocast: bf16 scores would tie near neighbours
        with torch.autocast(images.device.type, enabled=False):
            return self.matrix_predictions((images.float() @ text.float().T).numpy())

    def matrix_predictions(self, matrix: np.ndarray) -> RankingPredictions:
        """Predictions holding the (images, texts) score matrix."""
        return {"image_ids": [im.image_id for im in self.records],
                "text_image_ids": [self.records[e.record].image_id for e in self.examples],
                "scores": np.asarray(matrix, dtype=np.float32).tolist()}

    def score(self, predictions: RankingPredictions) -> dict[str, float]:
        """Recall@K both ways; the predictions must rank this split's pool (the images and
        captions :meth:`eval_rows` scores, ``task.eval_limit`` images)."""
        source = self.predictions_source
        # each image's first captions, in the order build_examples makes the rows
        expected = {"image_ids": [im.image_id for im in self.records],
                    "text_image_ids": [im.image_id for im in self.records
                                       for _ in im.captions[:self.texts_per_image]]}
        for key, ids in expected.items():
            if list(predictions[key]) != ids:
                raise input_error(source, key, f"the predictions rank another pool: {len(ids)} "
                                  f"{'images' if key == 'image_ids' else 'captions'} of split "
                                  f"'{self.split}' expected, {len(predictions[key])} found "
                                  "(same task.eval_limit and texts per image as when written?)")
        image_ids = cast(list[int], predictions["image_ids"])  # as ``expected`` (checked)
        text_image_ids = cast(list[int], predictions["text_image_ids"])
        where = {image_id: i for i, image_id in enumerate(image_ids)}
        owner = [where[i] for i in text_image_ids]
        metrics = recall_at_k(np.asarray(predictions["scores"]), np.asarray(owner))
        return {f"retrieval/{k}": v for k, v in metrics.items()}

    def write_predictions(self, path: Path, predictions: RankingPredictions) -> None:
        write_text_atomic(path, json.dumps(predictions))

    def read_predictions(self, path: Path) -> RankingPredictions:
        """The score matrix file :meth:`write_predictions` writes, checked for shape."""
        self.predictions_source = str(path)
        doc = load_json(path)
        if not isinstance(doc, dict):
            raise input_error(path, None, "expected the retrieval score matrix written by vlp "
                                          "evaluate (a JSON object)")
        ids = {key: [check_kind(path, v, f"{key}[{i}]", "integer")
                     for i, v in enumerate(json_field(path, doc, key, "", "list"))]
               for key in ("image_ids", "text_image_ids")}
        rows = json_field(path, doc, "scores", "", "list")
        if len(rows) != len(ids["image_ids"]):
            raise input_error(path, "scores", f"expected {len(ids['image_ids'])} rows (one per "
                                              f"image), found {len(rows)}")
        scores = _score_matrix(path, rows, len(ids["text_image_ids"]))
        unknown = sorted(set(ids["text_image_ids"]) - set(ids["image_ids"]))
        if unknown:
            raise input_error(path, "text_image_ids", f"image {unknown[0]} is not in "
                                                      "image_ids")
        return {**ids, "scores": scores}


def _score_matrix(path: Path, rows: list[object], n: int) -> list[list[float]]:
    """The (images, texts) scores; checked element by element only when not a plain
    numeric matrix, to name the bad one (a COCO 5K matrix has 125M entries)."""
    try:
        matrix = np.array(rows)
    except ValueError:  # ragged
        matrix = np.zeros(0)
    if matrix.dtype.kind in "fiu" and matrix.shape == (len(rows), n) and \
            bool(np.isfinite(matrix).all()):
        return [list(r) for r in matrix.astype(np.float64).tolist()]
    return [_score_row(path, row, f"scores[{i}]", n) for i, row in enumerate(rows)]


def _score_row(path: Path, row: object, where: str, n: int) -> list[float]:
    values = check_kind(path, row, where, "list")
    if len(values) != n:
        raise input_error(path, where, f"expected {n} scores (one per caption), found "
                                       f"{len(values)}")
    out = [float(check_kind(path, v, f"{where}[{j}]", "number")) for j, v in enumerate(values)]
    bad = [j for j, v in enumerate(out) if not np.isfinite(v)]
    if bad:
        raise input_error(path, f"{where}[{bad[0]}]", f"expected a finite number, found "
                                                      f"{out[bad[0]]}")
    return out


def _build_itm(cfg: ModelConfig, model: VLEncoder, data: AnyTaskData) -> Objective:
    return build_itm(cfg, model)


def _build_itc(cfg: ModelConfig, model: VLEncoder, data: AnyTaskData) -> Objective:
    return build_itc(cfg, model)


def retrieval_head(options: object) -> HeadSpec:
    """The pre-trained head to rank with (``rank``): ITM (UNITER) or ITC (ALIGN / CLIP)."""
    assert isinstance(options, RetrievalOptions)
    if options.rank == "itc":
        return HeadSpec("itc", _build_itc)
    return HeadSpec("itm", _build_itm)


register_task(TaskSpec("retrieval", RetrievalData, "image-text retrieval (Karpathy split): "
                       "Recall@1/5/10 both ways, by ITM or ITC", RetrievalOptions,
                       head_choice=retrieval_head))
