"""The README's commands run as written, in a fresh directory: the world and its region
features made by their commands, the configs the README names, then every command of
its "Downstream tasks" block, in order. Only sizes are turned down (a tiny model and a
few steps, appended as overrides), never paths."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from vlp.train.cli import main

pytestmark = pytest.mark.slow  # training runs

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
         "model.intermediate_size=64", "train.steps=2", "train.warmup_steps=1",
         "train.save_every=0", "train.precision=fp32", "train.progress=false",
         "train.tensorboard=false", "data.eval_pairs=20", "task.eval_limit=20"]


def _block(readme: str, heading: str) -> list[str]:
    """The ``vlp`` commands of the first bash block after ``heading``, comments dropped."""
    after = readme[readme.index(heading):]
    block = re.search(r"```bash\n(.*?)```", after, re.S)
    assert block is not None, heading
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()
            if line.startswith("vlp ")]


def _sized(argv: list[str]) -> list[str]:
    """The command with sizes turned down: a tiny model and two steps to train, twenty
    records to evaluate."""
    if argv[0] in ("pretrain", "finetune"):
        keep = [o for o in SMALL if not (argv[0] == "pretrain" and o.startswith("task."))]
        return [*argv, *keep]
    if argv[0] == "evaluate":
        return [*argv, "task.eval_limit=20"]
    return argv


def test_readme_commands_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    # "What the demo does": the world (with its vocabulary) and its region features
    for command in ("`vlp world make demo/world_v2 --images 3000`",
                    "`vlp features world demo/world_v2`",
                    "`vlp pretrain --config configs/{uniter,vilbert,vilt,soho}_world.yaml`"):
        assert command in readme, command
    assert main(["world", "make", "demo/world_v2", "--images", "60"]) == 0
    assert main(["features", "world", "demo/world_v2", "--epochs", "1"]) == 0
    assert main(_sized(["pretrain", "--config", "configs/uniter_world.yaml"])) == 0
    commands = _block(readme, "## Downstream tasks")
    assert len(commands) >= 5
    for command in commands:
        argv = shlex.split(command)[1:]
        if "--predictions" in argv:  # "a file": the user's, here the run's own
            shutil.copy("runs/vqa_world/predictions_val.json",
                        argv[argv.index("--predictions") + 1])
        capsys.readouterr()
        assert main(_sized(argv)) == 0, (command, capsys.readouterr().err)
