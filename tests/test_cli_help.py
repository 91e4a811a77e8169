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
