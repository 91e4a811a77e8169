"""A run directory is self-contained: its config.yaml records absolute paths and its own
copy of the vocabulary, so it is resumed, evaluated and fine-tuned from in any working
directory, and still after it has been moved."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from vlp.config import read_yaml
from vlp.train.cli import main

pytestmark = pytest.mark.slow  # training runs

TINY = ["data.token_budget=60", "data.bucket_size=8", "model.hidden_size=32",
        "model.num_layers=2", "model.num_heads=2", "model.intermediate_size=64",
        "train.warmup_steps=1", "train.precision=fp32", "train.tensorboard=false",
        "train.progress=false", "train.lr=1e-3"]


def test_a_run_works_from_any_directory_and_after_a_move(
        dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # started with paths relative to where the user stands
    work = tmp_path / "work"
    shutil.copytree(dataset, work / "data")
    monkeypatch.chdir(work)
    assert main(["pretrain", "data.world=data", "train.out=runs/pre", "train.steps=4",
                 "train.save_every=2", *TINY]) == 0
    run = work / "runs" / "pre"
    saved = read_yaml(run / "config.yaml")
    assert saved["data"]["captions"] == str(work / "data" / "annotations" / "dataset_world.json")
    assert saved["data"]["vocab"] == str(run / "vocab.txt")
    assert (run / "vocab.txt").read_bytes() == (work / "data" / "vocab.txt").read_bytes()
    assert saved["train"]["out"] == str(run)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # resumed from its own config, with only the overrides given
    assert main(["pretrain", "--resume", str(run), "train.steps=6"]) == 0
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == 6
    # evaluated zero-shot and fine-tuned from, from here
    assert main(["evaluate", "retrieval", "--checkpoint", str(run), "--out", "zs",
                 "task.eval_limit=2", "task.options.rank=itc"]) == 0
    assert (elsewhere / "zs" / "metrics_val.json").is_file()
    assert main(["finetune", "retrieval", "--init", str(run), f"data.world={work / 'data'}",
                 "train.out=ft", "train.steps=2", "task.eval_limit=2", *TINY]) == 0
    # a fine-tuning run records the task's annotation files with the rest of its data
    assert any(k.startswith("task.files.") for k in
               json.loads((elsewhere / "ft" / "data.json").read_text()))

    # moved: the run's own vocabulary is found beside it
    moved = tmp_path / "moved"
    os.rename(run, moved)
    capsys.readouterr()
    assert main(["finetune", "retrieval", "--init", str(moved), f"data.world={work / 'data'}",
                 "train.out=ft2", "train.steps=2", "task.eval_limit=2", *TINY]) == 0
    assert read_yaml(elsewhere / "ft2" / "config.yaml")["data"]["vocab"] == \
        str(elsewhere / "ft2" / "vocab.txt")
    # and resumed and evaluated where it now lies (its config names the old place)
    assert main(["pretrain", "--resume", str(moved), "train.steps=8"]) == 0
    assert max(json.loads(x)["step"] for x in
               (moved / "metrics.jsonl").read_text().splitlines()) == 8
    assert main(["evaluate", "retrieval", "--checkpoint", str(moved), "--out", "zs2",
                 "task.eval_limit=2", "task.options.rank=itc"]) == 0

    # a resumed run refuses a vocabulary other than the one it was trained with
    other = tmp_path / "other_vocab.txt"
    words = (moved / "vocab.txt").read_text().splitlines()
    other.write_text("\n".join([*words[:-2], words[-1], words[-2]]) + "\n")  # two ids swapped
    capsys.readouterr()
    assert main(["pretrain", "--resume", str(moved), f"data.vocab={other}",
                 "train.steps=10"]) == 2
    assert "is not the vocabulary" in capsys.readouterr().err


def test_overwrite_from_the_runs_own_config_keeps_its_vocabulary(
        dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["pretrain", f"data.world={dataset}", f"train.out={run}", "train.steps=2",
                 *TINY]) == 0
    assert main(["pretrain", "--config", str(run / "config.yaml"), "--overwrite"]) == 0
    assert (run / "vocab.txt").read_bytes() == (dataset / "vocab.txt").read_bytes()


def test_resume_names_a_run_without_one(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --resume {tmp_path}: no config.yaml there (expected a vlp run " \
                  "directory)"


def test_relative_paths_of_an_older_run_are_not_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config.yaml written before runs recorded absolute paths resumes: the same file
    named relative and absolute is the same field; another file is still a change, and a
    model path that differs still refuses."""
    from vlp.errors import VlpError
    from vlp.train.rundir import config_changes

    monkeypatch.chdir(tmp_path)
    before = {"data": {"captions": "a/c.json"}, "model": {"backbone_weights": "r50"}}
    now = {"data": {"captions": str(tmp_path / "a" / "c.json")},
           "model": {"backbone_weights": str(tmp_path / "r50")}}
    assert config_changes(before, now, tmp_path / "config.yaml") == {}
    moved = {"data": {"captions": str(tmp_path / "b.json")},
             "model": {"backbone_weights": str(tmp_path / "r50")}}
    assert list(config_changes(before, moved, tmp_path / "config.yaml")) == ["data.captions"]
    with pytest.raises(VlpError, match="model.backbone_weights"):
        config_changes(before, {**now, "model": {"backbone_weights": "/elsewhere"}},
                       tmp_path / "config.yaml")


def test_finetune_resume_before_the_task_name_still_parses() -> None:
    from vlp.train.cli import _task_before_resume

    assert _task_before_resume(["finetune", "--resume", "vqa", "train.lr=1e-4"]) == \
        ["finetune", "vqa", "--resume", "train.lr=1e-4"]
    # a run directory after --resume, or the task already in place, stay as they are
    assert _task_before_resume(["finetune", "--resume", "runs/x", "vqa"]) == \
        ["finetune", "--resume", "runs/x", "vqa"]
    assert _task_before_resume(["finetune", "ve", "--resume", "vqa"]) == \
        ["finetune", "ve", "--resume", "vqa"]


def test_a_run_records_its_data_and_says_when_it_changed(
        dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    shutil.copytree(dataset, data)
    assert main(["pretrain", f"data.world={data}", f"train.out={run}", "train.steps=2",
                 *TINY]) == 0
    recorded = json.loads((run / "data.json").read_text())
    captions = data / "annotations" / "dataset_world.json"
    assert recorded["data.captions"]["path"] == str(captions)
    assert recorded["data.features"]["path"] == str(data / "features" / "meta.json")
    assert main(["verify", str(run)]) == 0
    assert "all checksums match" in capsys.readouterr().out

    # the captions edited in place (still valid): verify names the file, resume warns
    doc = json.loads(captions.read_text())
    doc["images"][0]["sentences"][0]["raw"] += " again"
    captions.write_text(json.dumps(doc))
    assert main(["verify", str(run)]) == 2
    assert f"corrupt: {captions}: changed since the run read it as data.captions" in \
        capsys.readouterr().err
    assert main(["pretrain", "--resume", str(run), "train.steps=3"]) == 0
    assert f"warning: {captions}: changed since {run} recorded it as data.captions" in \
        capsys.readouterr().err
    # the record now holds what the resumed run read
    assert main(["verify", str(run)]) == 0
    # data no longer where the run read it (a run copied elsewhere): its checkpoints verify
    data.rename(tmp_path / "data_moved")
    assert main(["verify", str(run)]) == 0
    (run / "data.json").write_text("[1, 2]")
    capsys.readouterr()
    assert main(["verify", str(run)]) == 2
    assert "data.json: expected an object of data files, found list" in capsys.readouterr().err
