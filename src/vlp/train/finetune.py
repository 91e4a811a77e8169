"""Fine-tuning: the parts of a run built from a :class:`FinetuneConfig`.

A task's head is an objective and its data a :class:`~vlp.tasks.base.TaskData`, so the
same :class:`~vlp.train.trainer.Trainer` runs it with mixed precision, accumulation,
checkpoints, exact resume and DDP; only the data, the head and the evaluation (the
task's official metrics on predictions, :mod:`vlp.tasks.predict`) differ.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vlp.data.batch import Batch
from vlp.data.pretrain import BatchKey, BatchPlan, PretrainKeySampler
from vlp.errors import is_strict, strict_mode
from vlp.objectives import LossModel
from vlp.objectives.base import Objective
from vlp.tasks import TaskSpec, get_task
from vlp.tasks.base import AnyTaskData, KeyT, PredT, TaskData
from vlp.tasks.predict import has_labels, head_scores, predict, write_results
from vlp.train.build import Start, batch_sampler, build_encoder, load_init, run_inputs, start
from vlp.train.config import FinetuneConfig
from vlp.train.logging import plot_curves
from vlp.train.runtime import Env
from vlp.train.trainer import Parts, Plot, Prepare, RunData, Trainer, scoring


class TaskBatches(torch.utils.data.Dataset[tuple[BatchKey, Batch]]):
    """Task batches addressed by :class:`BatchKey` (indices and seed)."""

    def __init__(self, data: AnyTaskData) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitems__(self, key: BatchKey) -> tuple[BatchKey, Batch]:
        batch = self.data.collate([self.data[i] for i in key.indices], key.seed)
        batch.example_ids = torch.tensor(key.indices)
        return key, batch

    def __getitem__(self, key: BatchKey) -> tuple[BatchKey, Batch]:
        return self.__getitems__(key)


@dataclass
class Task:
    """The task side of a fine-tuning run: its spec, splits and head.

    Attributes:
        spec: the registered task.
        cfg: the run's config.
        begin: the run's tokenizer, images and device.
        train: the training split.
        held_out: the evaluation split (``data.eval_split``).
        head_name: the head's objective name in the :class:`LossModel`.
    """

    spec: TaskSpec
    cfg: FinetuneConfig
    begin: Start
    train: AnyTaskData
    held_out: AnyTaskData
    head_name: str

    def load_split(self, split: str) -> AnyTaskData:
        """Another split of the task, in the training split's label space."""
        if split == self.held_out.split:
            return self.held_out
        return load_split(self.cfg, self.spec, self.begin, split, self.cfg.task.eval_limit,
                          self.train)


def load_split(cfg: FinetuneConfig, spec: TaskSpec, begin: Start, split: str, limit: int,
               train: AnyTaskData | None = None) -> AnyTaskData:
    """One split of the task, sharing the training split's label space (``train``)."""
    with strict_mode(cfg.data.strict or is_strict()):
        return spec.load_split(cfg.task, cfg.data.world, split, begin.tokenizer,
                               begin.visuals, cfg.data.max_text_len, limit, train)


class TaskEvaluation:
    """The task's official metrics on its evaluation split; the predictions of the last
    evaluation are kept (``latest``: step → predictions) for the results files."""

    def __init__(self, task: Task, device: torch.device) -> None:
        self.task, self.device = task, device
        self.latest: tuple[int, dict[Any, Any]] | None = None

    def __call__(self, model: LossModel, step: int) -> dict[str, float]:
        data = self.task.held_out
        predictions = predict(model.encoder, model.objective(self.task.head_name), data,
                              self.device, step)
        self.latest = (step, predictions)
        return {f"eval/{k}": v for k, v in data.score(predictions).items()}


def finetuning_parts(cfg: FinetuneConfig) -> tuple[Parts, Env, Task]:
    """The parts of a fine-tuning run, where it executes, and its task side."""
    spec = get_task(cfg.task.name)
    cfg, begin = start(cfg)
    train = load_split(cfg, spec, begin, cfg.data.train_splits[0], cfg.task.train_limit)
    held_out = load_split(cfg, spec, begin, cfg.data.eval_split, cfg.task.eval_limit, train)
    if cfg.train.steps > 0:  # trained on, and scored at the end: both need labels
        train.require_labels()
        held_out.require_labels()
    cfg, encoder = build_encoder(cfg, begin)
    head = spec.head(spec.parse_options(cfg.task.options))
    head_name = head.name
    heads: dict[str, Objective] = {head_name: head.build(cfg.model, encoder, train)}
    notes = load_init(cfg, begin, encoder, heads)
    task = Task(spec, cfg, begin, train, held_out, head_name)
    plans = {head_name: BatchPlan()}
    keys = PretrainKeySampler(batch_sampler(cfg, train.lengths(), begin.env), plans,
                              {head_name: 1.0}, "sum", cfg.train.seed)
    parts = Parts(cfg, LossModel(encoder, heads, {head_name: 1.0}), TaskBatches(train), keys,
                  TaskEvaluation(task, begin.env.device),
                  RunData(begin.tokenizer, begin.visuals, train, held_out),
                  stage="finetune", plot_name="curves.png", plot=_plotter(spec.name),
                  inputs=run_inputs(cfg), notes=notes,
                  prepare=_with_model(task) if train.uses_model_in_training else None)
    return parts, begin.env, task


def _with_model(task: Task) -> Prepare:
    """The training batch rebuilt by the task with the head's scores (retrieval's hard
    negatives), from the seed's own stream (apart from the collator's: resume is exact)."""
    def prepare(model: LossModel, key: BatchKey, batch: Batch) -> Batch:
        score = head_scores(model.objective(task.head_name))
        return task.train.with_model(batch, lambda pairs: score(model.encoder(pairs), pairs),
                                     torch.Generator().manual_seed(key.seed + 1))
    return prepare


def _plotter(name: str) -> Plot:
    def plot(rows: list[dict[str, Any]], path: Path) -> Path:
        """PNG of the training loss and the evaluation metrics over steps."""
        keys = sorted({k for r in rows for k in r if k.startswith(("loss/", "eval/"))
                       and "/" not in k.split("/", 1)[1]})
        return plot_curves(rows, keys, path, f"fine-tuning {name}")
    return plot


@dataclass
class Finetuning:
    """A fine-tuning run: the trainer and the task it trains."""

    trainer: Trainer
    task: Task
    evaluation: TaskEvaluation

    def predict(self, data: TaskData[Any, KeyT, PredT]) -> dict[KeyT, PredT]:
        """The current model's predictions on ``data``."""
        model = self.trainer.model
        with scoring(model, self.trainer.device, self.trainer.cfg.train.precision):
            return predict(model.encoder, model.objective(self.task.head_name), data,
                           self.trainer.device, self.trainer.step)

    def write_results(self, split: str | None = None) -> dict[str, float]:
        """Predictions (official format) and metrics JSON of ``split`` (the evaluation
        split by default) under ``train.out``; reuses the last evaluation's predictions
        when they were made at the current step."""
        data = self.task.load_split(split or self.task.held_out.split)
        done = self.evaluation.latest
        if data is self.task.held_out and done is not None and done[0] == self.trainer.step:
            predictions = done[1]
        else:
            predictions = self.predict(data)
        return write_results(data, predictions, self.trainer.out)


def build_finetuning(cfg: FinetuneConfig) -> Finetuning:
    """A fine-tuning run from a config, ready to run."""
    parts, env, task = finetuning_parts(cfg)
    assert isinstance(parts.evaluate, TaskEvaluation)
    return Finetuning(Trainer(parts, env), task, parts.evaluate)


def evaluate_model(cfg: FinetuneConfig) -> dict[str, float]:
    """Predict ``data.eval_split`` with the model ``train.init`` names (a run, checkpoint
    or imported model) and write the predictions and metrics under ``train.out``; no
    training run is built."""
    parts, env, task = finetuning_parts(cfg)
    model = parts.model.to(env.device)
    with scoring(model, env.device, parts.cfg.train.precision):
        predictions = predict(model.encoder, model.objective(task.head_name), task.held_out,
                              env.device)
    return write_results(task.held_out, predictions, Path(parts.cfg.train.out))


def score_predictions(cfg: FinetuneConfig, path: Path) -> dict[str, float]:
    """The official metrics of a predictions file against ``data.eval_split``.

    Only what the official evaluation script reads is opened: the split's annotation
    files (``task.files`` or ``data.world``). No vocabulary, images, region features or
    training split."""
    spec = get_task(cfg.task.name)
    split = cfg.data.eval_split
    options = dataclasses.asdict(spec.parse_options(cfg.task.options))  # type: ignore[call-overload]
    with strict_mode(cfg.data.strict or is_strict()):
        data = spec.data(spec.files(cfg.task, cfg.data.world, split), split, None, None,
                         cfg.data.max_text_len, cfg.task.eval_limit, **options)
        return data.score(data.read_predictions(path))


def finetune(cfg: FinetuneConfig, resume: bool = False, overwrite: bool = False
             ) -> dict[str, float]:
    """Fine-tune, evaluate, and write the evaluation split's predictions and metrics
    (a finished run resumed keeps those it wrote)."""
    run = build_finetuning(cfg)
    run.trainer.run(resume=resume, overwrite=overwrite)
    if run.trainer.rank != 0:
        return {}
    written = run.trainer.out / f"metrics_{run.task.held_out.split}.json"
    if run.trainer.finished and written.is_file():
        return {k: float(v) for k, v in json.loads(written.read_text(encoding="utf-8")).items()}
    return run.write_results()


__all__ = ["Finetuning", "Task", "TaskBatches", "build_finetuning", "evaluate_model",
           "finetune", "finetuning_parts", "has_labels", "load_split", "score_predictions"]
