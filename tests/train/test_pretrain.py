"""The pre-training loop end to end on a tiny hand-made dataset: exact resume, clear
NaN error, and the real CLI entry point."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from conftest import nan_regions
from vlp.config import load_config
from vlp.errors import VlpError
from vlp.train.checkpoint import list_checkpoints
from vlp.train.cli import main
from vlp.train.config import PretrainConfig
from vlp.train.pretrain import build_pretraining
from vlp.train.trainer import Trainer

pytestmark = pytest.mark.slow  # training runs, torchrun


def tiny_config(world: Path, out: Path, **train: object) -> PretrainConfig:
    overrides = [
        f"data.world={world}", "data.token_budget=60", "data.bucket_size=8",
        "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
        "model.intermediate_size=64", "model.dropout=0.1",
        f"train.out={out}", "train.steps=6", "train.warmup_steps=2", "train.grad_accum=2",
        "train.precision=fp32", "train.log_every=1", "train.save_every=3",
        "train.tensorboard=false", "train.progress=false", "train.lr=1e-3",
    ] + [f"train.{k}={v}" for k, v in train.items()]
    return load_config(PretrainConfig, None, overrides)


def test_resume_gives_identical_weights(dataset: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    whole = build_pretraining(tiny_config(dataset, tmp_path / "whole"))
    whole.run()

    original = Trainer._after_step

    def killed_after_three(self: Trainer, *args: object) -> None:
        original(self, *args)  # type: ignore[arg-type]
        if self.step == 3:
            raise KeyboardInterrupt  # the run dies right after its step-3 checkpoint

    monkeypatch.setattr(Trainer, "_after_step", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        build_pretraining(tiny_config(dataset, tmp_path / "split")).run()
    monkeypatch.setattr(Trainer, "_after_step", original)
    resumed = build_pretraining(tiny_config(dataset, tmp_path / "split"))
    resumed.run(resume=True)

    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    rows = [json.loads(x) for x in (tmp_path / "split" / "metrics.jsonl").read_text().split("\n")
            if x]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5, 6]  # no repeated steps


def test_losses_logged_and_checkpoint_files(dataset: Path, tmp_path: Path) -> None:
    trainer = build_pretraining(tiny_config(dataset, tmp_path / "run", steps=4))
    metrics = trainer.run()
    assert {"eval/mlm_acc", "eval/itm_acc", "eval/loss/mrfr"} <= metrics.keys()
    ckpts = sorted((tmp_path / "run" / "checkpoints").glob("step_*"))
    assert [c.name for c in ckpts] == ["step_00000003", "step_00000004"]
    assert list_checkpoints(tmp_path / "run" / "checkpoints") == ckpts
    assert (ckpts[-1] / "model.safetensors").is_file()
    assert (tmp_path / "run" / "losses.png").stat().st_size > 1000


def test_nan_loss_is_one_clear_line(dataset: Path, tmp_path: Path) -> None:
    trainer = build_pretraining(tiny_config(dataset, tmp_path / "nan", steps=2))
    batches = trainer.parts.batches
    batches.collator = nan_regions(batches.collator)  # type: ignore[attr-defined]
    with pytest.raises(VlpError) as err:
        trainer.run()
    assert "step 1: loss is nan" in str(err.value) and "\n" not in str(err.value)


def test_cli_one_step_and_unknown_key(dataset: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    base = [f"data.world={dataset}", "model.hidden_size=32", "model.num_layers=1",
            "model.num_heads=2", "model.intermediate_size=64", "data.token_budget=80",
            "train.tensorboard=false", "train.progress=false"]
    assert main(["pretrain", *base, "train.steps=1", f"train.out={tmp_path / 'cli'}"]) == 0
    assert "held-out:" in capsys.readouterr().out
    assert main(["pretrain", *base, "train.stpes=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "unknown key 'train.stpes'" in err
    assert "\n" not in err


def test_a_short_run_resumes_with_the_default_warmup_it_recorded(
        dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """config.yaml records every field: its warm-up (the default 100) is not one the user
    chose, so a 2-step run extends to 3; a warm-up chosen now must still end in time."""
    run = tmp_path / "short"
    base = [f"data.world={dataset}", "model.hidden_size=32", "model.num_layers=1",
            "model.num_heads=2", "model.intermediate_size=64", "data.token_budget=80",
            "train.tensorboard=false", "train.progress=false"]
    assert main(["pretrain", *base, "train.steps=2", f"train.out={run}"]) == 0
    assert "warmup_steps: 100" in (run / "config.yaml").read_text()
    assert main(["pretrain", "--resume", str(run), "train.steps=3"]) == 0
    assert (run / "checkpoints" / "step_00000003").is_dir()
    capsys.readouterr()
    # dropout changes no weight: a resumed run may change it (other model fields refuse)
    assert main(["pretrain", "--resume", str(run), "train.steps=4", "model.dropout=0.3"]) == 0
    assert "resume: model.dropout 0.1 -> 0.3 (applied from step 3)" in capsys.readouterr().out
    assert "dropout: 0.3" in (run / "checkpoints" / "step_00000004" / "config.yaml").read_text()
    assert main(["pretrain", "--resume", str(run), "train.steps=5", "model.num_heads=4"]) == 2
    assert "--resume: model.num_heads is 2" in capsys.readouterr().err
    assert main(["pretrain", "--resume", str(run), "train.steps=5",
                 "train.warmup_steps=8"]) == 2
    assert "overrides: field 'train.warmup_steps': 8 is above train.steps: 5" in \
        capsys.readouterr().err


def test_torchrun_two_processes(dataset: Path, tmp_path: Path) -> None:
    """DDP through torchrun (gloo on CPU): both ranks train, rank 0 writes the run; a
    resumed run whose data changed stops on every rank under --strict (none waits)."""
    import shutil
    import socket
    import subprocess
    import sys

    def torchrun(*args: str) -> list[str]:
        with socket.socket() as free:  # a port no other run holds (suites may run at once)
            free.bind(("127.0.0.1", 0))
            port = str(free.getsockname()[1])
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", port, "-m", "vlp.train.cli", *args]

    data, out = tmp_path / "data", tmp_path / "ddp"
    shutil.copytree(dataset, data)
    cmd = [*torchrun("pretrain"),
           f"data.world={data}", "model.hidden_size=32", "model.num_layers=1",
           "model.num_heads=2", "model.intermediate_size=64", "data.token_budget=60",
           "data.bucket_size=8", "train.steps=2", f"train.out={out}",
           "train.tensorboard=false", "train.progress=false", "train.log_every=1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]
    assert (out / "checkpoints" / "step_00000002" / "model.safetensors").is_file()
    assert done.stdout.count("held-out:") == 1  # one process reports, not each rank

    captions = data / "annotations" / "dataset_world.json"
    doc = json.loads(captions.read_text())
    doc["images"][0]["sentences"][0]["raw"] += " again"
    captions.write_text(json.dumps(doc))
    done = subprocess.run([*torchrun("--strict", "pretrain", "--resume", str(out)),
                           "train.steps=3"], capture_output=True, text=True, timeout=180)
    assert done.returncode != 0
    assert f"{captions}: changed since {out} recorded it as data.captions" in done.stderr
    assert done.stderr.count("(strict mode)") == 2, done.stderr[-2000:]  # each rank says it


def test_hard_itm_negatives_train_and_need_itc(dataset: Path, tmp_path: Path) -> None:
    base = tiny_config(dataset, tmp_path / "hard", steps=4)
    both = dataclasses.replace(base.objectives, weights={"itm": 1.0, "itc": 1.0},
                               itm_hard_negatives=True)
    assert build_pretraining(base).parts.prepare is None  # no hook: no scoring-mode switch
    trainer = build_pretraining(dataclasses.replace(base, objectives=both))
    assert trainer.parts.prepare is not None
    metrics = trainer.run()
    assert trainer.step == 4 and "eval/itm_acc" in metrics
    with pytest.raises(VlpError, match="itm_hard_negatives': .*needs both itm and itc"):
        dataclasses.replace(both, weights={"itm": 1.0})  # a config rule: refused on load


def test_start_up_summary_names_data_model_device_init_and_schedule_warnings(
        dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = tiny_config(dataset, tmp_path / "first", progress="true", warmup_steps=6,
                        save_every=10)
    build_pretraining(first).run()
    out = capsys.readouterr().out
    assert f"pretrain: {tmp_path / 'first'}" in out
    # 14 images, the last 3 val: 11 train images × 2 captions
    assert "data: 22 training rows of 11 images (split(s) train, restval" in out
    assert "dataset_world.json" in out and "held out (split val)" in out
    assert "model: single_stream, 2 × 32 (2 heads), visual input regions" in out
    assert "running: cpu, fp32" in out and "6 steps" in out
    assert "warning: train.warmup_steps 6 ≥ train.steps 6: the learning rate never " \
        "reaches train.lr 0.001" in out
    assert "warning: train.save_every 10 > train.steps 6" in out
    assert "train.init" not in out  # nothing loaded: nothing to say
    # a run started from the first says what it loaded and what starts random
    second = tiny_config(dataset, tmp_path / "second", progress="true",
                         init=str(tmp_path / "first"))
    second = dataclasses.replace(second, objectives=dataclasses.replace(
        second.objectives, weights={"mlm": 1.0, "itm": 1.0, "itc": 1.0}))
    build_pretraining(second).run()
    out = capsys.readouterr().out
    total = len(build_pretraining(second).model.encoder.state_dict())
    assert f"train.init: {total} of {total} encoder tensors from {tmp_path / 'first'}" in out
    assert "heads: itm, mlm loaded; itc start random" in out
    assert "warning:" not in out


def test_a_run_from_a_model_takes_its_section_but_the_dropout_it_sets(
        dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """train.init brings the model's section; dropout changes no weight and is the user's
    to choose for fine-tuning; any other field set to another value is named, both values."""
    from vlp.train.build import start

    build_pretraining(tiny_config(dataset, tmp_path / "first")).run()
    capsys.readouterr()
    cfg = load_config(PretrainConfig, None, [
        f"data.world={dataset}", f"train.out={tmp_path / 'second'}",
        f"train.init={tmp_path / 'first'}", "model.dropout=0.3", "model.pooler=product",
        "model.hidden_size=32", "train.precision=fp32"])
    resolved, _ = start(cfg)
    err = capsys.readouterr().err
    assert resolved.model.dropout == 0.3  # the user's, over the init's 0.1
    assert resolved.model.pooler == "cls" and resolved.model.num_layers == 2  # the init's
    assert ("warning: model.pooler: 'product' in the config is not used: train.init "
            f"({tmp_path / 'first'}) brings its model, with 'cls'") in err
    assert "model.hidden_size" not in err and "model.dropout" not in err  # the same / taken
    assert err.count("warning:") == 1  # fields left at their defaults say nothing


def test_a_run_from_a_model_made_from_another_preset_says_so(
        dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """model.preset names the defaults a config starts from: a different one than the
    init's is not what runs, and the warning names both."""
    from vlp.train.build import start

    small = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
             "model.intermediate_size=64", "train.precision=fp32"]
    first = load_config(PretrainConfig, None, [
        f"data.world={dataset}", f"train.out={tmp_path / 'first'}", "train.steps=1",
        "train.warmup_steps=0", "train.tensorboard=false", "train.progress=false",
        "data.token_budget=60", "data.bucket_size=8", "model.preset=uniter_base", *small])
    build_pretraining(first).run()
    capsys.readouterr()
    for preset, warned in (("uniter_base", False), ("visualbert_base", True)):
        cfg = load_config(PretrainConfig, None, [
            f"data.world={dataset}", f"train.out={tmp_path / preset}",
            f"train.init={tmp_path / 'first'}", f"model.preset={preset}", *small])
        resolved, _ = start(cfg)
        assert resolved.model.preset == "uniter_base"  # the init's model
        err = capsys.readouterr().err
        assert (f"warning: model.preset: '{preset}' in the config is not used: train.init "
                f"({tmp_path / 'first'}) brings its model, made as 'uniter_base'" in err) \
            == warned, err


def test_joint_masking_with_one_objective_a_batch_is_said_to_change_nothing(
        dataset: Path, tmp_path: Path) -> None:
    """With mix: sample a batch masks one modality (its objective's), so objectives.masking
    decides nothing; a masking ablation needs mix: sum (configs/ablations/masking.yaml)."""
    from vlp.train.trainer import schedule_warnings

    cfg = tiny_config(dataset, tmp_path / "run")
    sample = dataclasses.replace(cfg, objectives=dataclasses.replace(
        cfg.objectives, masking="joint", mix="sample"))
    assert any(w.startswith("objectives.masking: joint") for w in schedule_warnings(sample))
    summed = dataclasses.replace(sample, objectives=dataclasses.replace(
        sample.objectives, mix="sum"))
    assert not any(w.startswith("objectives.masking") for w in schedule_warnings(summed))


def test_a_checkpoint_from_before_fused_adamw_resumes_into_the_fused_kernel(
        dataset: Path, tmp_path: Path) -> None:
    """A state saved by the per-parameter AdamW (groups without ``fused``) loads into the
    kernel vlp builds now, and its step counts sit where that kernel wants them."""
    trainer = build_pretraining(tiny_config(dataset, tmp_path / "run", steps=2))
    trainer.run()
    state = trainer.state()
    for group in state["optimizer"]["param_groups"]:
        group["fused"], group["foreach"] = None, None  # as torch < vlp's fused AdamW saved
    again = build_pretraining(tiny_config(dataset, tmp_path / "run", steps=3))
    again._load_state(state)
    assert all(g["fused"] is True for g in again.optimizer.param_groups)
    steps = [s["step"] for s in again.optimizer.state.values()]
    assert steps and all(s.device.type == "cpu" for s in steps)  # where CPU's kernel wants
    assert max(float(s) for s in steps) == 2.0  # (a head unused on a step counts one less)
