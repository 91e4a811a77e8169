"""Predictions of a trained model on a task split, and their metrics and files.

Library functions: ``vlp evaluate``, the fine-tuning run and a user's notebook call them
alike, with an encoder and a task head (no trainer). The caller puts the model in
scoring mode (eval, no gradient) — :func:`vlp.train.trainer.scoring` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor

from vlp.data.batch import Batch, describe_images
from vlp.errors import VlpError
from vlp.fileio import write_text_atomic
from vlp.models.encoder import VLEncoder
from vlp.models.outputs import VLOutput
from vlp.objectives.base import Objective
from vlp.tasks.base import AnyTaskData, KeyT, PredT, TaskData


def predict(encoder: VLEncoder, head: Objective, data: TaskData[Any, KeyT, PredT],
            device: torch.device, step: int = 0, batch_size: int = 128) -> dict[KeyT, PredT]:
    """The model's predictions on every evaluation row of ``data``.

    A head on the joint pass (``inputs == "joint"``) scores each row of
    :meth:`~TaskData.eval_rows`; a head on unimodal passes (ITC) embeds each text and each
    image once, apart, and the task ranks by the embeddings.

    Raises:
        VlpError: scores that are NaN or +inf (naming the step and the batch's images).
    """
    if head.inputs == "unimodal":
        return _predict_embeddings(encoder, head, data, device, batch_size)
    score = head_scores(head)
    rows = data.eval_rows()
    scores: dict[int, Tensor] = {}
    for start in range(0, len(rows), batch_size):
        batch = data.collate(rows[start:start + batch_size]).to(device)
        out = score(encoder(batch), batch)
        # -inf is a score some heads give on purpose (RefCOCO's padding regions)
        if bool(torch.isnan(out).any() or torch.isposinf(out).any()):
            raise VlpError(f"step {step}: {data.name} {data.split} scores are not finite "
                           f"({describe_images(batch)}); check their features; nothing was saved")
        for i, s in enumerate(out.float().cpu()):
            scores[start + i] = s
    return data.predictions(scores)


def head_scores(head: Objective) -> Callable[[VLOutput, Batch], Tensor]:
    """The head's ``scores(output, batch)`` → (N, C): what a task head predicts with.

    Raises:
        VlpError: the head has none.
    """
    score = getattr(head, "scores", None)
    if not callable(score):
        raise VlpError(f"{type(head).__name__} has no scores(output, batch); a task head "
                       "needs one")
    return cast(Callable[[VLOutput, Batch], Tensor], score)


def _predict_embeddings(encoder: VLEncoder, head: Objective, data: TaskData[Any, KeyT, PredT],
                        device: torch.device, batch_size: int) -> dict[KeyT, PredT]:
    """Dual-encoder predictions: each text and each image embedded once, apart."""
    embed = getattr(head, "embed", None)
    rank_by = getattr(data, "embedding_predictions", None)
    if embed is None or rank_by is None:
        raise VlpError(f"{data.name}: a unimodal head needs a task that ranks by "
                       "embeddings and a head that embeds")
    texts: list[Tensor] = []
    images: dict[int, Tensor] = {}
    for start in range(0, len(data.examples), batch_size):
        batch = data.collate(data.examples[start:start + batch_size]).to(device)
        text, image = embed(encoder.encode_unimodal(batch))
        texts.append(text.float().cpu())
        assert batch.image_ids is not None
        for image_id, vector in zip(batch.image_ids.tolist(), image.float().cpu(), strict=True):
            images[image_id] = vector
    return rank_by(torch.cat(texts), images)


def has_labels(data: AnyTaskData) -> bool:
    """Whether a split carries the labels its metrics need (test splits may not)."""
    return all(e.target is not None for e in data.examples)


def write_results(data: TaskData[Any, KeyT, PredT], predictions: dict[KeyT, PredT], out: Path
                  ) -> dict[str, float]:
    """Write ``predictions`` in the task's official format and their metrics (empty for
    a split without labels) under ``out``: ``predictions_<split><suffix>`` and
    ``metrics_<split>.json``, each atomically. Returns the metrics."""
    metrics = data.score(predictions) if has_labels(data) else {}
    out.mkdir(parents=True, exist_ok=True)
    data.write_predictions(out / f"predictions_{data.split}{data.predictions_suffix}",
                           predictions)
    write_text_atomic(out / f"metrics_{data.split}.json",
                      json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


__all__ = ["has_labels", "head_scores", "predict", "write_results"]
