"""Nothing a user made is deleted or overwritten: every writer refuses an existing
non-empty output without ``--overwrite``, and an output that is, holds or lies inside one
of its inputs always. Each case that once deleted a user's files is here, run through the
real command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fuzz_harness import refuse, tree_digest

from vlp.train.cli import main
from vlp.world.make import make_world

pytestmark = pytest.mark.slow  # training runs

TINY = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
        "model.intermediate_size=64", "data.token_budget=80", "train.warmup_steps=0",
        "train.tensorboard=false", "train.progress=false", "train.steps=1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world(tmp_path_factory.mktemp("w") / "world", 6, seed=1)


@pytest.fixture
def npz_dir(tmp_path: Path) -> Path:
    src = tmp_path / "npz"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in (1, 2):
        np.savez(src / f"{i}.npz", features=rng.normal(size=(3, 8)).astype(np.float32),
                 boxes=np.array([[0, 0, 5, 5]] * 3, np.float32), width=10, height=10)
    return src


def mine(path: Path) -> Path:
    """A directory holding something the user made."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "notes.txt").write_text("mine")
    return path


def test_world_make_over_an_existing_directory(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = mine(tmp_path / "w")
    refuse(capsys, ["world", "make", str(out), "--images", "2"], watch=[out],
           mentions=[str(out), "--overwrite"])


def test_features_world_out_is_the_world(world: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    refuse(capsys, ["features", "world", str(world), "--out", str(world)], watch=[world],
           mentions=[str(world)])
    refuse(capsys, ["features", "world", str(world), "--out", str(world), "--overwrite"],
           watch=[world], mentions=[str(world)])


def test_features_world_over_an_existing_store(world: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = mine(tmp_path / "store")
    refuse(capsys, ["features", "world", str(world), "--out", str(out)], watch=[world, out],
           mentions=[str(out), "--overwrite"])


@pytest.mark.parametrize("where", ["same", "inside"])
def test_import_npz_into_its_own_source(npz_dir: Path, where: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = npz_dir if where == "same" else npz_dir / "store"
    for extra in ([], ["--overwrite"]):
        refuse(capsys, ["features", "import-npz", str(npz_dir), str(out), *extra],
               watch=[npz_dir], mentions=[str(npz_dir)])


def test_import_npz_over_an_existing_store(npz_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = mine(tmp_path / "store")
    refuse(capsys, ["features", "import-npz", str(npz_dir), str(out)],
           watch=[npz_dir, out], mentions=[str(out)])
    assert main(["features", "import-npz", str(npz_dir), str(out), "--overwrite"]) == 0
    assert (out / "meta.json").is_file() and not (out / "notes.txt").exists()


def test_import_tsv_over_an_existing_directory(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    tsv = tmp_path / "feats.tsv"
    tsv.write_text("")  # never read: the output is checked first
    out = mine(tmp_path / "store")
    refuse(capsys, ["features", "import-tsv", str(tsv), str(out)], watch=[tsv, out],
           mentions=[str(out)])


def test_tokenizer_over_an_existing_vocabulary(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    captions = tmp_path / "captions.txt"
    captions.write_text("a red circle\na blue square\n")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\nmine\n")
    refuse(capsys, ["tokenizer", "train", "--captions", str(captions), "--out", str(vocab)],
           watch=[captions, vocab], mentions=[str(vocab), "--overwrite"])
    refuse(capsys, ["tokenizer", "train", "--captions", str(captions), "--out", str(captions),
                    "--overwrite"], watch=[captions], mentions=[str(captions)])


def test_finetune_into_an_existing_run(dataset: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["pretrain", f"data.world={dataset}", *TINY, f"train.out={out}"]) == 0
    refuse(capsys, ["finetune", "retrieval", f"data.world={dataset}", *TINY,
                    f"train.out={out}"], watch=[out], mentions=[str(out), "--resume"])


def test_evaluate_into_a_non_empty_directory(dataset: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["pretrain", f"data.world={dataset}", *TINY, f"train.out={run}"]) == 0
    out = mine(tmp_path / "eval")
    refuse(capsys, ["evaluate", "retrieval", "--checkpoint", str(run), "--out", str(out)],
           watch=[run, out], mentions=[str(out)])
    refuse(capsys, ["evaluate", "retrieval", "--checkpoint", str(run), "--out",
                    str(tmp_path)], watch=[run, out], mentions=["holds the input"])
    # a new directory inside the run it evaluates is fine
    assert main(["evaluate", "retrieval", "--checkpoint", str(run), "--out",
                 str(run / "eval_val")]) == 0
    assert (run / "eval_val" / "metrics_val.json").is_file()


def test_import_over_an_existing_directory(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = mine(tmp_path / "imported")
    refuse(capsys, ["import", "minilm", str(out)], watch=[out], mentions=[str(out)])


def test_refused_commands_leave_no_temporaries(tmp_path: Path, npz_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    before = tree_digest(tmp_path)
    refuse(capsys, ["features", "import-npz", str(npz_dir), str(npz_dir)])
    assert tree_digest(tmp_path) == before
    assert json.dumps(sorted(p.name for p in tmp_path.iterdir())) == '["npz"]'
