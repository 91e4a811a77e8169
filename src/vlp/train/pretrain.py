"""Pre-training: the parts of a run built from a :class:`PretrainConfig`.

Image-text pairs from a Karpathy-format captions file and a region store; the configured
objectives, mixed by sampling one per batch (UNITER) or by summing their losses (SOHO);
held-out losses and accuracies on fixed masks and negatives. :class:`~vlp.train.trainer.
Trainer` runs them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlp.data.batch import Batch
from vlp.data.formats.caption_files import CaptionedImage, read_captioned_images
from vlp.data.pretrain import (
    BatchKey,
    BatchPlan,
    ImagePool,
    PairDataset,
    PretrainBatches,
    PretrainCollator,
    PretrainKeySampler,
    TextPool,
)
from vlp.data.tokenizer import Tokenizer
from vlp.data.visuals import Visuals
from vlp.errors import VlpError, is_strict, strict_mode
from vlp.objectives import LossModel, LossOutput, build_objectives
from vlp.objectives.base import Objective
from vlp.train.build import batch_sampler, build_encoder, load_init, run_inputs, start
from vlp.train.config import DataConfig, PretrainConfig
from vlp.train.logging import plot_curves
from vlp.train.runtime import Env
from vlp.train.trainer import Parts, RunData, Trainer, check_finite_eval, mean_losses


def read_captions(data: DataConfig, splits: list[str]) -> list[CaptionedImage]:
    """The captioned images of ``splits``, from ``data.captions`` or ``data.split_files``
    in any published caption format (:func:`read_captioned_images`).

    Raises:
        VlpError: a caption file is bad, or none of its images is in ``splits`` (naming the
            splits it holds and how to choose them).
    """
    images: list[CaptionedImage] = []
    held: set[str] = set()
    files = data.caption_files(splits)
    for path, split in files:
        found = read_captioned_images(path, data.caption_format, split)
        held.update(im.split for im in found)
        images += [im for im in found if im.split in splits]
    if not images:
        where = ", ".join(path for path, _ in files)
        raise VlpError(f"{where}: no images in split(s) {', '.join(splits)}; it holds "
                       f"{', '.join(sorted(held))} (choose with data.train_splits / "
                       "data.eval_split, or name each file's split with data.split_files)")
    return images


def load_pairs(data: DataConfig, tokenizer: Tokenizer, visuals: Visuals, splits: list[str],
               limit: int | None = None) -> PairDataset:
    """Caption-image pairs of ``splits`` (:func:`read_captions`), tokenised."""
    images = read_captions(data, splits)
    image_ids = [im.image_id for im in images for _ in im.captions]
    texts = [c for im in images for c in im.captions]
    if limit is not None:
        image_ids, texts = image_ids[:limit], texts[:limit]
    ids = tokenizer.encode(texts, data.max_text_len)
    source = ", ".join(path for path, _ in data.caption_files(splits))
    return PairDataset(image_ids, ids, visuals,
                       f"the captions of split(s) {', '.join(splits)} ({source})")


def objective_plan(objective: Objective) -> BatchPlan:
    """What a batch must contain for ``objective``."""
    return BatchPlan(mask_text=objective.masks == "text", mask_image=objective.masks == "image",
                     pairs=objective.pairs)


def eval_keys(pairs: PairDataset, plans: dict[str, BatchPlan], seed: int,
              batch_size: int = 64) -> list[BatchKey]:
    """Fixed held-out batches, one series per objective, with fixed masks and negatives."""
    keys = []
    for n, (name, plan) in enumerate(plans.items()):
        for first in range(0, len(pairs), batch_size):
            idx = tuple(range(first, min(first + batch_size, len(pairs))))
            keys.append(BatchKey(idx, seed * 1_000_003 + n * 10_007 + first, plan, (name,)))
    return keys


class HeldOutLosses:
    """Held-out loss and accuracy of every objective, on fixed batches: one series per
    objective, with the same masks and negatives at every evaluation."""

    def __init__(self, pairs: PairDataset, collator: PretrainCollator,
                 plans: dict[str, BatchPlan], seed: int, device: torch.device) -> None:
        self.batches = PretrainBatches(pairs, collator)
        self.keys = eval_keys(pairs, plans, seed)
        self.device = device

    def batches_on_device(self) -> Iterator[tuple[BatchKey, Batch]]:
        """The held-out batches (``key.objectives`` names each one's objective)."""
        for key in self.keys:
            _, batch = self.batches.__getitems__(key)
            yield key, batch.to(self.device)

    def __call__(self, model: LossModel, step: int) -> dict[str, float]:
        def outputs() -> Iterator[tuple[LossOutput, int]]:
            for key, batch in self.batches_on_device():
                out = model(batch, key.objectives)
                check_finite_eval(step, out, batch)
                yield out, batch.size
        return {f"eval/{k}": v for k, v in mean_losses(outputs()).items()}


def plot_losses(rows: list[dict[str, Any]], path: Path) -> Path:
    """PNG of the training losses."""
    keys = sorted({k for r in rows for k in r if k.startswith("loss/")})
    return plot_curves(rows, keys, path, "pre-training losses")


def _pool(pairs: PairDataset, image_lengths: np.ndarray | None = None) -> ImagePool:
    """The images of ``pairs`` to draw ITM negatives from, each of its own pair's length
    (``image_lengths``, when the caller has them already)."""
    lengths = pairs.image_lengths() if image_lengths is None else image_lengths
    return ImagePool(pairs.image_ids, dict(zip(pairs.image_ids, lengths.tolist(), strict=True)))


def pretraining_parts(cfg: PretrainConfig) -> tuple[Parts, Env]:
    """The parts of a pre-training run, and where it executes (its :class:`Env`)."""
    cfg, begin = start(cfg)
    data, obj = cfg.data, cfg.objectives
    with strict_mode(data.strict or is_strict()):
        train = load_pairs(data, begin.tokenizer, begin.visuals, data.train_splits)
        held_out = load_pairs(data, begin.tokenizer, begin.visuals.for_eval(), [data.eval_split],
                              limit=data.eval_pairs)
    lengths = train.lengths()  # (N, 2) tokens and visual tokens: batching and negatives
    collator = PretrainCollator(
        begin.tokenizer, begin.visuals, obj.mask_prob, obj.itm_neg_prob,
        obj.masking == "conditional", negative_pool=_pool(train, lengths[:, 1]),
        texts=TextPool(train) if obj.sampling == "soho" else None)
    cfg, encoder = build_encoder(cfg, begin)
    objectives = build_objectives(list(obj.weights), cfg.model, encoder, obj)
    notes = load_init(cfg, begin, encoder, objectives)
    plans = {n: objective_plan(o) for n, o in objectives.items()}
    weights = obj.weights if obj.mix == "sum" else dict.fromkeys(obj.weights, 1.0)
    keys = PretrainKeySampler(batch_sampler(cfg, lengths, begin.env), plans,
                              obj.weights, obj.mix, cfg.train.seed)
    # held-out negatives come from held-out images only
    eval_collator = dataclasses.replace(
        collator, visuals=begin.visuals.for_eval(), negative_pool=_pool(held_out),
        texts=TextPool(held_out) if obj.sampling == "soho" else None)
    evaluate = HeldOutLosses(held_out, eval_collator, plans, cfg.train.seed, begin.env.device)
    parts = Parts(cfg, LossModel(encoder, objectives, weights), PretrainBatches(train, collator),
                  keys, evaluate, RunData(begin.tokenizer, begin.visuals, train, held_out),
                  stage="pretrain", plot_name="losses.png", plot=plot_losses,
                  inputs=run_inputs(cfg), notes=notes,
                  prepare=_prepare if any(o.prepares for o in objectives.values()) else None)
    return parts, begin.env


def _prepare(model: LossModel, key: BatchKey, batch: Batch) -> Batch:
    """The batch as its objectives rebuild it with the model (ITM's hard negatives)."""
    return model.prepare(batch, key.objectives, key.seed)


def build_pretraining(cfg: PretrainConfig) -> Trainer:
    """A pre-training run from a config, ready to :meth:`~Trainer.run`."""
    parts, env = pretraining_parts(cfg)
    return Trainer(parts, env)


def pretrain(cfg: PretrainConfig, resume: bool = False, overwrite: bool = False
             ) -> dict[str, float]:
    """Run pre-training from a config; returns held-out metrics."""
    return build_pretraining(cfg).run(resume=resume, overwrite=overwrite)


__all__ = ["HeldOutLosses", "build_pretraining", "eval_keys", "load_pairs", "pretrain",
           "pretraining_parts"]
