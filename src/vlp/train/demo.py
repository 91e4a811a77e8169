"""``vlp demo``: the whole path on the built-in world, on CPU, in minutes.

world (with its WordPiece vocabulary) → detector-like region features → the ablation: UNITER
(single-stream, regions), ViLBERT (two-stream, regions), ViLT (patches of the pixels) and
SOHO (a CNN grid with a visual dictionary), pre-trained with the same transformer, steps
and positions a batch → held-out accuracy of each objective against chance → zero-shot
retrieval → VQA fine-tuned on all four (and retrieval and visual entailment on ViLBERT)
from scratch and from the pre-trained model, side by side, with their curves as a PNG.

The schedule is sized for 2 CPU cores without fast bf16 (fp32): under 25 minutes in all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import multiprocessing as mp
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import torch

from vlp.data.visuals import RegionSource
from vlp.errors import is_strict, one_line_warnings, set_strict
from vlp.models import ModelConfig
from vlp.train.checkpoint import list_checkpoints
from vlp.train.config import (
    DataConfig,
    FinetuneConfig,
    ObjectivesConfig,
    PretrainConfig,
    TaskConfig,
    TrainConfig,
)
from vlp.train.finetune import build_finetuning, evaluate_model
from vlp.train.logging import plot_series, read_metrics
from vlp.train.pretrain import build_pretraining
from vlp.train.runtime import usable_cores

T = TypeVar("T")

# The four encoders the demo compares (configs/{uniter,vilbert,vilt,soho}_world.yaml): one
# transformer width and depth. ViLBERT is UNITER with the two-stream layout; ViLT reads the
# world's 64-pixel images as 4 × 4 patches (pre-LayerNorm, modality embeddings); SOHO a
# small CNN's 4 × 4 grid through a 256-entry visual dictionary. Small models trained from
# scratch: BERT's 0.02 initialisation and 0.1 dropout (made for 768-wide models started
# from a checkpoint) keep UNITER's [CLS] ITM at chance here; std 0.05 (about
# 0.8 / sqrt(width)) and no dropout let the region models ground after about 500 steps
# (docs/design.md, "Cross-modal grounding from scratch").
# UNITER pools with mean text ⊙ mean image ("product", ViLBERT's alignment head on one
# stream): after the demo's pre-training its [CLS] ignores the image; the product reads it
# from the first step, and VQA is 3.3 points higher from either start over 3 seeds
# (docs/design.md, "Single-stream pre-training that transfers").
_UNITER = ModelConfig(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024,
                      initializer_range=0.05, dropout=0.0)
MODELS = {
    "UNITER": dataclasses.replace(_UNITER, pooler="product"),
    "ViLBERT": dataclasses.replace(_UNITER, arch="two_stream", image_hidden_size=256,
                                   image_num_heads=4, image_intermediate_size=512,
                                   num_image_layers=2, num_cross_layers=2),
    "ViLT": dataclasses.replace(_UNITER, visual="patches", image_size=64, patch_size=16,
                                norm_first=True, modality_embed=True),
    "SOHO": dataclasses.replace(_UNITER, visual="grid", backbone="convnet", image_size=128,
                                vd_size=256, vd_momentum=0.99),
}
REGION_OBJECTIVES = ObjectivesConfig(weights={"mlm": 2.0, "mrfr": 1.0, "mrc_kl": 1.0,
                                              "itm": 2.0, "itc": 2.0})
# Every model's batches hold about the same number of positions (text + image tokens):
# 1536, which at 250 steps keeps the whole demo under 25 minutes on 2 cores in fp32.
# SOHO's budget counts each image once and its sampling makes four rows of it.
TOKEN_BUDGET = 1536


def demo_config(world: Path, out: Path, steps: int, model: str = "UNITER") -> PretrainConfig:
    """The demo's pre-training experiment for ``model`` (as ``configs/<model>_world.yaml``):
    the same transformer, schedule and positions a batch for all four; each model's own
    visual input, objectives and (pixels) augmentation. No progress bar: the demo runs
    stages side by side and prints each one's account when it ends."""
    data = DataConfig(world=str(world), eval_split="test", eval_pairs=500,
                      token_budget=TOKEN_BUDGET, max_text_len=40)
    objectives = REGION_OBJECTIVES
    if model == "ViLT":  # random resized crops, and mirrored images with "left" ↔ "right"
        data = dataclasses.replace(data, augment=True, crop_scale=[0.8, 1.0], flip="swap")
        objectives = ObjectivesConfig(weights={"mlm": 2.0, "itm": 2.0, "itc": 2.0})
    elif model == "SOHO":  # MLM + MVM + ITM summed, each image with 2 + 2 texts
        data = dataclasses.replace(data, token_budget=TOKEN_BUDGET // 4)
        objectives = ObjectivesConfig(weights={"mlm": 1.0, "mvm": 1.0, "itm": 1.0},
                                      mix="sum", sampling="soho")
    return PretrainConfig(
        model=MODELS[model], data=data, objectives=objectives,
        train=TrainConfig(out=str(out), steps=steps, lr=3e-4, warmup_steps=steps // 10,
                          save_every=max(1, steps // 3), log_every=10, progress=False),
    )


def finetune_config(world: Path, out: Path, task: str, init: Path | None, steps: int,
                    labelled: int, model: str = "UNITER", eval_limit: int = 500,
                    evals: int = 3) -> FinetuneConfig:
    """A demo fine-tuning run: ``labelled`` training records, ``steps`` steps, evaluated
    on the validation split every ``steps // evals`` steps (as ``configs/vqa_world.yaml``).

    The learning rate is the one that suits both starts on the world's VQA: 3e-4 (at 1e-4
    the scratch and pre-trained runs are both still climbing after 300 steps). VQA needs
    300 steps: after 150 every start still answers the prior.
    """
    return FinetuneConfig(
        model=MODELS[model],
        data=DataConfig(world=str(world), token_budget=0, batch_size=32, max_text_len=40),
        task=TaskConfig(name=task, train_limit=labelled, eval_limit=eval_limit),
        train=TrainConfig(out=str(out), init=str(init) if init else "", steps=steps, lr=3e-4,
                          warmup_steps=steps // 10, save_every=0, log_every=10,
                          eval_every=max(1, steps // evals), progress=False),
    )


def _stage(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def _done(start: float) -> None:
    print(f"   ({time.perf_counter() - start:.0f} s)", flush=True)


def prepare_world(root: Path, images: int) -> Path:
    """Make the world, its region features and its vocabulary (each step skipped if done).

    The directory is named after the generator version, so a demo directory from an older
    vlp is never mixed with a newer world.
    """
    from vlp.world.detector import build_world_features
    from vlp.world.make import make_world, write_vocabulary
    from vlp.world.vocab import GENERATOR_VERSION

    world = root / f"world_v{GENERATOR_VERSION}"
    if not (world / "world.json").is_file():
        t = _stage(f"world: {images} synthetic scenes, COCO / Karpathy / VQA / SNLI-VE / "
                   "NLVR2 / RefCOCO / VCR formats")
        make_world(world, images, seed=0, workers=2)
        _done(t)
    if not (world / "features" / "meta.json").is_file():
        t = _stage("region features: training the world's region classifier, then detecting")
        build_world_features(world)
        _done(t)
    if not (world / "vocab.txt").is_file():  # a world made before vlp world make wrote it
        t = _stage("tokenizer: WordPiece on the training captions, questions and hypotheses")
        tok = write_vocabulary(world)
        print(f"   {tok.vocab_size} WordPieces")
        _done(t)
    return world


def _loss_table(run: Path) -> list[str]:
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    keys = sorted({k for r in rows for k in r if k.startswith("loss/")})
    lines = [f"   {'objective':10s} {'first 10 %':>11s} {'last 10 %':>10s}"]
    for key in keys:
        values = [r[key] for r in rows if key in r]
        k = max(1, len(values) // 10)
        first, last = sum(values[:k]) / k, sum(values[-k:]) / k
        lines.append(f"   {key[5:]:10s} {first:11.3f} {last:10.3f}")
    return lines


@dataclasses.dataclass(frozen=True)
class DemoTask:
    """One downstream task of the demo, fine-tuned from scratch and from pre-training."""

    name: str
    labelled: int  # training records (retrieval: images, 5 captions each)
    steps: int
    metric: str  # the table's column
    models: tuple[str, ...]
    eval_limit: int = 500  # validation records (retrieval: images ranked, × 5 captions)
    evals: int = 3  # evaluations during training (for the curves)


DEMO_TASKS = (
    DemoTask("vqa", 1000, 300, "vqa_acc", ("UNITER", "ViLBERT", "ViLT", "SOHO")),
    # ranking by the ITM cross-encoder scores every image with every caption: 40 × 200 pairs
    DemoTask("retrieval", 600, 100, "retrieval/r_mean", ("ViLBERT",), eval_limit=40, evals=1),
    DemoTask("ve", 3000, 100, "ve_acc", ("ViLBERT",), evals=2),
)


def run_demo(root: Path, images: int = 3000, steps: int = 250,
             tasks: tuple[DemoTask, ...] = DEMO_TASKS,
             models: tuple[str, ...] = tuple(MODELS)) -> dict[str, float]:
    """Run the demo under ``root``; returns the final held-out and fine-tuned metrics.

    ``models``: which of :data:`MODELS` to pre-train (every task's models among them)."""
    world = prepare_world(root, images)
    results: dict[str, float] = {}
    pretrained = {}
    workers, threads = stage_workers()
    print(f"\n   stages run {workers} at a time, {threads} thread(s) each; each one prints "
          "what it did when it ends", flush=True)
    with _pool(workers, threads) as pool:
        pretraining = {model: pool.submit(_captured, pretrain_stage, world,
                                          root / f"pretrain_{model.lower()}", steps, model)
                       for model in models}
        for model in models:
            out = pretrained[model] = _printed(pretraining[model])
            if "itc" not in demo_config(world, out, steps, model).objectives.weights:
                print(f"\n   (no zero-shot retrieval for {model}: it learns no ITC embeddings)")
                continue
            results.update({f"{model}/{k}": v for k, v in
                            zero_shot_stage(world, out, root / f"zero_shot_{model.lower()}",
                                            model).items()})
        runs = []
        for task in tasks:
            for model in task.models:
                for start, init in (("scratch", None), ("pre-trained", pretrained[model])):
                    out = root / f"{task.name}_{model.lower()}_{start.replace('-', '')}"
                    title = (f"fine-tuning {task.name} on {model} from {start}: "
                             f"{task.labelled} labelled records, {task.steps} steps")
                    cfg = finetune_config(world, out, task.name, init, task.steps,
                                          task.labelled, model, task.eval_limit, task.evals)
                    runs.append((task, model, start, out,
                                 pool.submit(_captured, _finetune_stage, title, cfg, out)))
        curves: dict[str, list[tuple[float, float]]] = {}
        scores: dict[tuple[str, str], list[float]] = {}
        for task, model, start, out, job in runs:
            metrics = _printed(job)
            scores.setdefault((task.name, model), []).append(metrics[task.metric])
            results[f"{task.name}/{model}/{start}"] = metrics[task.metric]
            curves[f"{task.name}: {model} {start}"] = [
                (r["step"], r[f"eval/{task.metric}"])
                for r in read_metrics(out / "metrics.jsonl") if f"eval/{task.metric}" in r]
    table = [(task.name, model, task.metric, scores[task.name, model][0],
              scores[task.name, model][1]) for task in tasks for model in task.models]
    print("\n== fine-tuned, validation split (same model, steps and labelled records)")
    print(f"   {'task':9s} {'model':8s} {'input':8s} {'metric':16s} {'scratch':>9s} "
          f"{'pre-trained':>12s}")
    for name, model, metric, scratch, pre in table:
        print(f"   {name:9s} {model:8s} {MODELS[model].visual:8s} {metric:16s} {scratch:9.2f} "
              f"{pre:12.2f}")
    png = plot_series(curves, root / "finetune_curves.png", "fine-tuning",
                      panels={task.name: [k for k in curves if k.startswith(f"{task.name}: ")]
                              for task in tasks})
    print(f"\n   fine-tuning curves: {png}")
    return results


def stage_workers() -> tuple[int, int]:
    """How many demo stages run at once and with how many threads each: two (a pair of
    fine-tuning runs, two pre-trainings) on two or more cores, the cores shared. On 2
    cores, two one-thread runs do 1.5-2.3 times the work of one two-thread run at this
    model size (small matrices leave the second thread idle)."""
    cores = usable_cores()
    workers = 2 if cores >= 2 else 1
    return workers, max(1, cores // workers)


@contextlib.contextmanager
def _pool(workers: int, threads: int) -> Iterator[ProcessPoolExecutor]:
    """Worker processes for the demo's stages, set up as the ``vlp`` command is (threads,
    ``--strict``, one-line data warnings). A failed or interrupted stage stops the demo at
    once: stages not started are cancelled and the workers stopped."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                               initializer=_worker_setup, initargs=(threads, is_strict()))
    parent_threads = torch.get_num_threads()
    torch.set_num_threads(threads)  # the zero-shot stages run here beside a worker
    try:
        yield pool
    except BaseException:
        running = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in running:
            process.terminate()  # a running stage resumes from its checkpoint next time
        raise
    else:
        pool.shutdown()
    finally:
        torch.set_num_threads(parent_threads)


def _worker_setup(threads: int, strict: bool) -> None:
    torch.set_num_threads(threads)
    set_strict(strict)
    one_line_warnings()


def _captured(stage: Callable[..., T], *args: Any) -> tuple[str, T]:
    """Run a stage in a worker, keeping what it prints (stdout and stderr, in order) for
    the parent to print in the demo's order when the stage ends; a stage that fails
    prints what it printed at once, then its error goes to the parent."""
    text = io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
        try:
            result = stage(*args)
        except BaseException:
            if sys.__stdout__ is not None:
                sys.__stdout__.write(text.getvalue())
                sys.__stdout__.flush()
            raise
    return text.getvalue(), result


def _printed(job: Future[tuple[str, T]]) -> T:
    """Wait for a stage, print what it printed, return its result."""
    text, result = job.result()
    sys.stdout.write(text)
    sys.stdout.flush()
    return result


def _finetune_stage(title: str, cfg: FinetuneConfig, out: Path) -> dict[str, float]:
    t = _stage(title)
    metrics = _finetune(cfg, out)
    _done(t)
    return metrics


def _finetune(cfg: FinetuneConfig, out: Path) -> dict[str, float]:
    """Fine-tune, or read back a finished run's metrics (a re-run demo skips it)."""
    done = out / f"metrics_{cfg.data.eval_split}.json"
    if done.is_file():
        return dict(json.loads(done.read_text(encoding="utf-8")))
    run = build_finetuning(cfg)
    run.trainer.run(**_resume_or_restart(out))
    return run.write_results()


def _resume_or_restart(out: Path) -> dict[str, bool]:
    """A stage the demo began continues from its checkpoint; one stopped before its first
    checkpoint starts again (the demo owns its run directories)."""
    resume = bool(list_checkpoints(out / "checkpoints"))
    return {"resume": resume, "overwrite": not resume}


def pretrain_stage(world: Path, out: Path, steps: int, model: str) -> Path:
    """Pre-train (or resume) and print losses and held-out accuracy against chance."""
    cfg = demo_config(world, out, steps, model)
    what = {"regions": "region features", "patches": "image patches",
            "grid": "a CNN grid"}[cfg.model.visual]
    budget = TOKEN_BUDGET if cfg.objectives.sampling == "soho" else cfg.data.token_budget
    t = _stage(f"pre-training a {cfg.model.num_layers}-layer {model} on {what} for {steps} "
               f"steps (dynamic batches of ≤{budget} positions)")
    trainer = build_pretraining(cfg)
    data = trainer.parts.data
    before = trainer.evaluate()
    after = trainer.run(**_resume_or_restart(out))
    _done(t)
    print("\n== per-objective training loss (mean of the first and last 10 % of logged steps)")
    print("\n".join(_loss_table(out)))
    print(f"\n== held-out ({cfg.data.eval_split} split, {len(data.held_out)} pairs)")
    print(f"   {'metric':10s} {'untrained':>10s} {'pre-trained':>12s} {'chance':>8s}")
    chance = {"mlm": 1.0 / data.tokenizer.vocab_size, "itm": 0.5, "itc": 5 / 64}  # 5 an image in 64
    if isinstance(data.visuals, RegionSource):
        chance["mrc_kl"] = 1.0 / data.visuals.store.num_classes
    if cfg.model.vd_size:  # one of the entries present in the image, at best 1 / k
        chance["mvm"] = 1.0 / cfg.model.vd_size
    for name, p in chance.items():
        key = f"eval/{name}_acc"
        if key in after:
            print(f"   {name + ' acc':10s} {before[key]:10.3f} {after[key]:12.3f} {p:8.3f}")
    print(f"\n   curves: {out / 'losses.png'}; log: {out / 'metrics.jsonl'}")
    return out


def zero_shot_stage(world: Path, pretrained: Path, out: Path, model: str) -> dict[str, float]:
    """Zero-shot retrieval on the test split with the pre-trained dual-encoder (ITC)."""
    t = _stage(f"zero-shot retrieval with {model}: 100 test images × their 500 captions, "
               "ranked by the pre-trained ITC embeddings (no fine-tuning)")
    cfg = finetune_config(world, out, "retrieval", pretrained, 0, 0, model)
    cfg = dataclasses.replace(
        cfg, task=dataclasses.replace(cfg.task, options={"rank": "itc"}, eval_limit=100),
        data=dataclasses.replace(cfg.data, eval_split="test"),
        train=dataclasses.replace(cfg.train, tensorboard=False))
    metrics = evaluate_model(cfg)
    _done(t)
    chance = {1: 1.0, 5: 5.0, 10: 10.0}
    print(f"   {'recall':8s} {'text→image':>11s} {'image→text':>11s} {'chance (t→i)':>13s}")
    for k, p in chance.items():
        print(f"   R@{k:<6d} {metrics[f'retrieval/t2i_r{k}']:11.1f} "
              f"{metrics[f'retrieval/i2t_r{k}']:11.1f} {p:13.1f}")
    return {f"zero_shot/{k}": v for k, v in metrics.items()}
