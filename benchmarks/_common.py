"""Helpers shared by the benchmark scripts: run metadata, JSON output, tables, captions.

Not a library module: the scripts import it as ``_common`` because Python puts
``benchmarks/`` on the path when a script there is run.
"""

from __future__ import annotations

import datetime
import json
import platform
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlp.data.tokenizer import Tokenizer
from vlp.fileio import write_text_atomic
from vlp.train.runtime import machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
KARPATHY_TEST = ROOT.parent / "shared" / "data" / "coco" / "karpathy_test_captions.json"


def _python() -> str:
    """The interpreter, relative to the project root when it lies inside it."""
    exe = Path(sys.executable)
    return str(exe.relative_to(ROOT)) if exe.is_relative_to(ROOT) else str(exe)


def run_info() -> dict[str, Any]:
    """What a result was measured with: command, versions, hardware, date."""
    host = machine()  # a CPU's name does not say whether it computes bf16: cpu_bf16 does
    info: dict[str, Any] = {
        "command": shlex.join([_python(), *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": host["cpu"],
        "cpu_bf16": host["cpu_bf16"],
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_results(path: Path, payload: dict[str, Any]) -> None:
    """Write ``{"run": run_info(), **payload}`` as indented JSON and say where."""
    write_text_atomic(path, json.dumps({"run": run_info(), **payload}, indent=2) + "\n")
    print(f"\nresults: {path}")


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned first column, right-aligned others, widths from the content."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                        strict=True)]
        lines.append("  ".join(cells))
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def ratio(a: float, b: float) -> str:
    """``a / b`` as ``1.23x`` (``-`` when ``b`` is 0)."""
    return f"{a / b:.2f}x" if b else "-"


def load_captions(path: Path) -> list[list[str]]:
    """Captions per image of an ALBEF/BLIP-style ``[{"image", "caption": [...]}]`` file."""
    entries = json.loads(Path(path).read_text(encoding="utf-8"))
    return [list(e["caption"]) for e in entries]


def caption_tokenizer(texts: list[str], vocab: Path | None, vocab_size: int = 8000) -> Tokenizer:
    """A BERT ``vocab.txt`` if given, else WordPiece trained on ``texts`` (in a temp dir)."""
    if vocab is not None:
        return Tokenizer.from_vocab(vocab)
    with tempfile.TemporaryDirectory() as tmp:
        return Tokenizer.train(texts, Path(tmp) / "vocab.txt", vocab_size=vocab_size)


def token_lengths(tokenizer: Tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    """(N,) WordPiece tokens per text, ``[CLS]``/``[SEP]`` included, truncated."""
    return np.array([len(ids) for ids in tokenizer.encode(texts, max_length)], dtype=np.int64)
