"""The demo and the configs the README gives for running its experiments by hand must
describe the same experiment: a user who reruns a stage from configs/ gets the demo's run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from vlp.config import load_config
from vlp.train.config import FinetuneConfig, PretrainConfig
from vlp.train.demo import DemoTask, demo_config, finetune_config, run_demo
from vlp.train.logging import read_metrics

pytestmark = pytest.mark.slow  # runs the demo

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("name", "model"), [("uniter_world", "UNITER"),
                                             ("vilbert_world", "ViLBERT"),
                                             ("vilt_world", "ViLT"), ("soho_world", "SOHO")])
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


def held_out_accuracies(out: str) -> dict[str, list[tuple[float, float, float]]]:
    """The demo's held-out tables, per objective: (untrained, pre-trained, chance) of each
    model in the order it was pre-trained."""
    rows: dict[str, list[tuple[float, float, float]]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[1] == "acc" and parts[0] in ("mlm", "itm", "itc", "mrc_kl",
                                                                  "mvm"):
            before, after, chance = (float(x) for x in parts[2:])
            rows.setdefault(parts[0], []).append((before, after, chance))
    return rows


def test_demo_runs_end_to_end_and_a_rerun_skips_every_stage(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The whole demo at toy scale: world, features, vocabulary, the four pre-trainings
    (regions, two streams, patches, grid), zero-shot retrieval, fine-tuning from scratch and
    from pre-training, the table and the curves.

    24 pre-training steps are enough for what the demo shows first, held out: all four
    models predict masked words above chance and better than untrained, the region models
    region classes too, and the region models' masked-word loss falls below a uniform
    guess's (an untrained model's lies above it). (Pre-training beating scratch in
    fine-tuning, ITM and ITC above chance need the demo's schedule; at this scale they are
    not asserted.)
    """
    tasks = (DemoTask("vqa", 40, 2, "vqa_acc", ("UNITER", "ViLBERT", "ViLT", "SOHO"),
                      eval_limit=20, evals=1),
             DemoTask("retrieval", 8, 2, "retrieval/r_mean", ("ViLBERT",), eval_limit=5,
                      evals=1))
    results = run_demo(tmp_path, images=60, steps=24, tasks=tasks)
    for key in ("vqa/UNITER/scratch", "vqa/ViLBERT/pre-trained", "vqa/ViLT/pre-trained",
                "vqa/SOHO/pre-trained", "ViLT/zero_shot/retrieval/t2i_r1",
                "retrieval/ViLBERT/pre-trained", "UNITER/zero_shot/retrieval/t2i_r1"):
        assert 0.0 <= results[key] <= 100.0, key
    assert (tmp_path / "finetune_curves.png").stat().st_size > 0
    for run in ("pretrain_uniter", "pretrain_vilbert", "pretrain_vilt", "pretrain_soho"):
        assert (tmp_path / run / "losses.png").is_file()
    out = capsys.readouterr().out
    assert "held-out (test split" in out and "fine-tuned, validation split" in out
    table = held_out_accuracies(out)
    assert len(table["mlm"]) == 4 and len(table["mrc_kl"]) == 2, out  # regions: MRC too
    for before, after, chance in table["mlm"]:
        assert after > before and after > 10 * chance, table["mlm"]
    for before, after, chance in table["mrc_kl"]:
        assert after > before and after > 2 * chance, table["mrc_kl"]
    (vocab_file,) = tmp_path.glob("world_v*/vocab.txt")
    uniform = math.log(len(vocab_file.read_text().splitlines()))  # a uniform guess's loss
    for run in ("pretrain_uniter", "pretrain_vilbert"):
        rows = [r for r in read_metrics(tmp_path / run / "metrics.jsonl")
                if "eval/loss/mlm" in r]
        assert rows[-1]["eval/loss/mlm"] < uniform - 0.1, (run, rows[-1], uniform)

    assert not any(k.startswith("SOHO/zero_shot") for k in results)  # SOHO learns no ITC
    assert run_demo(tmp_path, images=60, steps=24, tasks=tasks) == results
    assert "== world" not in capsys.readouterr().out  # nothing made twice
