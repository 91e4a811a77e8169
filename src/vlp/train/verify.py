"""``vlp verify``: full checksums of what vlp wrote — a region store or a run's checkpoints
— and of the data files a run recorded it read (``data.json``).

Opening a store or a checkpoint checks only what is cheap (sizes, headers, shapes);
a flipped bit inside an array passes those. Here every file is read and its sha256
compared with the one recorded when it was written.
"""

from __future__ import annotations

import json
from pathlib import Path

from vlp.errors import VlpError
from vlp.fileio import sha256_file
from vlp.train.checkpoint import FILES, HISTORY, list_checkpoints, verify_checkpoint
from vlp.train.rundir import DATA


def verify_path(path: Path) -> tuple[int, list[str]]:
    """Verify a region store, a run directory, its ``checkpoints`` directory or one
    checkpoint.

    Returns:
        (files checked, one line per problem).

    Raises:
        VlpError: ``path`` is none of those.
    """
    if (path / "meta.json").is_file():
        from vlp.data.features import ARRAY_FILES, verify_store

        return len(ARRAY_FILES), verify_store(path)
    if (path / "model.safetensors").is_file():
        return len(FILES), verify_checkpoint(path)
    root = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    found = list_checkpoints(root)
    if not found:
        raise VlpError(f"{path}: not a region store (no meta.json), a run or a checkpoint "
                       "(no checkpoints)")
    if not (root / HISTORY).is_file():
        raise VlpError(f"{root / HISTORY}: missing; this run was written before checkpoints "
                       "recorded their checksums")
    problems = [line for ckpt in found for line in verify_checkpoint(ckpt)]
    data = _verify_data(path / DATA) if root != path else []
    return len(FILES) * len(found) + len(data), problems + [p for p in data if p]


def _verify_data(record: Path) -> list[str]:
    """One entry per data file a run recorded (``data.json``): "" when it is as the run
    read it or no longer where the run read it (a run moved to another machine keeps its
    checkpoints whole), else the problem."""
    if not record.is_file():
        return []
    try:
        files = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return [f"{record}: unreadable ({err})"]
    if not isinstance(files, dict):
        return [f"{record}: expected an object of data files, found {type(files).__name__}"]
    out = []
    for key, entry in files.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                and isinstance(entry.get("sha256"), str)):
            out.append(f"{record}: {key}: expected {{path, bytes, sha256}}, found {entry!r}")
            continue
        path = Path(entry["path"])
        if path.is_file() and sha256_file(path) != entry["sha256"]:
            out.append(f"{path}: changed since the run read it as {key} (sha256 differs)")
        else:
            out.append("")
    return out
