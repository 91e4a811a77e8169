"""``vlp verify``: full checksums of what vlp wrote — a region store or a run's checkpoints.

Opening a store or a checkpoint checks only what is cheap (sizes, headers, shapes);
a flipped bit inside an array passes those. Here every file is read and its sha256
compared with the one recorded when it was written.
"""

from __future__ import annotations

from pathlib import Path

from vlp.errors import VlpError
from vlp.train.checkpoint import FILES, HISTORY, list_checkpoints, verify_checkpoint


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
    return len(FILES) * len(found), problems
