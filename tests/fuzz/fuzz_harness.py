"""The fuzz suite's harness: run a ``vlp`` command on bad input and check that it is
refused the way a user needs it — exit 2, one ``error:`` line naming the file or field,
no traceback, nothing written, nothing deleted.

Every case is a parametrised test whose id names the kind of bad input; the suite's count
of kinds is the number of those ids (``pytest tests/fuzz -q --collect-only``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from vlp.errors import strict_mode
from vlp.train.cli import main

# a 1-layer, 32-wide model on the tiny dataset: the runs the fuzz tests attack and resume
TINY_RUN = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
            "model.intermediate_size=64", "data.token_budget=80", "train.warmup_steps=0",
            "train.tensorboard=false", "train.progress=false"]


def tiny_run(world: Path, out: Path, *overrides: str) -> Path:
    """``vlp pretrain`` of :data:`TINY_RUN` on ``world`` for 2 steps into ``out``."""
    assert main(["pretrain", f"data.world={world}", *TINY_RUN, "train.steps=2", *overrides,
                 f"train.out={out}"]) == 0
    return out


def tree_digest(*roots: Path) -> dict[str, str]:
    """Path → sha256 of every file under ``roots`` (directories as a marker), to check
    that a refused command changed nothing."""
    out: dict[str, str] = {}
    for root in roots:
        if root.is_file():
            out[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
        elif root.is_dir():
            out[str(root)] = "dir"
            for p in sorted(root.rglob("*")):
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() \
                    else "dir"
    return out


@dataclass
class Refusal:
    """What a refused command printed."""

    code: int
    line: str
    stdout: str


def refuse(capsys: pytest.CaptureFixture[str], argv: Sequence[str], *,
           watch: Sequence[Path] = (), absent: Sequence[Path] = (),
           mentions: Sequence[str] = (), strict: bool = False) -> Refusal:
    """Run ``vlp argv`` and assert it is refused properly.

    Args:
        capsys: pytest's capture fixture.
        argv: the command line after ``vlp``.
        watch: files and directories that must be byte-identical afterwards (inputs, and
            outputs that existed before).
        absent: paths that must not exist afterwards (outputs that did not exist).
        mentions: substrings the error line must contain (the file, the field).
        strict: run in strict mode (data warnings are errors).

    Returns:
        The exit code and the error line.
    """
    before = tree_digest(*watch)
    capsys.readouterr()
    with strict_mode(strict):
        code = main(list(argv))
    captured = capsys.readouterr()
    # split on newlines only: a progress bar redraws its line with carriage returns
    lines = [ln for ln in captured.err.split("\n") if ln.strip()
             and not ln.startswith("warning:") and "\r" not in ln]
    assert code == 2, f"exit {code}, stderr: {captured.err!r}"
    assert len(lines) == 1, f"expected one error line, got: {captured.err!r}"
    line = lines[0]
    assert line.startswith("error: "), line
    assert "Traceback" not in captured.err
    for text in mentions:
        assert text in line, f"{text!r} not in {line!r}"
    assert tree_digest(*watch) == before, "a refused command changed its inputs"
    for path in absent:
        assert not path.exists(), f"a refused command left {path}"
    return Refusal(code, line, captured.out)
