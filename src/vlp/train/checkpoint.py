"""Checkpoints: safetensors weights plus everything needed to resume exactly.

A checkpoint is a directory ``step_XXXXXXXX`` holding ``model.safetensors``,
``state.pt`` (optimizer, scheduler, sampler position, RNG state, step) and
``config.yaml``. It is built under a temporary name and renamed, so a run killed
while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from vlp.errors import VlpError
from vlp.fileio import atomic_path

_STEP_DIR = re.compile(r"^step_(\d{8})$")


def save_checkpoint(root: Path, step: int, model: nn.Module, state: dict[str, Any],
                    config_yaml: str, keep: int = 2) -> Path:
    """Write checkpoint ``step`` under ``root`` atomically; keep the newest ``keep``."""
    path = root / f"step_{step:08d}"
    with atomic_path(path) as tmp:
        tmp.mkdir()
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(state, tmp / "state.pt")
        (tmp / "config.yaml").write_text(config_yaml, encoding="utf-8")
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return path


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP_DIR.match(p.name)
             and (p / "model.safetensors").is_file() and (p / "state.pt").is_file()]
    return sorted(found, key=lambda p: p.name)


def load_weights(model: nn.Module, path: Path) -> None:
    """Load ``model.safetensors`` from a checkpoint directory (or a file) into ``model``."""
    file = path / "model.safetensors" if path.is_dir() else path
    if not file.is_file():
        raise VlpError(f"{file}: checkpoint weights not found")
    missing, unexpected = load_model(model, str(file), strict=False)
    if missing or unexpected:
        names = (missing or unexpected)[:3]
        kind = "missing" if missing else "unexpected"
        raise VlpError(f"{file}: weights do not fit the model ({kind}: {', '.join(names)})")


def load_state(path: Path) -> dict[str, Any]:
    """The trainer state of a checkpoint directory."""
    state: dict[str, Any] = torch.load(path / "state.pt", weights_only=True)
    return state
