"""``vlp ablate``: intervals worked by hand, paired differences on the right seeds, grids
checked when read, and a grid that resumes without running a finished cell again."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import yaml

from vlp.errors import VlpError
from vlp.train.ablate import (
    Cell,
    Stage,
    _changed,
    _scored_metrics,
    cell_environment,
    config_digest,
    interval,
    load_grid,
    markdown,
    paired,
    plan,
    run_stage,
    t95,
    tabulate,
)
from vlp.train.cli import main


def test_interval_by_hand() -> None:
    """1, 2, 3: mean 2, sd 1, t(2 df) = 4.303, half-width 4.303 / √3 = 2.484."""
    stats = interval([1.0, 2.0, 3.0])
    assert stats["mean"] == 2.0 and stats["sd"] == pytest.approx(1.0)
    assert stats["half_width"] == pytest.approx(2.4844, abs=1e-4)
    assert interval([5.0])["half_width"] is None  # one seed: no interval at all
    assert t95(2) == 12.706 and t95(31) == 2.042 and t95(100) == 1.96


def test_paired_differences_pair_the_same_seeds() -> None:
    a = {0: 1.0, 1: 5.0, 2: 3.0}
    b = {2: 10.0, 0: 0.0, 1: 2.0, 5: 9.0}  # seed 5 has no partner; order differs
    diff = paired(a, b)
    assert diff is not None and diff["seeds"] == [0, 1, 2]
    assert diff["values"] == [1.0, 3.0, -7.0] and diff["mean"] == pytest.approx(-1.0)
    assert paired(a, {7: 1.0}) is None


def test_stage_times_leave_resumed_runs_out(tmp_path: Path) -> None:
    grid = load_grid(_write(tmp_path / "g.yaml", {
        "stages": [{"name": "pre"}, {"name": "vqa", "command": "finetune", "task": "vqa",
                                     "init": "pre"}],
        "arms": {"a": {}, "b": {}}, "pairs": [["b", "a"]]}))
    cells = [c for stages in plan(grid, tmp_path) for c in stages]
    for i, c in enumerate(cells):
        c.metrics = {"x": 1.0}
        c.seconds = 600.0 + 60 * i if c.stage.name == "pre" else 30.0
    cells[0].resumed = True  # a, seed 0, pre: only its last process was timed
    cells[1].error = "exit 1"  # a failed stage counts nowhere
    result = tabulate(grid, cells)
    pre = [600.0 + 60 * i for i, c in enumerate(cells) if c.stage.name == "pre"][1:]
    assert result["stage_seconds"]["pre"] == {"median": statistics.median(pre),
                                             "total": sum(pre), "runs": 5, "resumed": 1}
    assert result["stage_seconds"]["vqa"]["runs"] == 5
    line = [ln for ln in markdown(result).splitlines() if ln.startswith("Wall time")]
    assert line == [f"Wall time a stage, median over its runs (one process each; "
                    f"{(sum(pre) + 150) / 60:.1f} min of processes in all; 1 resumed runs "
                    f"left out): pre {statistics.median(pre) / 60:.1f} min, vqa 30 s"]


def _write(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_grid_is_checked_when_read(tmp_path: Path) -> None:
    stages = [{"name": "pre"}, {"name": "vqa", "command": "finetune", "task": "vqa",
                                "init": "pre"}]
    good = _write(tmp_path / "g.yaml", {"stages": stages, "arms": {"a": {}, "b": {}},
                                         "pairs": [["b", "a"]]})
    grid = load_grid(good)
    cells = plan(grid, tmp_path)
    assert len(cells) == 2 * 3 and [c.stage.name for c in cells[0]] == ["pre", "vqa"]
    vqa = cells[0][1].command
    assert vqa[3:5] == ["finetune", "vqa"]
    assert f"train.init={cells[0][0].out.resolve()}" in vqa  # chained from its own pre
    assert "train.seed=0" in vqa
    scratch = plan(load_grid(good, ["skip={b: [pre]}"]), tmp_path)
    assert [c.stage.name for c in scratch[3]] == ["vqa"]  # arm b, seed 0: no pre-training
    assert not any(a.startswith("train.init=") for a in scratch[3][0].command)
    for bad, key in (({"stages": [{"name": "vqa", "init": "pre"}], "arms": {"a": {}}},
                      "stages[0].init"),
                     ({"stages": stages, "arms": {"a": {"ft": ["x=1"]}}}, "arms.a"),
                     ({"stages": stages, "arms": {"a": {}}, "pairs": [["a", "z"]]},
                      "pairs[0]"),
                     ({"stages": stages, "arms": {"a": {}}, "colour": 1}, "colour")):
        with pytest.raises(VlpError, match=key.replace("[", r"\[").replace("]", r"\]")):
            load_grid(_write(tmp_path / "bad.yaml", bad))


@pytest.mark.slow  # three tiny pre-training runs, each in its own process
def test_a_grid_resumes_without_running_a_finished_cell(
        dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = [f"data.world={dataset}", "data.token_budget=60", "data.bucket_size=8",
            "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
            "model.intermediate_size=64", "train.warmup_steps=1", "train.precision=fp32",
            "train.tensorboard=false", "train.steps=2", "train.save_every=0",
            "data.eval_pairs=8"]
    grid = _write(tmp_path / "grid.yaml", {
        "name": "masking", "out": str(tmp_path / "out"), "seeds": [0],
        "stages": [{"name": "pre", "overrides": tiny, "metrics": ["mlm_acc", "itm_acc"]}],
        "arms": {"conditional": {}, "joint": {"pre": ["objectives.masking=joint"]}},
        "pairs": [["joint", "conditional"]]})
    assert main(["ablate", str(grid)]) == 0
    out = tmp_path / "out"
    assert capsys.readouterr().out.count(": running") == 2
    result = json.loads((out / "results.json").read_text())
    row = result["table"]["pre/mlm_acc"]
    assert row["arms"]["joint"]["n"] == 1 and row["pairs"]["joint - conditional"]["seeds"] == [0]
    assert (out / "results.png").stat().st_size > 0
    assert "paired joint - conditional" in (out / "results.md").read_text()
    assert "objectives.masking=joint" in (out / "results.md").read_text()
    # where the stages ran: the same config trains in bf16 or fp32 by the CPU
    from vlp.train.runtime import code_version, machine
    assert result["machines"] == [{**machine(), "vlp": code_version(), "stages": 2}]
    assert code_version().startswith("0.")
    assert f"cpu {machine()['cpu']}" in (out / "results.md").read_text()
    # how long each stage took: recorded per run, summed per stage, said in the table
    record = json.loads((out / "joint" / "seed_0" / "pre" / "result.json").read_text())
    assert record["seconds"] > 0 and record["resumed"] is False
    assert result["stage_seconds"]["pre"]["runs"] == 2
    assert result["stage_seconds"]["pre"]["total"] == pytest.approx(
        sum(c["seconds"] for c in result["cells"]))
    assert "Wall time a stage" in (out / "results.md").read_text()

    # a finished grid runs nothing; a lost cell (its result gone) is the only one run again
    assert main(["ablate", str(grid)]) == 0
    assert ": running" not in capsys.readouterr().out
    # an arm edited after its cell finished: the result stands, and the warning says so
    edited = yaml.safe_load(grid.read_text())
    edited["arms"]["joint"]["pre"] = ["objectives.masking=joint", "train.lr=5e-4"]
    _write(grid, edited)
    assert main(["ablate", str(grid)]) == 0
    said = capsys.readouterr()
    assert ": running" not in said.out and "finished with other settings" in said.err
    edited["arms"]["joint"]["pre"] = ["objectives.masking=joint"]
    _write(grid, edited)
    (out / "joint" / "seed_0" / "pre" / "result.json").unlink()
    assert main(["ablate", str(grid)]) == 0
    said = capsys.readouterr().out
    assert said.count(": running") == 1 and "joint seed 0 pre: running" in said
    again = json.loads((out / "results.json").read_text())["table"]["pre/mlm_acc"]
    assert again["arms"]["joint"]["values"] == row["arms"]["joint"]["values"]


CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "ablations"


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_grid_reads_with_every_arm(name: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Each stage's config with each arm's overrides loads (keys, types, ranges), and
    --dry-run prints every cell's commands: at least 3 seeds per arm."""
    assert main(["ablate", str(CONFIGS / f"{name}.yaml"), "--dry-run"]) == 0
    grid = load_grid(CONFIGS / f"{name}.yaml")
    assert len(grid.seeds) >= 3 and grid.pairs
    lines = capsys.readouterr().out.splitlines()
    runs = sum(len(grid.stages) - len(grid.skip.get(a, [])) for a in grid.arms)
    assert len(lines) == runs * len(grid.seeds)


def test_parallel_cells_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("vlp.train.ablate.usable_cores", lambda: 8)
    assert cell_environment(4)["OMP_NUM_THREADS"] == "2"
    assert cell_environment(16)["OMP_NUM_THREADS"] == "1"
    assert "OMP_NUM_THREADS" not in cell_environment(1)  # one cell: torch's own default
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice stands
    assert cell_environment(4)["OMP_NUM_THREADS"] == "3"


def test_a_finished_stage_whose_config_file_changed_is_said_to_stand(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "vqa.yaml"
    config.write_text("train:\n  steps: 150\n")
    command = ["python", "-m", "vlp.train.cli", "finetune", "vqa", "--config", str(config),
               "train.seed=0", f"train.out={tmp_path / 'vqa'}"]
    (tmp_path / "vqa").mkdir()
    (tmp_path / "vqa" / "result.json").write_text(json.dumps(
        {"command": command, "metrics": {"vqa_acc": 41.0},
         "config_sha256": config_digest(command)}))
    cell = Cell("pretrained", 0, Stage(name="vqa", command="finetune", task="vqa"),
                tmp_path / "vqa", command)
    assert run_stage(cell).metrics == {"vqa_acc": 41.0}
    assert "warning" not in capsys.readouterr().err
    config.write_text("train:\n  steps: 300\n")  # same command line, another experiment
    assert run_stage(cell).metrics == {"vqa_acc": 41.0}  # never re-run on its own
    err = capsys.readouterr().err
    assert f"finished with {config} as it was then" in err and "delete the file" in err
    # a result from before vlp recorded digests may have been made with another file too
    (tmp_path / "vqa" / "result.json").write_text(json.dumps(
        {"command": command, "metrics": {"vqa_acc": 41.0}}))
    assert run_stage(cell).metrics == {"vqa_acc": 41.0}
    assert "before vlp recorded its config's digest" in capsys.readouterr().err


def test_an_evaluate_stage_scores_the_model_its_init_names(tmp_path: Path) -> None:
    stages = [{"name": "pre"}, {"name": "vqa", "command": "finetune", "task": "vqa",
                                "init": "pre"},
              {"name": "vqa_all", "command": "evaluate", "task": "vqa", "init": "vqa",
               "split": "test", "overrides": ["task.eval_limit=0"], "metrics": ["vqa_acc"]}]
    grid = load_grid(_write(tmp_path / "g.yaml", {
        "stages": stages, "arms": {"pretrained": {}, "scratch": {}}, "out": str(tmp_path / "o"),
        "skip": {"scratch": ["pre"]}, "seeds": [0]}))
    pretrained, scratch = plan(grid, tmp_path)
    evaluate = pretrained[2].command
    assert evaluate[3:5] == ["evaluate", "vqa"]
    assert evaluate[evaluate.index("--split") + 1] == "test"
    assert evaluate[evaluate.index("--checkpoint") + 1] == str(pretrained[1].out.resolve())
    assert evaluate[evaluate.index("--out") + 1] == str(pretrained[2].out.resolve())
    assert "task.eval_limit=0" in evaluate and not any(a.startswith("train.") for a in evaluate)
    assert [c.stage.name for c in scratch] == ["vqa", "vqa_all"]  # its own fine-tuned model
    # a grid moved elsewhere: where the model and the scores lie is not a setting
    moved = [a.replace(str(tmp_path / "o"), "/elsewhere") for a in evaluate]
    assert moved != evaluate and _changed({"command": moved}, evaluate) == ""
    # what the evaluation wrote is the stage's result
    out = pretrained[2].out
    out.mkdir(parents=True)
    (out / "metrics_test.json").write_text(json.dumps({"vqa_acc": 51.5, "vqa/scored": 1500}))
    assert _scored_metrics(out, pretrained[2].stage) == {"vqa_acc": 51.5}
    for bad, key in (({"name": "e", "command": "evaluate", "task": "vqa"}, "stages[1].init"),
                     ({"name": "e", "command": "evaluate", "init": "pre"}, "stages[1].task"),
                     ({"name": "e", "command": "finetune", "task": "vqa", "split": "test"},
                      "stages[1].split")):
        with pytest.raises(VlpError, match=key.replace("[", r"\[").replace("]", r"\]")):
            load_grid(_write(tmp_path / "bad.yaml", {"stages": [{"name": "pre"}, bad],
                                                     "arms": {"a": {}}}))
