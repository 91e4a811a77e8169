"""The one training loop, and the parts it is built from.

A run is a :class:`LossModel` (an encoder with its objectives, or with a task head),
batches named by :class:`BatchKey`, a schedule, and an evaluation. Pre-training
(:mod:`vlp.train.pretrain`) and fine-tuning (:mod:`vlp.train.finetune`) build those
:class:`Parts` differently; :class:`Trainer` runs any of them with AMP, gradient
accumulation, DDP, checkpoints and exact resume. It never names an objective: those
that rebuild their batch with the model do it through ``Parts.prepare``.

The loop, top to bottom (:meth:`Trainer._loop`)::

    for key, batch in loader(keys):                   # resumable sampler → keyed batches
        batch = prepare(model, key, batch)            # e.g. hard negatives, in eval mode
        loss = model(batch, key.objectives).loss      # under autocast, / grad_accum
        loss.backward()
        every grad_accum micro-steps: clip, optimizer, schedule, step += 1
        log / evaluate / save when their intervals say
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sized
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from vlp.config import dump_config, read_yaml, to_dict
from vlp.data.batch import Batch, describe_images
from vlp.data.pretrain import BatchKey, PretrainKeySampler, unwrap
from vlp.data.tokenizer import Tokenizer
from vlp.data.visuals import Visuals
from vlp.errors import VlpError
from vlp.fileio import write_text_atomic
from vlp.models.visual import GridInput
from vlp.objectives.loss_model import LossModel, LossOutput
from vlp.tasks.config import upgrade_run_config
from vlp.train.checkpoint import (
    check_checkpoint,
    list_checkpoints,
    load_state,
    load_weights,
    save_checkpoint,
    verify_checkpoint,
)
from vlp.train.config import RunConfig
from vlp.train.logging import MetricsLog, read_metrics
from vlp.train.rundir import (
    claim_run_dir,
    config_changes,
    keep_data_checksums,
    keep_vocabulary,
    portable_config,
    read_vocabulary,
)
from vlp.train.runtime import (
    Env,
    autocast,
    compile_layers,
    make_optimizer,
    maybe_no_sync,
    warmup_linear,
)

Prepare = Callable[[LossModel, BatchKey, Batch], Batch]
Plot = Callable[[list[dict[str, Any]], Path], Path]


class Evaluation(Protocol):
    """Held-out metrics of a model: called in scoring mode (eval, no gradient, the run's
    precision) with the step, for messages; returns ``eval/<name>`` → value."""

    def __call__(self, model: LossModel, step: int) -> dict[str, float]: ...


@dataclass
class RunData:
    """What a run reads, for those who inspect it (the demo, tests).

    Attributes:
        tokenizer: text → token ids.
        visuals: the images (regions or pixels).
        train: the training rows (pairs, or a task's training split).
        held_out: the rows evaluated.
    """

    tokenizer: Tokenizer
    visuals: Visuals
    train: Sized
    held_out: Sized


@dataclass
class Parts:
    """Everything that differs between two kinds of run.

    Attributes:
        cfg: the run's config, resolved (sizes from the data, the precision that runs).
        model: encoder and objectives (or task head), on the run's device.
        batches: a dataset addressed by :class:`BatchKey` → ``(key, batch)``.
        keys: the resumable sampler of training keys.
        evaluate: the held-out evaluation.
        data: what the run reads.
        stage: the progress bar's label.
        plot_name: the PNG of the run's curves, written at the end of the run.
        plot: (metric rows, PNG path) → the PNG path.
        inputs: paths the run reads (``train.out`` may not be or hold one).
        prepare: rebuilds a training batch with the model before its step (in scoring
            mode), or None.
        notes: what the run's start loaded (``--init``, ``--init-text``), for its summary.
    """

    cfg: RunConfig
    model: LossModel
    batches: Dataset[tuple[BatchKey, Batch]]
    keys: PretrainKeySampler
    evaluate: Evaluation
    data: RunData
    stage: str
    plot_name: str
    plot: Plot
    inputs: list[str] = field(default_factory=list)
    prepare: Prepare | None = None
    notes: list[str] = field(default_factory=list)


@contextmanager
def scoring(model: nn.Module, device: torch.device, precision: str) -> Iterator[None]:
    """``model`` as it scores rather than trains: eval mode (no dropout), no gradient, the
    run's precision; training mode comes back afterwards, whatever happens."""
    model.eval()
    try:
        with torch.no_grad(), autocast(device, precision):
            yield
    finally:
        model.train()


class Trainer:
    """Trains :class:`Parts` to ``train.steps`` optimizer steps.

    Attributes:
        model: the :class:`LossModel` trained (its encoder is ``model.encoder``).
        step: optimizer steps taken.
        finished: a resumed run that had already reached ``train.steps``.
    """

    def __init__(self, parts: Parts, env: Env) -> None:
        self.parts, self.env = parts, env
        self.cfg = parts.cfg
        self.model = parts.model.to(env.device)
        self.compiled = compile_layers(self.model) if self.cfg.train.compile else 0
        self.keys = parts.keys
        self.out = Path(self.cfg.train.out)
        # what config.yaml records: absolute paths, the run's own vocabulary
        self.record = portable_config(self.cfg, self.out)
        self._vocab = read_vocabulary(self.cfg.data.vocab)  # before --overwrite clears out
        t = self.cfg.train
        # one objective per batch leaves the other heads unused on that step
        self._ddp: nn.Module = (DistributedDataParallel(self.model, find_unused_parameters=True)
                                if env.world_size > 1 else self.model)
        self.optimizer = make_optimizer(self.model, t.lr, t.weight_decay, t.betas)
        self.scheduler = warmup_linear(self.optimizer, t.warmup_steps, t.steps)
        self.scaler = torch.amp.GradScaler(
            enabled=t.precision == "fp16" and env.device.type == "cuda")
        self.finite = FiniteLossCheck(defer=env.device.type == "cuda")
        self.step = 0
        self.finished = False
        # sampler position of the last batch consumed: the loader's workers read ahead,
        # so the sampler's own position is not what a checkpoint must record
        self.consumed = self.keys.state_dict()

    @property
    def rank(self) -> int:
        return self.env.rank

    @property
    def device(self) -> torch.device:
        return self.env.device

    def scoring(self) -> AbstractContextManager[None]:
        """The model in scoring mode (see :func:`scoring`)."""
        return scoring(self.model, self.env.device, self.cfg.train.precision)

    # ------------------------------------------------------------------ the run
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

        def record_inputs() -> None:
            keep_vocabulary(self._vocab, self.out, resume, self.cfg.data.vocab)
            keep_data_checksums(self.cfg, self.out, resume)

        self._on_rank0(record_inputs)
        log = MetricsLog(self.out, self.step, self.cfg.train.tensorboard and self.rank == 0,
                         enabled=self.rank == 0)
        if self.rank == 0:
            write_text_atomic(self.out / "config.yaml", dump_config(self.record))
            if self.cfg.train.progress:
                print("\n".join(self.summary()), flush=True)
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

    def summary(self) -> list[str]:
        """The run's start-up lines: what it reads, the model, where it runs, what was
        loaded, and a ``warning:`` line for each part of the schedule that cannot do what
        it says."""
        c, data = self.cfg, self.parts.data
        m = c.model
        params = sum(p.numel() for p in self.model.parameters())
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        width = f"{m.num_layers} × {m.hidden_size} ({m.num_heads} heads)"
        if m.arch == "two_stream":
            image = m.image_hidden_size or m.hidden_size
            width += (f", image stream {m.num_image_layers} × {image}, "
                      f"{m.num_cross_layers} co-attention")
        start = f" (from step {self.step})" if self.step else ""
        lines = [
            f"{self.parts.stage}: {c.train.out}{start}",
            f"  data: {len(data.train)} training rows{_images(data.train)} (split(s) "
            f"{', '.join(c.data.train_splits)}{_source(c)}), {len(data.held_out)} held out "
            f"(split {c.data.eval_split}); images from {data.visuals.source}",
            f"  model: {m.arch}, {width}, visual input {m.visual}; {params / 1e6:.2f} M "
            f"parameters ({trainable / 1e6:.2f} M trained)",
            f"  running: {self.env.device}, {self.env.precision}, "
            + (f"{self.compiled} layers compiled, " if self.compiled else "")
            + f"{torch.get_num_threads()} threads, {self.env.world_size} process(es); "
            f"{c.train.steps} steps, lr {c.train.lr:g}, warm-up {c.train.warmup_steps}",
            *(f"  {note}" for note in self.parts.notes),
        ]
        return lines + [f"warning: {w}" for w in schedule_warnings(c)]

    def _loop(self, log: MetricsLog) -> None:
        t = self.cfg.train
        bar = tqdm(total=t.steps, initial=self.step, desc=self.parts.stage, dynamic_ncols=True,
                   disable=not t.progress or self.rank != 0)
        window = _Window()
        micro = 0
        self.model.train()
        while self.step < t.steps:
            for key, batch in self._batches():
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
        self.finite.flush()
        bar.close()

    def _batches(self) -> Iterator[tuple[BatchKey, Batch]]:
        """The loader's batches. A loader worker's :class:`VlpError` (a missing or broken
        image) comes back as torch wraps it — "Caught VlpError in DataLoader worker process
        N. Original Traceback …" — and is raised again as its own one line."""
        try:
            yield from self._loader()
        except VlpError as err:
            text = str(err)
            if "Original Traceback" not in text:
                raise
            raise VlpError(text.rsplit("VlpError: ", 1)[-1].strip()) from None

    def _loader(self) -> DataLoader[tuple[BatchKey, Batch]]:
        # a private generator keeps the loader from drawing on the global RNG, which
        # must advance identically in an uninterrupted and a resumed run (dropout)
        return DataLoader(self.parts.batches, batch_sampler=self.keys,  # type: ignore[arg-type]
                          collate_fn=unwrap, num_workers=self.cfg.data.num_workers,
                          pin_memory=self.env.device.type == "cuda",  # Batch.pin_memory
                          generator=torch.Generator().manual_seed(0))

    def _micro_step(self, key: BatchKey, batch: Batch, window: _Window, sync: bool) -> None:
        self._freeze_backbones()
        batch = batch.to(self.env.device)
        if self.parts.prepare is not None:
            with self.scoring():
                batch = self.parts.prepare(self.model, key, batch)
        with maybe_no_sync(self._ddp, not sync), \
                autocast(self.env.device, self.cfg.train.precision):
            out: LossOutput = self._ddp(batch, key.objectives)
            loss = out.loss / self.cfg.train.grad_accum
        self.finite.push(self.step + 1, out, batch)
        self.scaler.scale(loss).backward()
        window.add(out, batch.size)

    def _freeze_backbones(self) -> None:
        """SOHO's warm start: every CNN backbone stays as loaded for the first
        ``train.freeze_backbone_steps`` steps — no gradient, no weight decay, BatchNorm
        statistics kept (eval mode) — and trains with the rest after them."""
        steps = self.cfg.train.freeze_backbone_steps
        if steps == 0:
            return
        trainable = self.step >= steps
        for module in self.model.modules():
            if isinstance(module, GridInput) and module.backbone_trainable != trainable:
                module.set_backbone_trainable(trainable)

    def _optimizer_step(self, key: BatchKey) -> None:
        self.scaler.unscale_(self.optimizer)
        if self.cfg.train.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.consumed = {"epoch": key.epoch, "position": key.position,
                         "seed": self.cfg.train.seed}

    def _after_step(self, log: MetricsLog, window: _Window, bar: tqdm) -> None:
        t = self.cfg.train
        logs = self.step % t.log_every == 0 or self.step == t.steps
        evaluates = bool(t.eval_every) and self.step % t.eval_every == 0 and self.step < t.steps
        saves = bool(t.save_every) and self.step % t.save_every == 0 and self.step < t.steps
        if logs or evaluates or saves:
            self.finite.flush()  # no log line, evaluation or checkpoint after a NaN loss
        if logs:
            row = window.flush()
            row["lr"] = float(self.scheduler.get_last_lr()[0])
            bar.set_postfix(loss=f"{row['loss']:.3f}", sps=f"{row['samples_per_s']:.0f}")
            if self.rank == 0:
                log.log(self.step, row)
        if evaluates:
            metrics = self.evaluate()
            if self.rank == 0:
                log.log(self.step, metrics)
        if saves:
            self.save()

    def evaluate(self) -> dict[str, float]:
        """The held-out metrics now (the global RNG is left as it was)."""
        rng_state = torch.get_rng_state()
        with self.scoring():
            metrics = self.parts.evaluate(self.model, self.step)
        torch.set_rng_state(rng_state)
        return metrics

    def plot(self) -> Path:
        """The run's PNG of its curves."""
        return self.parts.plot(read_metrics(self.out / "metrics.jsonl"),
                               self.out / self.parts.plot_name)

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
        """Write a checkpoint (rank 0 only); never one of non-finite weights (every rank
        checks its copy, the same under DDP, so all stop together)."""
        self._check_finite_weights()
        if self.rank != 0:
            return None
        return save_checkpoint(self.out / "checkpoints", self.step, self.model, self.state(),
                               dump_config(self.record), self.cfg.train.keep_checkpoints)

    def _check_finite_weights(self) -> None:
        """Stop before a checkpoint of NaN or inf weights is written."""
        for name, param in self.model.named_parameters():
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
        saved = upgrade_run_config(read_yaml(found[-1] / "config.yaml"))
        changes = config_changes(saved, to_dict(self.record), found[-1] / "config.yaml")
        load_weights(self.model, found[-1])
        self._load_state(load_state(found[-1]))
        self._apply_optimisation_settings()
        if self.rank == 0 and changes:
            if self.finished:
                print(f"resume: the run finished at step {self.step}; nothing to apply "
                      f"({', '.join(changes)} changed; raise train.steps to train on)")
            for key, (was, now) in changes.items() if not self.finished else ():
                print(f"resume: {key} {was!r} -> {now!r} (applied from step {self.step})")
        return True

    def _load_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.finished = bool(state.get("finished", False)) and self.step >= self.cfg.train.steps
        # the kernel vlp builds now, whatever the saved groups recorded (torch places each
        # parameter's step count by the saved flag: a CPU step beside a fused CUDA kernel
        # fails)
        saved = state["optimizer"]
        for group in saved["param_groups"]:
            for kernel in ("fused", "foreach"):
                group[kernel] = self.optimizer.defaults.get(kernel)
        self.optimizer.load_state_dict(saved)
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.keys.load_state_dict(state["sampler"])
        self.consumed = dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        if self.step > self.cfg.train.steps:
            raise VlpError(f"train.steps: {self.cfg.train.steps} is below step {self.step}, "
                           f"which the run in {self.out} has reached")

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

    def _claim(self, resume: bool, overwrite: bool) -> None:
        """Rank 0 claims ``train.out``; the other ranks wait for it and stop with it."""
        self._on_rank0(lambda: claim_run_dir(self.out, resume, overwrite, self.parts.inputs))

    def _on_rank0(self, work: Callable[[], object]) -> None:
        """Run ``work`` on rank 0 alone; every rank waits for it and, if it raised (a
        refused ``train.out``, data changed under ``--strict``, an unwritable file), stops
        too, naming rank 0's error, instead of waiting in its first collective."""
        error: Exception | None = None
        if self.rank == 0:
            try:
                work()
            except Exception as err:  # the others must not wait for rank 0: they stop too
                error = err
        if self.env.world_size > 1:
            box = [None if error is None else str(error)]
            torch.distributed.broadcast_object_list(box, src=0)
            if self.rank != 0 and box[0] is not None:
                raise VlpError(f"rank 0 stopped: {box[0]}")
        if error is not None:
            raise error

    def _final_metrics(self) -> dict[str, float] | None:
        """The held-out metrics a finished run logged at its last step (None if it was
        stopped before logging them: then they are computed again)."""
        rows = [r for r in read_metrics(self.out / "metrics.jsonl")
                if r.get("step") == self.step and any(k.startswith("eval/") for k in r)]
        if not rows:
            return None
        if self.rank == 0 and not (self.out / self.parts.plot_name).is_file():
            self.plot()  # stopped between the last checkpoint and the plot
        return {k: float(v) for k, v in rows[-1].items() if k.startswith("eval/")}


class _Window:
    """Running sums of losses, accuracy counts and samples between two log lines.

    The sums stay where the losses are (on an accelerator, the device): adding a step's
    losses does not wait for the device; :meth:`flush` reads them, once a log line.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}
        self.correct: dict[str, Tensor] = {}
        self.total: dict[str, float] = {}
        self.samples = 0
        self.start = time.perf_counter()

    def add(self, out: LossOutput, batch_size: int) -> None:
        self.samples += batch_size
        for name, value in {"loss": out.loss, **out.losses}.items():
            key = name if name == "loss" else f"loss/{name}"
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] = self.counts.get(key, 0) + 1
        for name, correct in out.correct.items():
            right = correct.detach().float()
            self.correct[name] = self.correct[name] + right if name in self.correct else right
            self.total[name] = self.total.get(name, 0.0) + out.count[name]

    def flush(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        row = {k: float(self.sums[k]) / self.counts[k] for k in self.sums}
        row.update({f"{k}_acc": float(self.correct[k]) / max(self.total[k], 1.0)
                    for k in self.correct})
        row["samples_per_s"] = self.samples / elapsed
        self.reset()
        return row


# a micro-step's check not yet read: step, its losses, the batch's ids, the losses' host
# copy and the CUDA event after the copy (None off CUDA, where the copy is done at once)
_Pending = tuple[int, LossOutput, Batch, Tensor, "torch.cuda.Event | None"]


class FiniteLossCheck:
    """A training loss must be finite: else one line naming the step, the objective and
    the batch's images (:func:`check_finite_loss`).

    Reading a loss on the host waits for the device to compute it. With ``defer`` (CUDA),
    each micro-step's losses are copied to the host as the device gets to them and read
    at the next micro-step, log line, evaluation, checkpoint or the end of the run: the
    host never waits for the step it is queuing. The step whose loss was not finite has
    then updated the weights; nothing is logged, evaluated or saved after it. Without
    ``defer`` (the CPU, where reading costs nothing) each loss is read at once and a NaN
    one never reaches the weights.
    """

    def __init__(self, defer: bool) -> None:
        self.defer = defer
        self._pending: _Pending | None = None

    def push(self, step: int, out: LossOutput, batch: Batch) -> None:
        """Check the loss of a micro-step of ``step`` (now, or once the next comes)."""
        if not self.defer:
            check_finite_loss(step, out, batch)
            return
        values = torch.stack([out.loss.detach().float(),
                              *(v.detach().float() for v in out.losses.values())])
        host = values.to("cpu", non_blocking=True)
        done = None
        if values.is_cuda:  # marks when the copy has landed, on the stream that makes it
            done = torch.cuda.Event()
            done.record(torch.cuda.current_stream(values.device))
        # what the message needs, not the graph or the batch's features
        kept = LossOutput(out.loss.detach(), {k: v.detach() for k, v in out.losses.items()})
        named = Batch(input_ids=batch.input_ids, text_mask=batch.text_mask,
                      image_ids=batch.image_ids)
        previous, self._pending = self._pending, (step, kept, named, host, done)
        if previous is not None:
            self._check(previous)

    def flush(self) -> None:
        """Check the micro-step still pending, if any."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self._check(pending)

    @staticmethod
    def _check(pending: _Pending) -> None:
        step, out, batch, host, done = pending
        if done is not None:
            done.synchronize()  # long done by now: the device is a step further on
        if not all(math.isfinite(v) for v in host.tolist()):
            check_finite_loss(step, out, batch)


def _images(rows: Sized) -> str:
    ids = getattr(rows, "image_ids", None)
    return f" of {len(set(ids))} images" if ids is not None else ""


def _source(cfg: RunConfig) -> str:
    task = getattr(cfg, "task", None)
    if task is not None:
        return f", task {task.name}"
    files = list(cfg.data.split_files.values()) or [cfg.data.captions]
    return f", from {', '.join(f for f in files if f)}" if any(files) else ""


def schedule_warnings(cfg: RunConfig) -> list[str]:
    """What the schedule of ``cfg`` cannot do as it says (each a sentence naming the
    fields)."""
    t, out = cfg.train, []
    if t.steps and t.warmup_steps >= t.steps:
        out.append(f"train.warmup_steps {t.warmup_steps} ≥ train.steps {t.steps}: the learning "
                   f"rate never reaches train.lr {t.lr:g}")
    if t.steps and t.save_every > t.steps:
        out.append(f"train.save_every {t.save_every} > train.steps {t.steps}: the only "
                   "checkpoint is the final one")
    objectives = getattr(cfg, "objectives", None)  # pre-training runs only
    weights = getattr(objectives, "weights", None)
    mix = getattr(objectives, "mix", "sum")
    if getattr(objectives, "masking", "") == "joint" and mix == "sample":
        out.append("objectives.masking: joint, but with mix: sample each batch serves one "
                   "objective and masks one modality, so joint and conditional masking make "
                   "the same batches (mix: sum masks both in one batch)")
    if weights and mix == "sample" and t.steps:
        total = sum(weights.values())
        rare = [n for n, w in weights.items() if w / total * t.steps < 1]
        if rare:
            out.append(f"objectives.weights: {', '.join(rare)} expect fewer than one batch in "
                       f"{t.steps} steps (mix: sample draws one objective a batch)")
    return out


def mean_losses(outputs: Iterator[tuple[LossOutput, int]]) -> dict[str, float]:
    """Mean losses and accuracies over ``(output, batch size)`` pairs, as logged."""
    window = _Window()
    for out, size in outputs:
        window.add(out, size)
    row = window.flush()
    return {k: v for k, v in row.items() if k not in ("samples_per_s", "loss")}


def check_finite_loss(step: int, out: LossOutput, batch: Batch) -> None:
    """A training loss must be finite: else one line naming the step, the objective and
    the batch's images."""
    value = float(out.loss.detach())
    if math.isfinite(value):
        return
    bad = [n for n, v in out.losses.items() if not math.isfinite(float(v.detach()))]
    raise VlpError(f"step {step}: loss is {value} (objective {', '.join(bad) or '?'}, "
                   f"{describe_images(batch)}); lower train.lr, check the features, or resume "
                   "from the last checkpoint")


def check_finite_eval(step: int, out: LossOutput, batch: Batch) -> None:
    """Held-out losses must be finite: NaN metrics are an error naming the images."""
    values = {"loss": out.loss, **out.losses}
    bad = [n for n, v in values.items() if not math.isfinite(float(v.detach()))]
    if bad:
        raise VlpError(f"step {step}: held-out {bad[-1]} is not finite "
                       f"({describe_images(batch)}); check their features; nothing was saved")


__all__ = ["Evaluation", "FiniteLossCheck", "Parts", "RunData", "Trainer", "check_finite_eval",
           "check_finite_loss", "mean_losses", "scoring"]
