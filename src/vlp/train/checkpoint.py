"""Checkpoints: safetensors weights plus everything needed to resume exactly.

A checkpoint is a directory ``step_XXXXXXXX`` holding ``model.safetensors``,
``state.pt`` (optimizer, scheduler, sampler position, RNG state, step) and
``config.yaml``. It is built under a temporary name and renamed, so a run killed
while saving leaves the previous checkpoint intact.

``checkpoints/history.json`` lists the run's checkpoints in the order the run wrote
them, each with the size and sha256 of its files. The newest checkpoint is the last
one written, not the highest step number, and pruning removes only checkpoints this
run wrote. Opening a checkpoint checks sizes and headers; :func:`verify_checkpoint`
compares the full checksums.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import _remove_duplicate_names, load_model, save_file
from torch import nn

from vlp.errors import VlpError, input_error
from vlp.fileio import atomic_path, sha256_file, write_text_atomic

_STEP_DIR = re.compile(r"^step_(\d{8})$")
HISTORY = "history.json"
FILES = ("model.safetensors", "state.pt", "config.yaml")


def save_weights(model: nn.Module, file: Path) -> None:
    """``model``'s weights as safetensors, byte-identical for equal weights.

    As ``safetensors.torch.save_model``, which stores a tied tensor once and names the
    others in the metadata, but with the metadata in one JSON entry (``save_model``'s
    map of names is written in a random order, so two equal models differ in bytes).
    """
    state = model.state_dict()
    metadata = {}
    for kept, removed in _remove_duplicate_names(state).items():
        for name in removed:
            metadata[name] = kept
            del state[name]
    tensors = {name: t.contiguous() for name, t in state.items()}
    # one metadata entry: safetensors writes a map of several in a random order
    save_file(tensors, str(file), metadata={"tied": json.dumps(metadata, sort_keys=True)})


def save_checkpoint(root: Path, step: int, model: nn.Module, state: dict[str, Any],
                    config_yaml: str, keep: int = 2) -> Path:
    """Write checkpoint ``step`` under ``root`` atomically; keep the newest ``keep`` of
    the ones this run wrote (by the order it wrote them)."""
    path = root / f"step_{step:08d}"
    with atomic_path(path) as tmp:
        tmp.mkdir()
        save_weights(model, tmp / "model.safetensors")
        torch.save(state, tmp / "state.pt")
        (tmp / "config.yaml").write_text(config_yaml, encoding="utf-8")
        files = {name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name)}
                 for name in FILES}
    history = [e for e in read_history(root) if e["name"] != path.name]
    history.append({"name": path.name, "step": step, "files": files})
    drop = history[:-keep] if keep > 0 else []
    _write_history(root, history[len(drop):])
    for entry in drop:
        shutil.rmtree(root / entry["name"], ignore_errors=True)
    return path


def read_history(root: Path) -> list[dict[str, Any]]:
    """The entries of ``root/history.json`` (oldest first); empty if there is none."""
    path = root / HISTORY
    if not path.is_file():
        return []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        entries = doc["checkpoints"]
        for i, entry in enumerate(entries):
            _check_entry(entry, i)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise input_error(path, "checkpoints", f"unreadable checkpoint history ({err}); "
                          "it lists the run's checkpoints in the order they were written"
                          ) from None
    return list(entries)


def _check_entry(entry: Any, i: int) -> None:
    """One history entry: ``{"name": "step_…", "step": int, "files": {file: {"bytes": int,
    "sha256": str}}}``; raises ValueError naming what is wrong."""
    ok = (isinstance(entry, dict) and isinstance(entry.get("name"), str)
          and _STEP_DIR.match(entry["name"]) is not None
          and isinstance(entry.get("step"), int) and isinstance(entry.get("files"), dict)
          and all(isinstance(f, dict) and isinstance(f.get("bytes"), int)
                  and isinstance(f.get("sha256"), str) for f in entry["files"].values()))
    if not ok:
        raise ValueError(f"entry {i} is not {{name: step_XXXXXXXX, step, files: {{file: "
                         "{bytes, sha256}}}}")


def _write_history(root: Path, entries: list[dict[str, Any]]) -> None:
    write_text_atomic(root / HISTORY, json.dumps({"checkpoints": entries}, indent=1) + "\n")


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root`` in the order the run wrote them.

    A run directory made before checkpoint histories existed is read in step order.
    """
    if not root.is_dir():
        return []
    if (root / HISTORY).is_file():
        found = [root / e["name"] for e in read_history(root)]
    else:
        found = sorted(p for p in root.iterdir() if _STEP_DIR.match(p.name))
    return [p for p in found if all((p / name).is_file() for name in FILES[:2])]


def _history_entry(path: Path) -> dict[str, Any] | None:
    for entry in read_history(path.parent):
        if entry["name"] == path.name:
            return entry
    return None


def check_checkpoint(path: Path) -> None:
    """Cheap integrity check of a checkpoint directory: files present, sizes as recorded
    when it was written, and a readable safetensors header.

    Raises:
        VlpError: naming the file that is missing, truncated or corrupt.
    """
    entry = _history_entry(path)
    for name in FILES[:2]:
        file = path / name
        if not file.is_file():
            raise input_error(file, None, "missing; the checkpoint is incomplete")
        want = entry["files"].get(name, {}).get("bytes") if entry else None
        if want is not None and file.stat().st_size != want:
            raise input_error(file, None, f"{file.stat().st_size} bytes, but {want} were "
                              "written (truncated or changed); resume from an earlier "
                              "checkpoint or run 'vlp verify'")
    _check_safetensors_header(path / "model.safetensors")


def _check_safetensors_header(file: Path) -> None:
    size = file.stat().st_size
    try:
        with file.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > size - 8:
                raise ValueError(f"header of {n} bytes in a {size}-byte file")
            header = json.loads(f.read(n))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (struct.error, ValueError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise input_error(file, None, f"not a readable safetensors file ({err})") from None
    if 8 + n + max(ends, default=0) != size:
        raise input_error(file, None, f"{size} bytes, but its header describes "
                          f"{8 + n + max(ends, default=0)} (truncated or padded)")


def verify_checkpoint(path: Path) -> list[str]:
    """Full check of a checkpoint: every file's sha256 against the run's history.

    Returns:
        One line per problem (empty when the checkpoint is intact).
    """
    entry = _history_entry(path)
    if entry is None:
        return [f"{path}: not in {path.parent / HISTORY}; no checksums to compare"]
    problems = []
    for name, recorded in entry["files"].items():
        file = path / name
        if not file.is_file():
            problems.append(f"{file}: missing")
        elif sha256_file(file) != recorded["sha256"]:
            problems.append(f"{file}: checksum mismatch with {HISTORY} (the file is "
                            "corrupt or was changed)")
    return problems


def _as_saved(model: nn.Module, shapes: dict[str, tuple[int, ...]]) -> nn.Module:
    """``model`` under the names a checkpoint uses: runs written before the encoder of a
    :class:`~vlp.objectives.LossModel` was named ``encoder`` saved it as ``model.*``; a view
    sharing the same parameters under that name loads them in place."""
    encoder, objectives = getattr(model, "encoder", None), getattr(model, "objectives", None)
    legacy = any(n.startswith("model.") for n in shapes) and \
        not any(n.startswith("encoder.") for n in shapes)
    if not legacy or not isinstance(encoder, nn.Module) or not isinstance(objectives, nn.Module):
        return model
    view = nn.Module()
    view.model, view.objectives = encoder, objectives
    return view


def load_weights(model: nn.Module, path: Path) -> None:
    """Load ``model.safetensors`` from a checkpoint directory (or a file) into ``model``.

    Raises:
        VlpError: the file is missing or unreadable, or its tensors do not fit the model
            (names the first missing, unexpected or differently shaped tensor).
    """
    file = path / "model.safetensors" if path.is_dir() else path
    if not file.is_file():
        raise VlpError(f"{file}: checkpoint weights not found")
    _check_safetensors_header(file)
    try:
        with safe_open(str(file), framework="pt") as f:
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
        model = _as_saved(model, shapes)
        own = model.state_dict()
        for name, shape in shapes.items():
            if name in own and tuple(own[name].shape) != shape:
                raise VlpError(f"{file}: weights do not fit the model (tensor '{name}' is "
                               f"{shape} in the file, {tuple(own[name].shape)} in the model);"
                               " was the model config changed since it was saved?")
        missing, unexpected = load_model(model, str(file), strict=False)
    except (SafetensorError, OSError) as err:
        raise input_error(file, None, f"not a readable safetensors file ({err})") from None
    if missing or unexpected:
        kind, names = ("missing", missing) if missing else ("unexpected", unexpected)
        raise VlpError(f"{file}: weights do not fit the model ({kind}: "
                       f"{', '.join(sorted(names)[:3])}); was the model config changed "
                       "since it was saved?")


def load_state(path: Path) -> dict[str, Any]:
    """The trainer state of a checkpoint directory (read with ``weights_only``)."""
    file = path / "state.pt"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(file, weights_only=True)
    except FileNotFoundError:
        raise input_error(file, None, "missing; the checkpoint is incomplete") from None
    except Exception as err:
        msg = " ".join(str(err).split())[:200]
        raise input_error(file, None, f"refused or unreadable trainer state ({msg})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise input_error(file, "step", "missing; not a vlp trainer state")
    return state
