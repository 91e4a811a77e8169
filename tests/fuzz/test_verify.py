"""``vlp verify``: a flipped bit in a region store or a checkpoint is found, an intact one
passes; cheap checks on open catch truncation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fuzz_harness import TINY_RUN, tiny_run

from vlp.errors import VlpError
from vlp.train.checkpoint import check_checkpoint, list_checkpoints
from vlp.train.cli import main


@pytest.fixture(scope="module")
def run(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(dataset, tmp_path_factory.mktemp("run") / "run", "train.save_every=1")


def flip(path: Path, offset: int = -3) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_intact_store_and_run_verify(dataset: Path, run: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(dataset / "features")]) == 0
    assert main(["verify", str(run)]) == 0
    out = capsys.readouterr().out
    assert "files verified, all checksums match" in out


@pytest.mark.parametrize("name", ["features.npy", "boxes.npy", "cls_probs.npy", "index.npy"])
def test_flipped_bit_in_a_store(dataset: Path, tmp_path: Path, name: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    shutil.copytree(dataset / "features", store)
    flip(store / name)
    capsys.readouterr()
    assert main(["verify", str(store)]) == 2
    err = capsys.readouterr().err
    assert f"{store / name}" in err and "checksum mismatch" in err


@pytest.mark.parametrize("name", ["model.safetensors", "state.pt", "config.yaml"])
def test_flipped_bit_in_a_checkpoint(run: Path, tmp_path: Path, name: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    ckpt = list_checkpoints(copy / "checkpoints")[-1]
    flip(ckpt / name)
    capsys.readouterr()
    assert main(["verify", str(copy)]) == 2
    err = capsys.readouterr().err
    assert f"{ckpt / name}: checksum mismatch" in err
    assert err.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.parametrize("name", ["model.safetensors", "state.pt"])
def test_truncated_checkpoint_is_caught_on_open(run: Path, tmp_path: Path, name: str,
                                                dataset: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    ckpt = list_checkpoints(copy / "checkpoints")[-1]
    data = (ckpt / name).read_bytes()
    (ckpt / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(VlpError, match=f"{name}: .* bytes, but .* were written"):
        check_checkpoint(ckpt)
    capsys.readouterr()
    assert main(["pretrain", "--resume", f"data.world={dataset}", *TINY_RUN, "train.steps=3",
                 f"train.out={copy}"]) == 2
    assert name in capsys.readouterr().err


def test_verify_something_else_is_one_line(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_resume_verifies_the_checkpoint_when_asked(run: Path, tmp_path: Path, dataset: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    ckpt = list_checkpoints(copy / "checkpoints")[-1]
    flip(ckpt / "model.safetensors")  # same size: only the checksum can tell
    argv = ["pretrain", "--resume", f"data.world={dataset}", *TINY_RUN, "train.steps=3",
            f"train.out={copy}", "train.verify_checkpoint=true"]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "model.safetensors: checksum mismatch" in err and "train.verify_checkpoint" in err
