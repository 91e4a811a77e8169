"""A run directory belongs to one run; checkpoints follow the run's history; NaN and inf
are never saved; a resume applies new optimiser settings, refuses a changed model, and
changes nothing once the run is finished; a kill -9 resumes bit-identically."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import nan_regions
from vlp.config import load_config
from vlp.errors import DataWarning, VlpError
from vlp.train.checkpoint import list_checkpoints, read_history
from vlp.train.cli import main
from vlp.train.config import PretrainConfig
from vlp.train.logging import read_metrics
from vlp.train.pretrain import HeldOutLosses, build_pretraining
from vlp.train.trainer import Trainer

pytestmark = pytest.mark.slow  # training runs, kill -9


def tiny_args(world: Path, out: Path, *extra: str) -> list[str]:
    return [f"data.world={world}", "data.token_budget=60", "data.bucket_size=8",
            "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
            "model.intermediate_size=64", "model.dropout=0.1", f"train.out={out}",
            "train.steps=6", "train.warmup_steps=1", "train.precision=fp32",
            "train.log_every=1", "train.save_every=3", "train.tensorboard=false",
            "train.progress=false", "train.lr=1e-3", *extra]


def tiny(world: Path, out: Path, *extra: str) -> PretrainConfig:
    return load_config(PretrainConfig, None, tiny_args(world, out, *extra))


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def one_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1, err
    return err[0]


def test_new_run_into_an_existing_run_is_refused(dataset: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    build_pretraining(tiny(dataset, out)).run()
    before = files_of(out)
    line = one_error(capsys, ["pretrain", *tiny_args(dataset, out, "train.steps=3")])
    assert "already holds a run" in line and "--resume" in line and "--overwrite" in line
    assert files_of(out) == before  # metrics, checkpoints and config untouched

    # --overwrite replaces it: only the new run's checkpoints are left
    assert main(["pretrain", "--overwrite", *tiny_args(dataset, out, "train.steps=3",
                                                       "train.save_every=1")]) == 0
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == \
        ["step_00000002", "step_00000003"]
    assert max(r["step"] for r in read_metrics(out / "metrics.jsonl")) == 3


def test_overwrite_deletes_only_runs(dataset: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    line = one_error(capsys, ["pretrain", "--overwrite", *tiny_args(dataset, out)])
    assert "not a vlp run directory" in line
    assert (out / "thesis.tex").read_text() == "years of work"


def test_checkpoints_follow_the_runs_history_not_names(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    build_pretraining(tiny(dataset, out, "train.steps=3", "train.save_every=1")).run()
    # a checkpoint directory the run did not write, with a higher step number
    foreign = out / "checkpoints" / "step_00009999"
    foreign.mkdir()
    for name in ("model.safetensors", "state.pt", "config.yaml"):
        (foreign / name).write_bytes(b"not ours")
    resumed = build_pretraining(tiny(dataset, out, "train.steps=5", "train.save_every=1"))
    resumed.run(resume=True)  # resumes from step 3, not from the foreign 9999
    assert resumed.step == 5
    assert foreign.is_dir()  # never pruned: the run did not write it
    assert [e["name"] for e in read_history(out / "checkpoints")] == \
        ["step_00000004", "step_00000005"]


def test_stale_temporaries_are_removed_on_the_next_start(dataset: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    out = tmp_path / "run"
    build_pretraining(tiny(dataset, out, "train.steps=3")).run()
    ckpts = out / "checkpoints"
    # what a kill inside atomic_path leaves: .vlp-tmp-NAME.XXXXXXXX holding NAME
    stale = ckpts / ".vlp-tmp-step_00000006.ab12cd34"
    (stale / "step_00000006").mkdir(parents=True)
    (stale / "step_00000006" / "model.safetensors").write_bytes(b"half")
    # a kill between the two renames of a swap: NAME.old is the only copy left
    swapped = ckpts / ".vlp-tmp-step_00000003.zz99yy88"
    swapped.mkdir()
    (ckpts / "step_00000003").rename(swapped / "step_00000003.old")
    # the user's own hidden folders, named like dated backups
    backup = out / ".checkpoints.20240101"
    (backup / "checkpoints").mkdir(parents=True)
    (backup / "checkpoints" / "important.txt").write_text("x")
    (out / ".drafts.notes_v1").mkdir()

    # a refused command cleans nothing up
    assert main(["pretrain", *tiny_args(dataset, out, "train.steps=4")]) == 2
    assert stale.is_dir() and swapped.is_dir()
    build_pretraining(tiny(dataset, out, "train.steps=4")).run(resume=True)
    assert not stale.exists() and not swapped.exists()
    assert [p.name for p in list_checkpoints(ckpts)][-1] == "step_00000004"
    assert (backup / "checkpoints" / "important.txt").is_file()
    assert (out / ".drafts.notes_v1").is_dir()


def test_overwrite_needs_a_real_run_and_never_an_input(dataset: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    project = tmp_path / "proj"
    (project / "src").mkdir(parents=True)
    (project / "config.yaml").write_text("lr: 1\n")
    line = one_error(capsys, ["pretrain", "--overwrite", *tiny_args(dataset, project)])
    assert "not a vlp run directory" in line and (project / "src").is_dir()

    run = tmp_path / "run"
    build_pretraining(tiny(dataset, run, "train.steps=2")).run()
    before = files_of(run)
    line = one_error(capsys, ["finetune", "retrieval", "--overwrite", f"--init={run}",
                              *tiny_args(dataset, run)])
    assert f"train.out: {run} is the input {run}" in line
    line = one_error(capsys, ["pretrain", "--overwrite", *tiny_args(dataset, dataset)])
    assert "is the input" in line
    assert files_of(run) == before


def test_corrupt_history_is_one_line(dataset: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    build_pretraining(tiny(dataset, out, "train.steps=2")).run()
    history = out / "checkpoints" / "history.json"
    history.write_text('{"checkpoints": [{"name": "step_00000002"}]}')
    for argv in (["pretrain", "--resume", *tiny_args(dataset, out)], ["verify", str(out)]):
        assert "history.json" in one_error(capsys, argv)


def test_non_finite_weights_are_never_saved(dataset: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "inf"
    trainer = build_pretraining(tiny(dataset, out, "train.save_every=1"))
    step = Trainer._optimizer_step

    def poisoned_step(self: Trainer, key: object) -> None:
        step(self, key)  # type: ignore[arg-type]
        if self.step == 2:  # the second optimizer step makes a weight infinite
            with torch.no_grad():
                next(self.model.parameters())[0].fill_(float("inf"))

    monkeypatch.setattr(Trainer, "_optimizer_step", poisoned_step)
    with pytest.raises(VlpError) as err:
        trainer.run()
    assert "step 2: weight" in str(err.value) and "nothing was saved" in str(err.value)
    assert "\n" not in str(err.value)
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step_00000001"]


def test_non_finite_held_out_metric_names_the_images(dataset: Path, tmp_path: Path) -> None:
    trainer = build_pretraining(tiny(dataset, tmp_path / "nan", "train.steps=2"))
    held_out = trainer.parts.evaluate
    assert isinstance(held_out, HeldOutLosses)
    held_out.batches.collator = nan_regions(held_out.batches.collator)  # type: ignore[assignment]
    with pytest.raises(VlpError, match=r"step 2: held-out .* is not finite \(images \[12"):
        trainer.run()
    assert list_checkpoints(tmp_path / "nan" / "checkpoints") == []


def test_resume_applies_a_new_learning_rate(dataset: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    build_pretraining(tiny(dataset, out, "train.steps=3")).run()
    assert main(["pretrain", "--resume", *tiny_args(dataset, out, "train.lr=5e-4")]) == 0
    printed = capsys.readouterr().out
    assert "resume: train.lr 0.001 -> 0.0005 (applied from step 3)" in printed
    assert "resume: train.steps 3 -> 6" in printed
    assert "lr: 0.0005" in (out / "config.yaml").read_text()
    # the schedule after the resume: peak 5e-4 decaying linearly to 0 at step 6
    lrs = {r["step"]: r["lr"] for r in read_metrics(out / "metrics.jsonl") if "lr" in r}
    assert lrs[4] == pytest.approx(5e-4 * 2 / 5)
    assert lrs[3] == pytest.approx(1e-3 * 0 / 1)  # the first run's last step, kept


def test_resume_with_another_model_is_one_line(dataset: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    build_pretraining(tiny(dataset, out, "train.steps=3")).run()
    for change, key in (("model.num_layers=3", "model.num_layers"),
                        ("model.hidden_size=64", "model.hidden_size")):
        line = one_error(capsys, ["pretrain", "--resume", *tiny_args(dataset, out, change)])
        assert f"--resume: {key} is" in line


def test_resuming_a_finished_run_changes_nothing(dataset: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    first = build_pretraining(tiny(dataset, out)).run()
    before = files_of(out)
    again = build_pretraining(tiny(dataset, out)).run(resume=True)
    assert again == first
    assert files_of(out) == before
    capsys.readouterr()
    assert main(["pretrain", "--resume", *tiny_args(dataset, out, "train.lr=5e-4",
                                                    "train.progress=true")]) == 0
    printed = capsys.readouterr().out
    assert "resume: the run finished at step 6; nothing to apply (train.lr changed" in printed
    assert "progress" not in printed
    assert files_of(out) == before
    line = one_error(capsys, ["pretrain", "--resume", *tiny_args(dataset, out,
                                                                 "train.steps=4")])
    assert "train.steps: 4 is below step 6" in line


def test_torn_metrics_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    with pytest.warns(DataWarning, match="skipped 1 unreadable line"):
        rows = read_metrics(path)
    assert [r["step"] for r in rows] == [1, 2]


def test_same_seed_same_run_bytes(dataset: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        build_pretraining(tiny(dataset, tmp_path / name, "train.steps=3")).run()
    ckpt = "checkpoints/step_00000003/model.safetensors"
    assert (tmp_path / "a" / ckpt).read_bytes() == (tmp_path / "b" / ckpt).read_bytes()
    rows = [[{k: v for k, v in r.items() if k != "samples_per_s"}
             for r in read_metrics(tmp_path / n / "metrics.jsonl")] for n in ("a", "b")]
    assert rows[0] == rows[1]


def _pretrain_process(world: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "vlp.train.cli", "pretrain",
           *tiny_args(world, out, "train.steps=8", "train.save_every=1", *extra)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_kill_9_during_training_resumes_bit_identically(dataset: Path, tmp_path: Path) -> None:
    whole = _pretrain_process(dataset, tmp_path / "whole")
    killed = _pretrain_process(dataset, tmp_path / "killed")
    history = tmp_path / "killed" / "checkpoints" / "history.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and killed.poll() is None:
        if history.is_file() and '"step_00000004"' in history.read_text():
            break
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)  # mid-run, possibly inside a checkpoint write
    killed.wait()
    assert whole.wait(timeout=180) == 0, whole.stderr.read() if whole.stderr else ""
    resumed = _pretrain_process(dataset, tmp_path / "killed", "--resume")
    resumed_code = resumed.wait(timeout=180)
    assert resumed_code == 0, resumed.stderr.read() if resumed.stderr else ""
    # (a kill that came after the run finished makes --resume a no-op, which also passes)
    ckpt = "checkpoints/step_00000008/model.safetensors"
    assert (tmp_path / "whole" / ckpt).read_bytes() == (tmp_path / "killed" / ckpt).read_bytes()
    steps = [r["step"] for r in read_metrics(tmp_path / "killed" / "metrics.jsonl")
             if "loss" in r]
    assert steps == list(range(1, 9))
    leftovers = [p for p in (tmp_path / "killed" / "checkpoints").iterdir()
                 if p.name.startswith(".")]
    assert leftovers == []
    json.loads(history.read_text())
