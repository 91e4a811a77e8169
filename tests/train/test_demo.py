"""The demo and the configs the README gives for running its experiments by hand must
describe the same experiment: a user who reruns a stage from configs/ gets the demo's run."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlp.config import load_config
from vlp.train.config import FinetuneConfig, PretrainConfig
from vlp.train.demo import demo_config, finetune_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("name", "model"), [("uniter_world", "UNITER"),
                                             ("vilbert_world", "ViLBERT")])
def test_pretrain_configs_are_the_demo_experiment(name: str, model: str, tmp_path: Path) -> None:
    world, out = tmp_path / "world", tmp_path / "run"
    cfg = load_config(PretrainConfig, ROOT / "configs" / f"{name}.yaml",
                      [f"data.world={world}", f"train.out={out}"])
    demo = demo_config(world, out, cfg.train.steps, model)
    assert cfg.model == demo.model
    assert cfg.objectives == demo.objectives
    assert cfg.data == demo.data
    same = ("steps", "lr", "warmup_steps", "precision", "grad_accum", "weight_decay")
    assert {k: getattr(cfg.train, k) for k in same} == {k: getattr(demo.train, k) for k in same}


def test_vqa_config_is_the_demo_fine_tuning(tmp_path: Path) -> None:
    world, out, init = tmp_path / "world", tmp_path / "run", tmp_path / "pre"
    cfg = load_config(FinetuneConfig, ROOT / "configs" / "vqa_world.yaml",
                      [f"data.world={world}", f"train.out={out}", f"train.init={init}"])
    demo = finetune_config(world, out, "vqa", init, cfg.train.steps, cfg.task.train_limit)
    assert cfg.model == demo.model
    assert cfg.task == demo.task
    assert cfg.data == demo.data
    same = ("init", "steps", "lr", "warmup_steps", "precision", "eval_every")
    assert {k: getattr(cfg.train, k) for k in same} == {k: getattr(demo.train, k) for k in same}
