"""Fine-tuning and evaluation on downstream tasks, through the pre-training loop.

A task's head is an objective and its data a :class:`~vlp.tasks.base.TaskData`, so the
loop, mixed precision, accumulation, checkpoints, exact resume and DDP are the
pre-trainer's own; only the data, the head and the evaluation differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vlp.data.batch import Batch
from vlp.data.features import RegionStore
from vlp.data.pretrain import BatchKey, PretrainKeySampler
from vlp.data.tokenizer import Tokenizer
from vlp.errors import VlpError
from vlp.fileio import write_text_atomic
from vlp.models import ModelConfig
from vlp.objectives.base import Objective
from vlp.tasks import get_task
from vlp.tasks.base import TaskData
from vlp.train.config import FinetuneConfig
from vlp.train.logging import plot_curves, read_metrics
from vlp.train.pretrain import Pretrainer, _batch_images, _Window


class TaskBatches(torch.utils.data.Dataset):
    """Task batches addressed by :class:`BatchKey` (indices and seed)."""

    def __init__(self, data: TaskData) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitems__(self, key: BatchKey) -> tuple[BatchKey, Batch]:
        batch = self.data.collate([self.data[i] for i in key.indices], key.seed)
        batch.example_ids = torch.tensor(key.indices)
        return key, batch

    def __getitem__(self, key: BatchKey) -> tuple[BatchKey, Batch]:
        return self.__getitems__(key)


class Finetuner(Pretrainer):
    """Fine-tunes the encoder plus a task head; ``train.init`` names the pre-trained run
    (or checkpoint, or imported model) to start from — empty trains from scratch."""

    cfg: FinetuneConfig  # type: ignore[assignment]
    stage = "finetune"
    plot_name = "curves.png"

    def __init__(self, cfg: FinetuneConfig) -> None:
        self.spec = get_task(cfg.task.name)
        head = self.spec.head(self.spec.parse_options(cfg.task.options))
        self.head_name, self.build_head = head.name, head.build
        self._predicted: tuple[int, Any] | None = None  # (step, eval predictions)
        super().__init__(cfg)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ building
    def _build_data(self) -> None:
        cfg = self.cfg
        self.tokenizer = Tokenizer.from_vocab(cfg.data.require("vocab"), field="data.vocab")
        self.store = RegionStore.open(cfg.data.require("features"),
                                      verify=cfg.data.verify_features)
        self.train_data = self.load_split(cfg.data.train_splits[0], cfg.task.train_limit)
        self.eval_data = self.load_split(cfg.data.eval_split, cfg.task.eval_limit)
        if cfg.train.steps > 0:  # trained on, and scored at the end: both need labels
            self.train_data.require_labels()
            self.eval_data.require_labels()
        # the batch samplers read lengths from here
        self.train_pairs = self.train_data  # type: ignore[assignment]

    def load_split(self, split: str, limit: int) -> TaskData:
        """One split of the task, sharing the training split's label space."""
        cfg = self.cfg
        return self.spec.load_split(cfg.task, cfg.data.world, split, self.tokenizer,
                                    self.store, cfg.data.max_text_len, cfg.data.max_regions,
                                    cfg.model.loc_dim, limit, getattr(self, "train_data", None))

    def _build_objectives(self, mcfg: ModelConfig, model: torch.nn.Module
                          ) -> dict[str, Objective]:
        return {self.head_name: self.build_head(mcfg, model, self.train_data)}

    def _loss_weights(self) -> dict[str, float]:
        return {self.head_name: 1.0}

    def _key_sampler(self) -> PretrainKeySampler:
        return PretrainKeySampler(self._index_sampler(), self.plans, self._loss_weights(),
                                  "sum", self.cfg.train.seed)

    def _train_dataset(self) -> torch.utils.data.Dataset:
        return TaskBatches(self.train_data)

    def _micro_step(self, key: BatchKey, batch: Batch, window: _Window, sync: bool) -> None:
        if self.train_data.uses_model_in_training:
            batch = self._with_model(batch.to(self.device), key.seed)
        super()._micro_step(key, batch, window, sync)

    def _with_model(self, batch: Batch, seed: int) -> Batch:
        """Let the task rebuild the batch with the model's scores."""
        head = self.module.objectives[self.head_name]

        def score(pairs: Batch) -> Tensor:
            return head.scores(self.module.model(pairs), pairs)  # type: ignore[operator]

        with self.scoring():
            # the seed's own stream, apart from the collator's: resume stays exact
            return self.train_data.with_model(batch, score, torch.Generator().manual_seed(seed + 1))

    # ------------------------------------------------------------------ evaluation
    def predict(self, data: TaskData, batch_size: int = 128) -> dict[Any, Any]:
        """The model's predictions on every evaluation row of ``data``."""
        head = self.module.objectives[self.head_name]
        if head.inputs == "unimodal":
            return self._predict_embeddings(data, batch_size)
        rows = data.eval_rows()
        scores: dict[int, Tensor] = {}
        with self.scoring():
            for start in range(0, len(rows), batch_size):
                batch = data.collate(rows[start:start + batch_size]).to(self.device)
                out = head.scores(self.module.model(batch), batch)  # type: ignore[operator]
                # -inf is a score some heads give on purpose (RefCOCO's padding regions)
                if bool(torch.isnan(out).any() or torch.isposinf(out).any()):
                    raise VlpError(f"step {self.step}: {data.name} {data.split} scores are "
                                   f"not finite ({_batch_images(batch)}); check their "
                                   "features; nothing was saved")
                for i, s in enumerate(out.float().cpu()):
                    scores[start + i] = s
        return data.predictions(scores)

    def _predict_embeddings(self, data: TaskData, batch_size: int) -> dict[Any, Any]:
        """Dual-encoder predictions: each text and each image embedded once, apart."""
        head = self.module.objectives[self.head_name]
        encode = getattr(self.module.model, "encode_unimodal", None)
        embed = getattr(head, "embed", None)
        rank_by = getattr(data, "embedding_predictions", None)
        if encode is None or embed is None or rank_by is None:
            raise VlpError(f"task.options.rank: {self.head_name} needs a model that encodes text "
                           f"and image apart and a task that ranks by embeddings")
        texts: list[Tensor] = []
        images: dict[int, Tensor] = {}
        with self.scoring():
            for start in range(0, len(data.examples), batch_size):
                batch = data.collate(data.examples[start:start + batch_size]).to(self.device)
                text, image = embed(encode(batch))
                texts.append(text.float().cpu())
                assert batch.image_ids is not None
                for image_id, vector in zip(batch.image_ids.tolist(), image.float().cpu(),
                                            strict=True):
                    images[image_id] = vector
        return rank_by(torch.cat(texts), images)

    def evaluate(self) -> dict[str, float]:
        """The task's official metrics on the evaluation split."""
        rng = torch.get_rng_state()
        predictions = self.predict(self.eval_data)
        torch.set_rng_state(rng)
        self._predicted = (self.step, predictions)  # write_results reuses them at this step
        return {f"eval/{k}": v for k, v in self.eval_data.score(predictions).items()}

    def write_results(self, split: str | None = None) -> dict[str, float]:
        """Predictions (official format) and metrics JSON of ``split`` under ``train.out``."""
        data = self.eval_data if split in (None, self.eval_data.split) else \
            self.load_split(split or "", self.cfg.task.eval_limit)
        done = self._predicted
        if data is self.eval_data and done is not None and done[0] == self.step:
            predictions = done[1]  # the evaluation at the end of run(), same weights
        else:
            predictions = self.predict(data)
        metrics = data.score(predictions) if data_has_labels(data) else {}
        self.out.mkdir(parents=True, exist_ok=True)
        data.write_predictions(self.out / f"predictions_{data.split}{data.predictions_suffix}",
                               predictions)
        write_text_atomic(self.out / f"metrics_{data.split}.json",
                          json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        return metrics

    def plot(self) -> Path:
        """PNG of the training loss and the evaluation metrics over steps."""
        rows = read_metrics(self.out / "metrics.jsonl")
        keys = sorted({k for r in rows for k in r if k.startswith(("loss/", "eval/"))
                       and "/" not in k.split("/", 1)[1]})
        return plot_curves(rows, keys, self.out / self.plot_name,
                           f"fine-tuning {self.spec.name}")


def data_has_labels(data: TaskData) -> bool:
    """Whether a split carries the labels its metrics need (test splits may not)."""
    return all(e.target is not None for e in data.examples)


def finetune(cfg: FinetuneConfig, resume: bool = False, overwrite: bool = False
             ) -> dict[str, float]:
    """Fine-tune, evaluate, and write the evaluation split's predictions and metrics
    (a finished run resumed keeps those it wrote)."""
    trainer = Finetuner(cfg)
    trainer.run(resume=resume, overwrite=overwrite)
    if trainer.rank != 0:
        return {}
    written = trainer.out / f"metrics_{trainer.eval_data.split}.json"
    if trainer.finished and written.is_file():
        return {k: float(v) for k, v in json.loads(written.read_text(encoding="utf-8")).items()}
    return trainer.write_results()


__all__ = ["Finetuner", "TaskBatches", "finetune"]
