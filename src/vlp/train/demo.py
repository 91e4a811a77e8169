"""``vlp demo``: the whole path on the built-in world, on CPU, in minutes.

world → detector-like region features → WordPiece vocabulary → UNITER-style
pre-training → held-out MLM / ITM / MRC accuracy against chance, and loss curves.
"""

from __future__ import annotations

import time
from pathlib import Path

from vlp.data.readers import read_karpathy
from vlp.data.tokenizer import Tokenizer
from vlp.models import ModelConfig
from vlp.train.config import DataConfig, ObjectivesConfig, PretrainConfig, TrainConfig
from vlp.train.logging import read_metrics
from vlp.train.pretrain import Pretrainer


def demo_config(world: Path, out: Path, steps: int) -> PretrainConfig:
    """The demo's pre-training experiment (same as ``configs/uniter_world.yaml``)."""
    return PretrainConfig(
        model=ModelConfig(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024),
        data=DataConfig(world=str(world), eval_split="test", eval_pairs=1000,
                        token_budget=3072, max_text_len=40),
        objectives=ObjectivesConfig(weights={"mlm": 2.0, "mrfr": 1.0, "mrc_kl": 1.0,
                                             "itm": 2.0}),
        train=TrainConfig(out=str(out), steps=steps, lr=3e-4, warmup_steps=steps // 10,
                          save_every=max(1, steps // 3), log_every=10),
    )


def _stage(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def _done(start: float) -> None:
    print(f"   ({time.perf_counter() - start:.0f} s)", flush=True)


def prepare_world(root: Path, images: int) -> Path:
    """Make the world, its region features and its vocabulary (each step skipped if done)."""
    from vlp.data.detector import build_world_features
    from vlp.data.world import make_world

    world = root / "world"
    if not (world / "world.json").is_file():
        t = _stage(f"world: {images} synthetic scenes, COCO / Karpathy formats")
        make_world(world, images, seed=0, workers=2)
        _done(t)
    if not (world / "features" / "meta.json").is_file():
        t = _stage("region features: training the world's region classifier, then detecting")
        build_world_features(world)
        _done(t)
    if not (world / "vocab.txt").is_file():
        t = _stage("tokenizer: WordPiece on the training captions")
        captions = world / "annotations" / "dataset_world.json"
        texts = [c for im in read_karpathy(captions) if im.split == "train" for c in im.captions]
        tok = Tokenizer.train(texts, world / "vocab.txt", vocab_size=1000)
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


def run_demo(root: Path, images: int = 3000, steps: int = 600) -> dict[str, float]:
    """Run the demo under ``root``; returns the final held-out metrics."""
    world = prepare_world(root, images)
    cfg = demo_config(world, root / "pretrain", steps)
    t = _stage(f"pre-training a {cfg.model.num_layers}-layer UNITER for {steps} steps "
               f"({cfg.train.precision}, dynamic batches of ≤{cfg.data.token_budget} positions)")
    trainer = Pretrainer(cfg)
    before = trainer.evaluate()
    after = trainer.run(resume=bool((root / "pretrain" / "checkpoints").is_dir()))
    _done(t)
    print("\n== per-objective training loss (mean of the first and last 10 % of logged steps)")
    print("\n".join(_loss_table(root / "pretrain")))
    print(f"\n== held-out ({cfg.data.eval_split} split, {len(trainer.eval_pairs)} pairs)")
    print(f"   {'metric':10s} {'untrained':>10s} {'pre-trained':>12s} {'chance':>8s}")
    chance = {"mlm": 1.0 / trainer.tokenizer.vocab_size, "itm": 0.5,
              "mrc_kl": 1.0 / trainer.store.num_classes}
    for name, p in chance.items():
        key = f"eval/{name}_acc"
        if key in after:
            print(f"   {name + ' acc':10s} {before[key]:10.3f} {after[key]:12.3f} {p:8.3f}")
    print(f"\n   curves: {root / 'pretrain' / 'losses.png'}; "
          f"log: {root / 'pretrain' / 'metrics.jsonl'}")
    return after
