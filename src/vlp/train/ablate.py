"""``vlp ablate GRID.yaml``: a grid of config overrides × seeds, run resumably, and a table
that says which differences hold across seeds.

A grid names stages (a pre-training, then fine-tunings that start from it), arms (the
overrides each arm adds to each stage) and seeds. Every (arm, seed) is a cell: its stages
run in order as ``vlp`` commands, each in its own process, one run directory per stage
(``OUT/ARM/seed_S/STAGE``), a later stage started from an earlier one's run
(``train.init``). A stage that finished has a ``result.json`` and is never run again; one
that was interrupted is resumed (``--resume``), so a grid stopped anywhere continues where
it stood. The table gives, per stage and metric, each arm's mean with its 95 % interval
over seeds (Student's t), and for each pair of arms the paired difference over the seeds
both finished: the same seed means the same initialisation, batches and masks, so pairing
removes what the seeds share.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vlp.config import check, read_yaml
from vlp.errors import VlpError
from vlp.fileio import write_text_atomic
from vlp.train.runtime import code_version, machine, usable_cores

RESULT = "result.json"  # a finished stage's metrics and command

# Student's t, two-sided 95 %: degrees of freedom 1..30 (above: the normal's 1.96)
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


@dataclass
class Stage:
    """One step of every cell: a ``vlp pretrain`` or ``vlp finetune`` run.

    Attributes:
        name: the stage's name (its run directory in each cell, and what ``init`` names).
        command: ``pretrain``, ``finetune``, or ``evaluate``: ``vlp evaluate`` of the model
            ``init`` names (a fine-tuned stage) on ``split`` with the stage's overrides,
            e.g. the whole validation split (``task.eval_limit=0``) or the test split.
        task: the task a ``finetune`` or ``evaluate`` stage is about (``vqa``, ``ve``, …).
        split: the split an ``evaluate`` stage scores ("" — val).
        config: the stage's experiment YAML, relative to the grid file; "" — defaults.
        overrides: ``section.field=value`` for this stage in every arm.
        init: an earlier stage whose run this one starts from (``train.init``); "" — none.
        metrics: the final held-out metrics to tabulate, as the run logs them without
            ``eval/`` (``itm_acc``, ``vqa_acc``); empty — all of them.
    """

    name: str = ""
    command: Literal["pretrain", "finetune", "evaluate"] = "pretrain"
    task: str = ""
    split: str = ""
    config: str = ""
    overrides: list[str] = field(default_factory=list)
    init: str = ""
    metrics: list[str] = field(default_factory=list)


@dataclass
class Grid:
    """An ablation grid (the YAML ``vlp ablate`` reads).

    Attributes:
        name: the grid's name (its output directory under ``runs/ablations`` by default).
        out: where the cells and the table go; "" — ``runs/ablations/NAME``.
        seeds: ``train.seed`` of each cell of every arm.
        stages: the stages of every cell, in order.
        arms: arm → stage name → the overrides that arm adds to that stage (after the
            stage's own and its ``train.init``, so an arm may change either).
        skip: arm → stages that arm does not run; a stage started from a skipped one
            starts from scratch (the "scratch" arm of scratch vs pre-trained).
        pairs: ``[A, B]`` pairs of arms whose per-seed difference A − B is tabulated.
        parallel: cells run at once, each in its own processes.
    """

    name: str = "ablation"
    out: str = ""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    stages: list[Stage] = field(default_factory=list)
    arms: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    skip: dict[str, list[str]] = field(default_factory=dict)
    pairs: list[list[str]] = field(default_factory=list)
    parallel: int = 1

    def __post_init__(self) -> None:
        check(bool(self.stages), "stages", "a grid needs at least one stage")
        check(bool(self.arms), "arms", "a grid needs at least one arm (it may add nothing: "
              "{baseline: {}})")
        check(len(set(self.seeds)) == len(self.seeds) > 0, "seeds",
              f"expected distinct seeds, got {self.seeds}")
        check(self.parallel >= 1, "parallel", f"expected at least 1, got {self.parallel}")
        names: list[str] = []
        for i, stage in enumerate(self.stages):
            check(bool(stage.name) and stage.name not in names, f"stages[{i}].name",
                  f"expected a new name, got {stage.name!r}")
            check(stage.command == "pretrain" or bool(stage.task), f"stages[{i}].task",
                  f"a {stage.command} stage names its task")
            check(stage.command != "evaluate" or bool(stage.init), f"stages[{i}].init",
                  "an evaluate stage names the stage whose model it scores")
            check(not stage.split or stage.command == "evaluate", f"stages[{i}].split",
                  "only an evaluate stage has a split (a finetune stage: data.eval_split)")
            check(not stage.init or stage.init in names, f"stages[{i}].init",
                  f"expected an earlier stage ({', '.join(names) or 'none'}), got "
                  f"{stage.init!r}")
            names.append(stage.name)
        for arm, per_stage in self.arms.items():
            unknown = sorted(set(per_stage) - set(names))
            check(not unknown, f"arms.{arm}", f"unknown stage {unknown[:1]} (stages: "
                  f"{', '.join(names)})")
        for arm, skipped in self.skip.items():
            check(arm in self.arms, f"skip.{arm}", f"unknown arm (arms: {', '.join(self.arms)})")
            unknown = sorted(set(skipped) - set(names))
            check(not unknown, f"skip.{arm}", f"unknown stage {unknown[:1]}")
        for i, pair in enumerate(self.pairs):
            check(len(pair) == 2 and all(a in self.arms for a in pair) and pair[0] != pair[1],
                  f"pairs[{i}]", f"expected two different arms, got {pair}")


@dataclass
class Cell:
    """One stage of one (arm, seed): where it runs and what it ran."""

    arm: str
    seed: int
    stage: Stage
    out: Path
    command: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    machine: dict[str, str] = field(default_factory=dict)  # where it ran (runtime.machine)
    seconds: float | None = None  # wall time of the process that finished it (None: unknown)
    resumed: bool = False  # that process resumed an interrupted run: ``seconds`` is a part


def load_grid(path: str | Path, overrides: list[str] | None = None) -> Grid:
    """The grid of ``path`` (with ``key=value`` overrides of its top-level fields)."""
    from vlp.config import apply_overrides, from_dict

    data = apply_overrides(read_yaml(Path(path)), list(overrides or []))
    return from_dict(Grid, data, source=str(path))


def grid_out(grid: Grid) -> Path:
    """The grid's output directory."""
    return Path(grid.out or Path("runs") / "ablations" / grid.name)


def stage_command(grid: Grid, root: Path, arm: str, seed: int, stage: Stage, out: Path
                  ) -> list[str]:
    """The ``vlp`` command line of one stage of one cell (without ``--resume``)."""
    argv = [sys.executable, "-m", "vlp.train.cli", stage.command]
    if stage.command == "evaluate":
        argv.append(stage.task)
        if stage.config:
            argv += ["--config", str((root / stage.config).resolve())]
        if stage.split:
            argv += ["--split", stage.split]
        argv += ["--checkpoint", str((out.parent / stage.init).resolve()),
                 "--out", str(out.resolve()), *stage.overrides,
                 *grid.arms[arm].get(stage.name, [])]
        return argv
    if stage.command == "finetune":
        argv.append(stage.task)
    if stage.config:
        argv += ["--config", str((root / stage.config).resolve())]
    argv += stage.overrides
    if stage.init and stage.init not in grid.skip.get(arm, []):
        argv.append(f"train.init={(out.parent / stage.init).resolve()}")
    argv += grid.arms[arm].get(stage.name, [])
    return [*argv, f"train.seed={seed}", f"train.out={out.resolve()}", "train.progress=false"]


def t95(n: int) -> float:
    """Student's t quantile for a two-sided 95 % interval of a mean of ``n`` values."""
    return _T95[n - 2] if n - 1 <= len(_T95) else 1.96


def interval(values: list[float]) -> dict[str, Any]:
    """Mean, 95 % half-width (None for one value), standard deviation and n."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "half_width": None, "sd": None, "n": n, "values": values}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return {"mean": mean, "half_width": t95(n) * sd / math.sqrt(n), "sd": sd, "n": n,
            "values": values}


def paired(by_seed_a: dict[int, float], by_seed_b: dict[int, float]) -> dict[str, Any] | None:
    """The interval of A − B over the seeds both have (None if none), with those seeds."""
    seeds = sorted(set(by_seed_a) & set(by_seed_b))
    if not seeds:
        return None
    return {**interval([by_seed_a[s] - by_seed_b[s] for s in seeds]), "seeds": seeds}


def _final_metrics(run: Path, wanted: list[str]) -> dict[str, float]:
    """The last held-out metrics a run logged (``eval/NAME`` in ``metrics.jsonl``)."""
    from vlp.train.logging import read_metrics

    rows = [r for r in read_metrics(run / "metrics.jsonl") if any(k.startswith("eval/")
                                                                   for k in r)]
    if not rows:
        raise VlpError(f"{run / 'metrics.jsonl'}: no held-out metrics logged")
    found = {k.removeprefix("eval/"): float(v) for k, v in rows[-1].items()
             if k.startswith("eval/")}
    missing = [m for m in wanted if m not in found]
    if missing:
        raise VlpError(f"{run}: metric {missing[0]} was not logged (it logged "
                       f"{', '.join(sorted(found))})")
    return {m: found[m] for m in wanted} if wanted else found


def _scored_metrics(run: Path, stage: Stage) -> dict[str, float]:
    """What an evaluate stage wrote (``metrics_SPLIT.json``), the ``metrics`` asked for."""
    path = run / f"metrics_{stage.split or 'val'}.json"
    if not path.is_file():
        raise VlpError(f"{path}: not written (the evaluate stage's log says why)")
    found = {k: float(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    missing = [m for m in stage.metrics if m not in found]
    if missing:
        raise VlpError(f"{path}: metric {missing[0]} was not scored (it has "
                       f"{', '.join(sorted(found))})")
    return {m: found[m] for m in stage.metrics} if stage.metrics else found


def _what(argv: list[str]) -> list[str]:
    """A stage's command without what only says where (the interpreter, its run directory
    and the one it starts from; an evaluate stage's ``--out`` and ``--checkpoint``): what
    decides its result."""
    kept = []
    skip = False
    for a in argv[1:]:
        if skip or a.startswith(("train.out=", "train.init=")):
            skip = False
        elif a in ("--out", "--checkpoint"):
            skip = True
        else:
            kept.append(a)
    return kept


def cell_environment(parallel: int) -> dict[str, str]:
    """The environment of a stage's process: with cells in parallel, the machine's cores
    shared between them (``OMP_NUM_THREADS``, unless set already), so that parallel runs
    do not each start a thread per core and slow one another down."""
    env = dict(os.environ)
    if parallel > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, usable_cores() // parallel))
    return env


def _config_path(command: list[str]) -> Path | None:
    """The experiment YAML a stage's command reads (``--config``), if any."""
    return Path(command[command.index("--config") + 1]) if "--config" in command else None


def config_digest(command: list[str]) -> str:
    """sha256 of the experiment YAML a stage's command reads (``--config``); "" — none."""
    path = _config_path(command)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path and path.is_file() else ""


def say(line: str) -> None:
    """One line to standard output in one write (cells in parallel threads share it)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _changed(record: dict[str, Any], command: list[str]) -> str:
    """How a finished stage's record differs from what the grid now says ("" — not)."""
    if _what(record["command"]) != _what(command):
        return f"with other settings ({shlex.join(_what(record['command']))})"
    digest = config_digest(command)
    if not digest:
        return ""
    config = _config_path(command)
    if "config_sha256" not in record:  # written before vlp recorded it
        return f"before vlp recorded its config's digest ({config} may have changed since)"
    return "" if record["config_sha256"] == digest else f"with {config} as it was then"


def run_stage(cell: Cell, log: Any = say, env: dict[str, str] | None = None) -> Cell:
    """Run (or resume) one stage unless its ``result.json`` says it finished; ``env``:
    its process's environment (None: this one's)."""
    done = cell.out / RESULT
    if done.is_file():
        record = json.loads(done.read_text(encoding="utf-8"))
        changed = _changed(record, cell.command)
        if changed:
            sys.stderr.write(f"warning: {done}: this stage finished {changed}; its result "
                             "stands — delete the file to run the stage as the grid now "
                             "says\n")
        cell.command, cell.metrics = record["command"], record["metrics"]
        cell.machine = record.get("machine", {})  # {}: finished before vlp recorded it
        cell.seconds, cell.resumed = record.get("seconds"), bool(record.get("resumed"))
        return cell
    argv = list(cell.command)
    if cell.stage.command == "evaluate":
        if cell.out.exists():
            argv.append("--overwrite")  # scoring again from the start
    elif (cell.out / "checkpoints").is_dir():
        argv.append("--resume")  # an interrupted run: continue it
    elif cell.out.exists():
        argv.append("--overwrite")  # stopped before its first checkpoint
    cell.out.parent.mkdir(parents=True, exist_ok=True)
    digest = config_digest(cell.command)  # the file as this run reads it
    version = code_version()  # the code as this run imports it
    log(f"   {cell.arm} seed {cell.seed} {cell.stage.name}: running")
    start = time.monotonic()
    with open(cell.out.parent / f"{cell.stage.name}.log", "w", encoding="utf-8") as out:
        code = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False,
                              env=env).returncode
    seconds = round(time.monotonic() - start, 1)
    if code != 0:
        cell.error = f"exit {code}; see {cell.out.parent / (cell.stage.name + '.log')}"
        return cell
    cell.metrics = (_scored_metrics(cell.out, cell.stage) if cell.stage.command == "evaluate"
                    else _final_metrics(cell.out, cell.stage.metrics))
    cell.machine, cell.seconds = {**machine(), "vlp": version}, seconds
    cell.resumed = "--resume" in argv
    write_text_atomic(done, json.dumps({"command": cell.command, "metrics": cell.metrics,
                                        "config_sha256": digest, "machine": cell.machine,
                                        "seconds": seconds, "resumed": cell.resumed},
                                       indent=1) + "\n")
    log(f"   {cell.arm} seed {cell.seed} {cell.stage.name}: "
        + ", ".join(f"{k} {v:.4g}" for k, v in cell.metrics.items()))
    return cell


def _run_cell(cells: list[Cell], env: dict[str, str] | None = None) -> list[Cell]:
    """A cell's stages in order; a failed stage stops the ones after it."""
    for i, cell in enumerate(cells):
        run_stage(cell, env=env)
        if cell.error:
            for later in cells[i + 1:]:
                later.error = f"not run: {cell.stage.name} failed"
            break
    return cells


def plan(grid: Grid, root: Path) -> list[list[Cell]]:
    """Every (arm, seed)'s stages, with their commands."""
    out = grid_out(grid)
    cells = []
    for arm in grid.arms:
        for seed in grid.seeds:
            where = out / arm / f"seed_{seed}"
            skipped = grid.skip.get(arm, [])
            cells.append([Cell(arm, seed, stage, where / stage.name,
                               stage_command(grid, root, arm, seed, stage, where / stage.name))
                          for stage in grid.stages if stage.name not in skipped
                          and not (stage.command == "evaluate" and stage.init in skipped)])
    return cells


def check_grid(grid: Grid, root: Path) -> None:
    """Read every stage's config with every arm's overrides, as its command will, so a
    misspelt key or a missing file stops the grid before anything runs.

    Raises:
        VlpError: naming the stage and arm, then the config's own one-line error.
    """
    from vlp.config import load_config
    from vlp.train.config import FinetuneConfig, PretrainConfig

    for stage in grid.stages:
        cls = PretrainConfig if stage.command == "pretrain" else FinetuneConfig
        config = (root / stage.config) if stage.config else None
        task = [f"task.name={stage.task}"] if stage.command != "pretrain" else []
        for arm, per_stage in grid.arms.items():
            try:
                load_config(cls, config, [*task, *stage.overrides,
                                          *per_stage.get(stage.name, [])])
            except VlpError as err:
                raise VlpError(f"stage {stage.name}, arm {arm}: {err}") from None


def run_grid(path: str | Path, overrides: list[str] | None = None, dry_run: bool = False
             ) -> dict[str, Any]:
    """``vlp ablate``: run the grid of ``path`` (what is not done yet) and write its table:
    ``results.json``, ``results.md`` and ``results.png`` in the grid's directory."""
    grid = load_grid(path, overrides)
    root = Path(path).resolve().parent
    check_grid(grid, root)
    cells = plan(grid, root)
    if dry_run:
        for stages in cells:
            for c in stages:
                print(shlex.join(c.command))
        return {}
    out = grid_out(grid)
    out.mkdir(parents=True, exist_ok=True)
    print(f"ablation {grid.name}: {len(grid.arms)} arms × {len(grid.seeds)} seeds × "
          f"{len(grid.stages)} stages in {out}")
    with ThreadPoolExecutor(max_workers=grid.parallel) as pool:
        finished = list(pool.map(functools.partial(
            _run_cell, env=cell_environment(grid.parallel)), cells))
    result = tabulate(grid, [c for stages in finished for c in stages])
    write_text_atomic(out / "results.json", json.dumps(result, indent=1) + "\n")
    write_text_atomic(out / "results.md", markdown(result))
    plot_results(result, out / "results.png")
    print(markdown(result))
    failed = [c for stages in finished for c in stages if c.error]
    if failed:
        raise VlpError(f"{len(failed)} stage(s) did not finish, e.g. {failed[0].arm} seed "
                       f"{failed[0].seed} {failed[0].stage.name}: {failed[0].error}")
    return result


def tabulate(grid: Grid, cells: list[Cell]) -> dict[str, Any]:
    """Per stage and metric: each arm's interval over seeds, and each pair's paired one."""
    table: dict[str, dict[str, Any]] = {}
    for stage in grid.stages:
        done = [c for c in cells if c.stage.name == stage.name and not c.error]
        metrics = sorted({m for c in done for m in c.metrics})
        for metric in metrics:
            by_arm = {arm: {c.seed: c.metrics[metric] for c in done
                            if c.arm == arm and metric in c.metrics} for arm in grid.arms}
            row: dict[str, Any] = {
                "arms": {a: interval(list(v.values())) for a, v in by_arm.items() if v},
                "pairs": {f"{a} - {b}": paired(by_arm[a], by_arm[b]) for a, b in grid.pairs}}
            table[f"{stage.name}/{metric}"] = row
    return {"grid": grid.name, "seeds": grid.seeds, "arms": list(grid.arms), "table": table,
            "cells": [{"arm": c.arm, "seed": c.seed, "stage": c.stage.name,
                       "dir": str(c.out), "command": shlex.join(c.command),
                       "metrics": c.metrics, "error": c.error, "machine": c.machine,
                       "seconds": c.seconds, "resumed": c.resumed}
                      for c in cells],
            "machines": _machines(cells), "stage_seconds": _stage_seconds(grid, cells)}


def _stage_seconds(grid: Grid, cells: list[Cell]) -> dict[str, dict[str, float]]:
    """Per stage, the wall time of its finished runs that ran whole in one process (a
    resumed run timed only its last process): median, total and how many; and how many
    resumed runs were left out."""
    times: dict[str, dict[str, float]] = {}
    for stage in grid.stages:
        done = [c for c in cells
                if c.stage.name == stage.name and not c.error and c.seconds is not None]
        whole = [c.seconds for c in done if not c.resumed and c.seconds is not None]
        if whole:
            times[stage.name] = {"median": statistics.median(whole), "total": sum(whole),
                                 "runs": len(whole), "resumed": len(done) - len(whole)}
    return times


def _machines(cells: list[Cell]) -> list[dict[str, Any]]:
    """Each machine and vlp version the grid's finished stages ran on, with how many ran
    there (a stage finished before vlp recorded it counts under ``unknown``)."""
    seen: dict[str, dict[str, Any]] = {}
    for c in cells:
        if c.error:
            continue
        key = json.dumps(c.machine, sort_keys=True)
        entry = seen.setdefault(key, {**(c.machine or {"cpu": "unknown"}), "stages": 0})
        entry["stages"] += 1
    return list(seen.values())


def _fmt(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "—"
    if stats["half_width"] is None:
        return f"{stats['mean']:.4g} (n=1)"
    return f"{stats['mean']:.4g} ± {stats['half_width']:.2g} (n={stats['n']})"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def markdown(result: dict[str, Any]) -> str:
    """The table as Markdown: mean ± 95 % half-width (n seeds) per arm, then each pair."""
    table = result["table"]
    present = {a for row in table.values() for a in row["arms"]}
    arms = [a for a in result.get("arms", sorted(present)) if a in present]  # the grid's order
    pairs = list(dict.fromkeys(p for row in table.values() for p in row["pairs"]))
    lines = [f"## {result['grid']}: mean ± 95 % interval over seeds {result['seeds']}", "",
             "| stage/metric | " + " | ".join([*arms, *(f"paired {p}" for p in pairs)]) + " |",
             "|---" * (1 + len(arms) + len(pairs)) + "|"]
    for key, row in table.items():
        cells = [_fmt(row["arms"].get(a)) for a in arms]
        cells += [_fmt(row["pairs"].get(p)) for p in pairs]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "Each cell's command (seed 0 of each arm; the others differ in train.seed "
              "and train.out):", ""]
    seen = set()
    for c in result["cells"]:
        if (c["arm"], c["stage"]) not in seen and c["seed"] == result["seeds"][0]:
            seen.add((c["arm"], c["stage"]))
            lines.append(f"- {c['arm']} / {c['stage']}: `{c['command']}`")
    seconds = result.get("stage_seconds", {})
    if seconds:
        total = sum(t["total"] for t in seconds.values())
        resumed = sum(t.get("resumed", 0) for t in seconds.values())
        left_out = f"; {resumed} resumed runs left out" if resumed else ""
        lines += ["", "Wall time a stage, median over its runs (one process each; "
                  f"{_duration(total)} of processes in all{left_out}): "
                  + ", ".join(f"{name} {_duration(t['median'])}" for name, t in seconds.items())]
    machines = result.get("machines", [])
    if machines:
        lines += ["", "Ran on:", ""]
        lines += ["- " + ", ".join(f"{k} {v}" for k, v in m.items() if k != "stages")
                  + f" ({m['stages']} stages)" for m in machines]
    return "\n".join(lines) + "\n"


def plot_results(result: dict[str, Any], path: Path) -> None:
    """One panel per stage/metric: each arm's mean with its 95 % interval, seeds as dots;
    then, for each stage/metric with paired arms, their per-seed differences the same
    way around a line at 0 (what decides whether A beats B)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(key, row["arms"]) for key, row in result["table"].items()]
    rows += [(f"{key}: paired", {p: d for p, d in row["pairs"].items() if d})
             for key, row in result["table"].items() if any(row["pairs"].values())]
    if not rows:
        return
    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.4), squeeze=False)
    for ax, (key, bars) in zip(axes[0], rows, strict=True):
        for i, s in enumerate(bars.values()):
            ax.bar(i, s["mean"], yerr=s["half_width"] or 0, capsize=4, alpha=0.6)
            ax.plot([i] * len(s["values"]), s["values"], "k.", ms=4)
        if key.endswith(": paired"):
            ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xticks(range(len(bars)), list(bars), rotation=30, ha="right", fontsize=8)
        ax.set_title(key, fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


__all__ = ["Grid", "Stage", "check_grid", "interval", "load_grid", "paired", "plan", "run_grid",
           "stage_command", "t95", "tabulate"]
