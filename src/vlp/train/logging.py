"""Metrics to JSONL (one object per line, easy to plot) and TensorBoard; PNG curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlp.errors import data_warning
from vlp.fileio import atomic_path, write_text_atomic


class MetricsLog:
    """Appends metric rows to ``metrics.jsonl`` and, optionally, TensorBoard.

    On resume the file is cut back to the resumed step, so a plot never shows the
    steps an interrupted run repeated.
    """

    def __init__(self, out: Path, resume_step: int = 0, tensorboard: bool = True,
                 enabled: bool = True) -> None:
        self.path = out / "metrics.jsonl"
        self.enabled = enabled  # False on the ranks of a DDP run that do not write
        self.writer: Any = None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        kept = [row for row in read_metrics(self.path) if row.get("step", 0) <= resume_step]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step + 1)

    def log(self, step: int, values: dict[str, float]) -> None:
        """Record ``values`` at ``step``."""
        if not self.enabled:
            return
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
    """Rows of a ``metrics.jsonl`` (empty if the file does not exist).

    A line that is not a JSON object (the torn last line of a killed process, or bytes
    that are not UTF-8) is skipped with one warning that counts them.
    """
    if not path.is_file():
        return []
    rows, torn = [], []
    text = path.read_bytes().decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict) and isinstance(row.get("step", 0), int):
            rows.append(row)
        else:
            torn.append(number)
    if torn:
        data_warning(path, None, f"skipped {len(torn)} unreadable line(s) (first: line "
                     f"{torn[0]}), e.g. the torn last line of a killed run")
    return rows


def plot_curves(rows: list[dict[str, Any]], keys: list[str], out: Path, title: str) -> Path:
    """Plot ``keys`` against step from metric rows into a PNG."""
    series = {key: [(r["step"], r[key]) for r in rows if key in r] for key in keys}
    return plot_series({k: v for k, v in series.items() if v}, out, title)


def plot_series(series: dict[str, list[tuple[float, float]]], out: Path, title: str,
                panels: dict[str, list[str]] | None = None) -> Path:
    """Plot named ``(step, value)`` series into a PNG, written atomically.

    Args:
        series: label → points.
        out: the PNG.
        title: the figure's title.
        panels: panel title → the labels it shows, side by side; one panel when None.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = panels or {title: list(series)}
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4), squeeze=False)
    for ax, (name, labels) in zip(axes[0], groups.items(), strict=True):
        for label in labels:
            if series.get(label):
                xs, ys = zip(*series[label], strict=True)
                ax.plot(xs, ys, label=label, marker="." if len(xs) < 30 else None)
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out
