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

    # moved: the run's own vocabulary is found beside it
    moved = tmp_path / "moved"
    os.rename(run, moved)
    capsys.readouterr()
    assert main(["finetune", "retrieval", "--init", str(moved), f"data.world={work / 'data'}",
                 "train.out=ft2", "train.steps=2", "task.eval_limit=2", *TINY]) == 0
    assert read_yaml(elsewhere / "ft2" / "config.yaml")["data"]["vocab"] == \
        str(elsewhere / "ft2" / "vocab.txt")


def test_resume_names_a_run_without_one(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --resume {tmp_path}: no config.yaml there (expected a vlp run " \
                  "directory)"
