"""Every option of every vlp command says what it does, and its default where it has one."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from vlp.train.cli import build_parser


def _actions(parser: argparse.ArgumentParser, path: str
             ) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_option_has_help_with_its_default() -> None:
    found = list(_actions(build_parser(), "vlp"))
    assert len({path for path, _ in found}) >= 15  # every subcommand was walked
    missing = []
    for path, action in found:
        name = action.option_strings[0] if action.option_strings else action.dest
        text = action.help or ""
        if not text.strip():
            missing.append(f"{path} {name}: no help")
        elif action.option_strings and action.default not in (None, False) \
                and "default" not in text:
            missing.append(f"{path} {name}: default {action.default!r} not said")
    assert missing == []


def test_every_help_page_renders() -> None:
    """`vlp --help` and `vlp CMD --help` format without error (a bare '%' in a help breaks it)."""
    def walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from walk(sub)

    pages = [parser.format_help() for parser in walk(build_parser())]
    assert len(pages) >= 15 and all("usage:" in page for page in pages)
    assert "95 % intervals" in " ".join(pages[0].split())  # the top page lists each command's help


def test_output_cut_short_by_its_reader_ends_quietly() -> None:
    """`vlp ablate GRID --dry-run | head -1`: no traceback when the reader stops reading."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    grid = Path(__file__).resolve().parents[1] / "configs" / "ablations" / "mrm.yaml"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a shell's
    proc = subprocess.Popen([sys.executable, "-m", "vlp.train.cli", "ablate", str(grid),
                             "--dry-run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before vlp (seconds to import) writes a line
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and "Traceback" not in err, err
