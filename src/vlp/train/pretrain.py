"""The pre-training loop: one explicit loop with AMP, accumulation, DDP and exact resume."""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from vlp.config import dump_config, read_yaml, to_dict
from vlp.data.batch import Batch
from vlp.data.batching import ResumableBatchSampler, fixed_size_batches, token_budget_batches
from vlp.data.features import RegionStore
from vlp.data.formats.karpathy import read_karpathy
from vlp.data.pretrain import (
    BatchKey,
    BatchPlan,
    ImagePool,
    PairDataset,
    PretrainBatches,
    PretrainCollator,
    PretrainKeySampler,
    unwrap,
)
from vlp.data.tokenizer import Tokenizer
from vlp.errors import VlpError, is_strict, strict_mode
from vlp.fileio import remove_stale_temporaries, write_text_atomic
from vlp.models import build_model
from vlp.models.config import ModelConfig
from vlp.models.convert import Imported, load_imported, with_text_config
from vlp.models.weights import load_partial
from vlp.objectives import PretrainingModel, build_objectives
from vlp.objectives.base import Objective
from vlp.objectives.itm import itc_hard_negatives
from vlp.train.checkpoint import (
    check_checkpoint,
    list_checkpoints,
    load_state,
    load_weights,
    save_checkpoint,
    verify_checkpoint,
)
from vlp.train.config import DataConfig, PretrainConfig, RunConfig
from vlp.train.logging import MetricsLog, plot_curves, read_metrics
from vlp.train.runtime import (
    autocast,
    distributed_init,
    effective_precision,
    make_optimizer,
    maybe_no_sync,
    resolve_device,
    warmup_linear,
)


def load_pairs(data: DataConfig, tokenizer: Tokenizer, store: RegionStore, splits: list[str],
               limit: int | None = None) -> PairDataset:
    """Caption-image pairs of ``splits`` from a Karpathy-format file, tokenised."""
    images = [im for im in read_karpathy(data.require("captions")) if im.split in splits]
    if not images:
        raise VlpError(f"{data.captions}: no images in split(s) {', '.join(splits)}")
    image_ids = [im.image_id for im in images for _ in im.captions]
    texts = [c for im in images for c in im.captions]
    if limit is not None:
        image_ids, texts = image_ids[:limit], texts[:limit]
    ids = tokenizer.encode(texts, data.max_text_len)
    return PairDataset(image_ids, ids, store, data.max_regions)


def objective_plan(objective: Objective) -> BatchPlan:
    """What a batch must contain for ``objective``."""
    return BatchPlan(mask_text=objective.masks == "text", mask_image=objective.masks == "image",
                     pairs=objective.pairs)


def eval_keys(pairs: PairDataset, plans: dict[str, BatchPlan], seed: int,
              batch_size: int = 64) -> list[BatchKey]:
    """Fixed held-out batches, one series per objective, with fixed masks and negatives."""
    keys = []
    for n, (name, plan) in enumerate(plans.items()):
        for start in range(0, len(pairs), batch_size):
            idx = tuple(range(start, min(start + batch_size, len(pairs))))
            keys.append(BatchKey(idx, seed * 1_000_003 + n * 10_007 + start, plan, (name,)))
    return keys


def _with_init_vocab(data: DataConfig, init: Imported, key: str, src: str) -> DataConfig:
    """``data`` reading the imported model's ``vocab.txt`` unless ``data.vocab`` is set."""
    if data.vocab:
        return data
    if init.vocab is None:
        raise VlpError(f"train.{key}: {src} has no vocab.txt; "
                       "set data.vocab to the vocabulary it was trained with")
    return dataclasses.replace(data, vocab=str(init.vocab))


RunT = TypeVar("RunT", bound=RunConfig)


class Pretrainer:
    """Builds a run from a :class:`PretrainConfig` and trains it.

    Attributes:
        step: optimizer steps taken.
    """

    stage = "pretrain"  # the progress bar's label
    plot_name = "losses.png"  # written at the end of a run

    def __init__(self, cfg: PretrainConfig) -> None:
        self.text_init = load_imported(cfg.train.init_text) if cfg.train.init_text else None
        if self.text_init is not None:
            cfg = self._with_text_init(cfg, self.text_init)
        self.init = load_imported(cfg.train.init) if cfg.train.init else None
        visual = (self.init.config if self.init is not None else cfg.model).visual
        if visual != "regions":
            raise VlpError(f"model.visual: {visual} — the trainer reads detector "
                           "regions from a feature store; training on pixels (patches) needs "
                           "an image pipeline vlp does not have yet. Imported ViLT models run "
                           "on batches with pixel_values from Python.")
        if self.init is not None:
            cfg = self._with_init(cfg, self.init)
        self.cfg = dataclasses.replace(cfg, data=cfg.data.resolved())
        # fine-tuning configs have no objectives section: their ITM is a task head
        objectives = cfg.objectives if isinstance(cfg, PretrainConfig) else None
        self.hard_itm = objectives is not None and objectives.itm_hard_negatives
        if objectives is not None and self.hard_itm and \
                not {"itm", "itc"} <= set(objectives.weights):
            raise VlpError("objectives.itm_hard_negatives draws ITM negatives by ITC "
                           "similarity: objectives.weights needs both itm and itc")
        self.rank, self.world_size = distributed_init()
        self.device = resolve_device(cfg.train.device)
        precision = effective_precision(self.device, cfg.train.precision)
        self.cfg = dataclasses.replace(self.cfg, train=dataclasses.replace(
            self.cfg.train, precision=precision))  # config.yaml records what runs
        self.out = Path(cfg.train.out)
        torch.manual_seed(cfg.train.seed)
        with strict_mode(cfg.data.strict or is_strict()):
            self._build_data()
        self._build_model()
        self.step = 0
        self.finished = False  # a resumed run that had already reached train.steps
        # sampler position of the last batch consumed: the loader's workers read ahead,
        # so the sampler's own position is not what a checkpoint must record
        self.consumed = self.keys.state_dict()

    @staticmethod
    def _with_text_init(cfg: RunT, init: Imported) -> RunT:
        if not init.text_only:
            raise VlpError(f"train.init_text: {cfg.train.init_text} is a whole vision-language "
                           "model, not a text encoder")
        data = _with_init_vocab(cfg.data, init, "init_text", cfg.train.init_text)
        return dataclasses.replace(cfg, data=data, model=with_text_config(cfg.model, init.config))

    @staticmethod
    def _with_init(cfg: RunT, init: Imported) -> RunT:
        """The whole model section becomes the imported model's."""
        if cfg.train.init_text:
            raise VlpError("train.init and train.init_text are both set; the whole model "
                           "named by train.init already holds its text side")
        if init.text_only:
            raise VlpError(f"train.init: {cfg.train.init} is a text encoder, not a whole "
                           "vision-language model (start from it with train.init_text)")
        data = _with_init_vocab(cfg.data, init, "init", cfg.train.init)
        return dataclasses.replace(cfg, data=data, model=init.config)

    def _build_data(self) -> None:
        data = self.cfg.data
        self.tokenizer = Tokenizer.from_vocab(data.require("vocab"), field="data.vocab")
        self.store = RegionStore.open(data.require("features"), verify=data.verify_features)
        self.train_pairs = load_pairs(data, self.tokenizer, self.store, data.train_splits)
        self.eval_pairs = load_pairs(data, self.tokenizer, self.store, [data.eval_split],
                                     limit=data.eval_pairs)
        obj = self.cfg.objectives
        self.collator = PretrainCollator(
            self.tokenizer, obj.mask_prob, obj.itm_neg_prob, obj.masking == "conditional",
            self.cfg.model.loc_dim, data.max_regions,
            negative_pool=ImagePool(self.store, self.train_pairs.image_ids))
        # held-out negatives come from held-out images only
        self.eval_collator = dataclasses.replace(
            self.collator, negative_pool=ImagePool(self.store, self.eval_pairs.image_ids))

    def _build_model(self) -> None:
        mcfg = dataclasses.replace(
            self.cfg.model, vocab_size=self.tokenizer.vocab_size, pad_id=self.tokenizer.pad_id,
            region_feature_dim=self.store.feature_dim, num_region_classes=self.store.num_classes)
        self.cfg = dataclasses.replace(self.cfg, model=mcfg)
        if self.init is not None:
            self._check_init_sizes(mcfg, self.init.config)
        model = build_model(mcfg)
        objectives = self._build_objectives(mcfg, model)
        self._load_init(model, objectives)
        self.plans = {n: objective_plan(o) for n, o in objectives.items()}
        self.module = PretrainingModel(model, objectives, self._loss_weights()).to(self.device)
        self._build_optimisation()
        self.keys = self._key_sampler()

    def _build_objectives(self, mcfg: ModelConfig, model: nn.Module) -> dict[str, Objective]:
        return build_objectives(list(self.cfg.objectives.weights), mcfg, model)

    def _loss_weights(self) -> dict[str, float]:
        obj = self.cfg.objectives
        return obj.weights if obj.mix == "sum" else dict.fromkeys(obj.weights, 1.0)

    def _key_sampler(self) -> PretrainKeySampler:
        obj = self.cfg.objectives
        return PretrainKeySampler(self._index_sampler(), self.plans, obj.weights, obj.mix,
                                  self.cfg.train.seed)

    def _load_init(self, model: nn.Module, objectives: dict[str, Objective]) -> None:
        """Start from ``train.init_text`` (BERT) or ``train.init`` (a whole model)."""
        mcfg = self.cfg.model
        if self.text_init is not None:
            source = self.cfg.train.init_text
            load = getattr(model, "load_text_weights", None)
            if load is None:
                raise VlpError(f"train.init_text: model.arch '{mcfg.arch}' cannot start its "
                               "text side from BERT")
            load(self.text_init.model, source)
            for name, head in self.text_init.heads.items():
                if name in objectives:
                    load_partial(objectives[name], head, source)
        if self.init is not None:
            load_partial(model, self.init.model, self.cfg.train.init)
            for name, head in self.init.heads.items():
                if name in objectives:
                    load_partial(objectives[name], head, self.cfg.train.init)

    def _build_optimisation(self) -> None:
        """DDP wrapper, optimizer, schedule and loss scaler of ``self.module``."""
        self.net: nn.Module = self.module
        if self.world_size > 1:
            # one objective per batch leaves the other heads unused on that step
            self.net = DistributedDataParallel(self.module, find_unused_parameters=True)
        t = self.cfg.train
        self.optimizer = make_optimizer(self.module, t.lr, t.weight_decay, t.betas)
        self.scheduler = warmup_linear(self.optimizer, t.warmup_steps, t.steps)
        self.scaler = torch.amp.GradScaler(
            enabled=t.precision == "fp16" and self.device.type == "cuda")

    def _check_init_sizes(self, mcfg: ModelConfig, init: ModelConfig) -> None:
        """The data must fit the imported model: its feature size and its vocabulary."""
        src, data = self.cfg.train.init, self.cfg.data
        if mcfg.region_feature_dim != init.region_feature_dim:
            raise VlpError(f"train.init: {src} expects region features of size "
                           f"{init.region_feature_dim}, but {data.features} holds features of "
                           f"size {mcfg.region_feature_dim} (data.features)")
        if mcfg.vocab_size != init.vocab_size:
            raise VlpError(f"train.init: {src} has a vocabulary of {init.vocab_size} tokens, "
                           f"but {data.vocab} has {mcfg.vocab_size} (data.vocab)")

    def _index_sampler(self) -> ResumableBatchSampler:
        data = self.cfg.data
        if data.token_budget > 0:
            make = token_budget_batches(self.train_pairs.lengths(), data.token_budget,
                                        data.bucket_size)
        else:
            make = fixed_size_batches(data.batch_size)
        return ResumableBatchSampler(len(self.train_pairs), make, self.cfg.train.seed,
                                     rank=self.rank, world_size=self.world_size)

    def _train_dataset(self) -> torch.utils.data.Dataset:
        """Batches addressed by :class:`BatchKey`."""
        return PretrainBatches(self.train_pairs, self.collator)

    def _loader(self, keys: Any, dataset: torch.utils.data.Dataset) -> DataLoader:
        # a private generator keeps the loader from drawing on the global RNG, which
        # must advance identically in an uninterrupted and a resumed run (dropout)
        return DataLoader(dataset, batch_sampler=keys, collate_fn=unwrap,
                          num_workers=self.cfg.data.num_workers,
                          generator=torch.Generator().manual_seed(0))

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """Everything besides the weights that an exact resume needs."""
        return {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler": self.consumed,
            "torch_rng": torch.get_rng_state(),
            "finished": self.step >= self.cfg.train.steps,
        }

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0 only); never one of non-finite weights."""
        if self.rank != 0:
            return None
        self._check_finite_weights()
        return save_checkpoint(self.out / "checkpoints", self.step, self.module, self.state(),
                               dump_config(self.cfg), self.cfg.train.keep_checkpoints)

    def _check_finite_weights(self) -> None:
        """Stop before a checkpoint of NaN or inf weights is written."""
        for name, param in self.module.named_parameters():
            if not bool(torch.isfinite(param.detach()).all()):
                last = list_checkpoints(self.out / "checkpoints")
                where = f"the last good checkpoint is {last[-1]}" if last else \
                    "no checkpoint was written"
                raise VlpError(f"step {self.step}: weight '{name}' is not finite (NaN or inf) "
                               f"after the optimizer step; nothing was saved ({where}); "
                               "lower train.lr or check the data")

    def resume(self) -> bool:
        """Load the newest checkpoint under ``train.out``; False if there is none.

        The checkpoint's model must be the configured one (a changed model section is
        refused, naming the field). Optimisation settings given now (learning rate,
        schedule, betas, weight decay, …) are applied from the resumed step on, and each
        change is printed.
        """
        found = list_checkpoints(self.out / "checkpoints")
        if not found:
            return False
        check_checkpoint(found[-1])
        problems = verify_checkpoint(found[-1]) if self.cfg.train.verify_checkpoint else []
        if problems:
            raise VlpError(f"{problems[0]}; resume from an earlier checkpoint "
                           "(train.verify_checkpoint)")
        changes = self._config_changes(found[-1] / "config.yaml")
        load_weights(self.module, found[-1])
        state = load_state(found[-1])
        self.step = int(state["step"])
        self.finished = bool(state.get("finished", False)) and self.step >= self.cfg.train.steps
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.keys.load_state_dict(state["sampler"])
        self.consumed = dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        if self.step > self.cfg.train.steps:
            raise VlpError(f"train.steps: {self.cfg.train.steps} is below step {self.step}, "
                           f"which the run in {self.out} has reached")
        self._apply_optimisation_settings()
        if self.rank == 0 and changes:
            if self.finished:
                print(f"resume: the run finished at step {self.step}; nothing to apply "
                      f"({', '.join(changes)} changed; raise train.steps to train on)")
            for key, (was, now) in changes.items() if not self.finished else ():
                print(f"resume: {key} {was!r} -> {now!r} (applied from step {self.step})")
        return True

    def _config_changes(self, saved: Path) -> dict[str, tuple[Any, Any]]:
        """Fields that differ between the checkpoint's config and this one; a changed
        model section is an error (the weights would not fit it)."""
        before = read_yaml(saved)
        # a field the saved config lacks (written by an older vlp) is not a change
        changes = {key: pair for key, pair in _flat_diff(before, to_dict(self.cfg)).items()
                   if key not in _NOT_TRAINING and pair[0] is not None}
        for key, (was, now) in changes.items():
            if key.startswith("model."):
                raise VlpError(f"--resume: {key} is {was!r} in {saved} but {now!r} now; a "
                               "checkpoint resumes only into the model it was saved from "
                               "(start a new run, or fine-tune from it with train.init)")
        return changes

    def _apply_optimisation_settings(self) -> None:
        """Learning rate, betas and weight decay of the config, over those the optimizer
        state carried (equal values when nothing changed: the resume stays exact)."""
        t = self.cfg.train
        groups = self.optimizer.param_groups
        self.scheduler.base_lrs = [t.lr] * len(groups)
        factor = self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)
        for i, group in enumerate(groups):
            group["initial_lr"] = t.lr
            group["lr"] = t.lr * factor
            group["betas"] = (t.betas[0], t.betas[1])
            if i == 0:  # the decayed group (make_optimizer); the other never decays
                group["weight_decay"] = t.weight_decay
        self.scheduler._last_lr = [g["lr"] for g in groups]

    # ------------------------------------------------------------------ loop
    def run(self, resume: bool = False, overwrite: bool = False) -> dict[str, float]:
        """Train to ``train.steps`` optimizer steps; returns the final held-out metrics.

        Args:
            resume: continue from the newest checkpoint of ``train.out``.
            overwrite: replace the run already in ``train.out``; without it (or
                ``resume``) a non-empty ``train.out`` is refused.
        """
        self._claim(resume, overwrite)
        if resume and not self.resume():
            raise VlpError(f"{self.out / 'checkpoints'}: no checkpoint to resume from")
        final = self._final_metrics() if self.finished else None
        if final is not None:
            return final  # a finished run resumed: nothing changes
        log = MetricsLog(self.out, self.step, self.cfg.train.tensorboard and self.rank == 0,
                         enabled=self.rank == 0)
        if self.rank == 0:
            write_text_atomic(self.out / "config.yaml", dump_config(self.cfg))
        try:
            self._loop(log)
            metrics = self.evaluate()
            if self.rank == 0:
                log.log(self.step, metrics)
                self.save()
                self.plot()
        finally:
            log.close()
        return metrics

    def _claim(self, resume: bool, overwrite: bool) -> None:
        """Rank 0 claims ``train.out``; the other ranks wait for it and stop with it."""
        error = None
        if self.rank == 0:
            t, d = self.cfg.train, self.cfg.data
            inputs = [t.init, t.init_text, d.world, d.captions, d.features, d.vocab]
            try:
                claim_run_dir(self.out, resume, overwrite, inputs)
            except VlpError as err:
                error = str(err)
        if self.world_size > 1:
            box = [error]
            torch.distributed.broadcast_object_list(box, src=0)
            error = box[0]
        if error is not None:
            raise VlpError(error)

    def _final_metrics(self) -> dict[str, float] | None:
        """The held-out metrics a finished run logged at its last step (None if it was
        stopped before logging them: then they are computed again)."""
        rows = [r for r in read_metrics(self.out / "metrics.jsonl")
                if r.get("step") == self.step and any(k.startswith("eval/") for k in r)]
        if not rows:
            return None
        if self.rank == 0 and not (self.out / self.plot_name).is_file():
            self.plot()  # stopped between the last checkpoint and the plot
        return {k: float(v) for k, v in rows[-1].items() if k.startswith("eval/")}

    def _loop(self, log: MetricsLog) -> None:
        t = self.cfg.train
        bar = tqdm(total=t.steps, initial=self.step, desc=self.stage, dynamic_ncols=True,
                   disable=not t.progress or self.rank != 0)
        dataset = self._train_dataset()
        window = _Window()
        micro = 0
        self.net.train()
        while self.step < t.steps:
            for key, batch in self._loader(self.keys, dataset):
                micro += 1
                last = micro % t.grad_accum == 0
                self._micro_step(key, batch, window, sync=last)
                if not last:
                    continue
                self._optimizer_step(key)
                bar.update(1)
                self._after_step(log, window, bar)
                if self.step >= t.steps:
                    break
        bar.close()

    def _micro_step(self, key: BatchKey, batch: Batch, window: _Window, sync: bool) -> None:
        batch = batch.to(self.device)
        if self.hard_itm and "itm" in key.objectives:
            batch = self._hard_itm_negatives(batch, key.seed)
        with maybe_no_sync(self.net, not sync), autocast(self.device, self.cfg.train.precision):
            out = self.net(batch, key.objectives)
            loss = out.loss / self.cfg.train.grad_accum
        value = float(out.loss.detach())
        if not math.isfinite(value):
            bad = [n for n, v in out.losses.items() if not math.isfinite(float(v.detach()))]
            raise VlpError(
                f"step {self.step + 1}: loss is {value} (objective {', '.join(bad) or '?'}, "
                f"{_batch_images(batch)}); lower train.lr, check the features, or resume "
                "from the last checkpoint")
        self.scaler.scale(loss).backward()
        window.add(out, batch.size)

    @contextmanager
    def scoring(self) -> Iterator[None]:
        """The model as it scores rather than trains: eval mode (no dropout), no gradient,
        the run's precision; training mode comes back afterwards, whatever happens."""
        self.module.eval()
        try:
            with torch.no_grad(), autocast(self.device, self.cfg.train.precision):
                yield
        finally:
            self.module.train()

    def _hard_itm_negatives(self, batch: Batch, seed: int) -> Batch:
        """ITM negatives by ITC similarity (its own random stream)."""
        itc = self.module.objectives["itc"]
        with self.scoring():
            text, image = itc.embed(self.module.model.encode_unimodal(batch))  # type: ignore[operator]
        scale = float(itc.logit_scale.detach().exp().clamp(max=100.0))  # type: ignore[operator]
        return itc_hard_negatives(batch, text * scale, image,
                                  torch.Generator().manual_seed(seed + 2))

    def _optimizer_step(self, key: BatchKey) -> None:
        self.scaler.unscale_(self.optimizer)
        if self.cfg.train.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.consumed = {"epoch": key.epoch, "position": key.position,
                         "seed": self.cfg.train.seed}

    def _after_step(self, log: MetricsLog, window: _Window, bar: tqdm) -> None:
        t = self.cfg.train
        if self.step % t.log_every == 0 or self.step == t.steps:
            row = window.flush()
            row["lr"] = float(self.scheduler.get_last_lr()[0])
            bar.set_postfix(loss=f"{row['loss']:.3f}", sps=f"{row['samples_per_s']:.0f}")
            if self.rank == 0:
                log.log(self.step, row)
        if t.eval_every and self.step % t.eval_every == 0 and self.step < t.steps:
            metrics = self.evaluate()
            if self.rank == 0:
                log.log(self.step, metrics)
        if t.save_every and self.step % t.save_every == 0 and self.step < t.steps:
            self.save()

    def eval_batches(self) -> Iterator[tuple[BatchKey, Batch]]:
        """The held-out batches, on the run's device: one series per objective, with the
        same masks and negatives at every evaluation (``key.objectives`` names it)."""
        dataset = PretrainBatches(self.eval_pairs, self.eval_collator)
        for key in eval_keys(self.eval_pairs, self.plans, self.cfg.train.seed):
            _, batch = dataset.__getitems__(key)
            yield key, batch.to(self.device)

    def evaluate(self) -> dict[str, float]:
        """Held-out loss and accuracy of every objective on fixed masks and negatives."""
        rng_state = torch.get_rng_state()
        window = _Window()
        with self.scoring():
            for key, batch in self.eval_batches():
                out = self.module(batch, key.objectives)
                _check_finite_eval(self.step, out, batch)
                window.add(out, batch.size)
        torch.set_rng_state(rng_state)
        row = window.flush()
        return {f"eval/{k}": v for k, v in row.items() if k not in ("samples_per_s", "loss")}

    def plot(self) -> Path:
        """PNG of the training losses and held-out accuracies."""
        rows = read_metrics(self.out / "metrics.jsonl")
        keys = sorted({k for r in rows for k in r if k.startswith("loss/")})
        return plot_curves(rows, keys, self.out / self.plot_name, "pre-training losses")


class _Window:
    """Running sums of losses, accuracy counts and samples between two log lines."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.correct: dict[str, float] = {}
        self.total: dict[str, float] = {}
        self.samples = 0
        self.start = time.perf_counter()

    def add(self, out: Any, batch_size: int) -> None:
        self.samples += batch_size
        for name, value in {"loss": out.loss, **out.losses}.items():
            key = name if name == "loss" else f"loss/{name}"
            self.sums[key] = self.sums.get(key, 0.0) + float(value.detach())
            self.counts[key] = self.counts.get(key, 0) + 1
        for name, correct in out.correct.items():
            self.correct[name] = self.correct.get(name, 0.0) + float(correct)
            self.total[name] = self.total.get(name, 0.0) + float(out.count[name])

    def flush(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        row = {k: self.sums[k] / self.counts[k] for k in self.sums}
        row.update({f"{k}_acc": self.correct[k] / max(self.total[k], 1.0) for k in self.correct})
        row["samples_per_s"] = self.samples / elapsed
        self.reset()
        return row


def _batch_images(batch: Batch) -> str:
    """The images of a batch, for an error message."""
    if batch.image_ids is None:
        return f"a batch of {batch.size}"
    ids = sorted(set(batch.image_ids.tolist()))
    more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
    return f"images {ids[:5]}{more}"


def _check_finite_eval(step: int, out: Any, batch: Batch) -> None:
    """Held-out losses must be finite: NaN metrics are an error naming the images."""
    values = {"loss": out.loss, **out.losses}
    bad = [n for n, v in values.items() if not math.isfinite(float(v.detach()))]
    if bad:
        raise VlpError(f"step {step}: held-out {bad[-1]} is not finite "
                       f"({_batch_images(batch)}); check their features; nothing was saved")


def _is_run(out: Path) -> bool:
    """Whether ``out`` holds a vlp run: a checkpoint history, or a ``config.yaml`` whose
    sections are a run config's."""
    if (out / "checkpoints" / "history.json").is_file():
        return True
    try:
        doc = read_yaml(out / "config.yaml")
    except VlpError:
        return False
    return {"model", "data", "train"} <= set(doc)


def claim_run_dir(out: Path, resume: bool, overwrite: bool, inputs: list[str]) -> None:
    """Make ``out`` this run's directory: a new run needs it empty (or ``overwrite`` of
    an earlier vlp run there); ``resume`` takes it as it is. Then the temporaries a killed
    run left in it are cleaned up.

    Args:
        out: ``train.out``.
        resume: continue the run in ``out``.
        overwrite: replace the run in ``out``.
        inputs: paths the run reads (``train.init``, data files): ``out`` may not be or
            hold one of them.

    Raises:
        VlpError: ``out`` holds something and neither ``resume`` nor ``overwrite`` was
            given; ``overwrite`` was given for a directory that is not a vlp run; or ``out``
            is or holds an input.
    """
    target = out.resolve()
    for src in (p for p in inputs if p):
        source = Path(src).resolve()
        if target == source or target in source.parents:
            raise VlpError(f"train.out: {out} {'is' if target == source else 'holds'} the "
                           f"input {src}; choose another train.out")
    if not resume and out.exists() and not (out.is_dir() and not any(out.iterdir())):
        if not out.is_dir():
            raise VlpError(f"train.out: {out} is a file; expected a run directory")
        if not overwrite:
            raise VlpError(f"train.out: {out} already holds a run; continue it with "
                           "--resume, replace it with --overwrite, or choose another train.out")
        if not _is_run(out):
            raise VlpError(f"train.out: {out} is not empty and is not a vlp run directory "
                           "(no checkpoints/history.json or run config.yaml); --overwrite "
                           "deletes runs only")
        shutil.rmtree(out)
    for directory in (out, out / "checkpoints"):
        remove_stale_temporaries(directory)


# settings that change what is shown or kept, not what is trained
_NOT_TRAINING = frozenset(f"train.{k}" for k in (
    "out", "progress", "tensorboard", "log_every", "save_every", "keep_checkpoints",
    "device", "verify_checkpoint")) | {"data.num_workers", "data.verify_features", "data.strict"}


def _flat_diff(before: dict[str, Any], after: dict[str, Any], prefix: str = ""
               ) -> dict[str, tuple[Any, Any]]:
    """``section.field`` → (before, after) for every leaf that differs."""
    diff: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict) and key != "weights":
            diff.update(_flat_diff(a, b, f"{name}."))
        elif a != b and not (isinstance(a, list) and isinstance(b, tuple) and list(b) == a):
            diff[name] = (a, b)
    return diff


def pretrain(cfg: PretrainConfig, resume: bool = False, overwrite: bool = False
             ) -> dict[str, float]:
    """Run pre-training from a config; returns held-out metrics."""
    return Pretrainer(cfg).run(resume=resume, overwrite=overwrite)


__all__ = ["Pretrainer", "claim_run_dir", "eval_keys", "load_pairs", "pretrain"]
