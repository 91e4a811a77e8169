"""Metrics to JSONL (one object per line, easy to plot) and TensorBoard; PNG curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlp.fileio import atomic_path, write_text_atomic


class MetricsLog:
    """Appends metric rows to ``metrics.jsonl`` and, optionally, TensorBoard.

    On resume the file is cut back to the resumed step, so a plot never shows the
    steps an interrupted run repeated.
    """

    def __init__(self, out: Path, resume_step: int = 0, tensorboard: bool = True) -> None:
        self.path = out / "metrics.jsonl"
        out.mkdir(parents=True, exist_ok=True)
        kept = [row for row in read_metrics(self.path) if row.get("step", 0) <= resume_step]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self.writer: Any = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step + 1)

    def log(self, step: int, values: dict[str, float]) -> None:
        """Record ``values`` at ``step``."""
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        """Flush TensorBoard."""
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl`` (empty if the file does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def plot_curves(rows: list[dict[str, Any]], keys: list[str], out: Path, title: str) -> Path:
    """Plot ``keys`` against step from metric rows into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key in keys:
        points = [(r["step"], r[key]) for r in rows if key in r]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, label=key)
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out
