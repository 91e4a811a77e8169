"""File output that loses nothing a user made.

Outputs are written under a temporary name and renamed (:func:`atomic_path`), so an
interrupted writer never leaves half a file. A command's output that already exists is
refused unless the user asked to overwrite it, and an output may never be, hold, or lie
inside one of the command's inputs (:func:`claim_output`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from vlp.errors import VlpError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    Works for files and directories. On error the temporary is removed and an
    existing ``path`` is left untouched. Whether an existing ``path`` may be replaced
    is the caller's decision (see :func:`claim_output`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if path.is_dir() and target.is_dir():
            old = tmp / f"{path.name}.old"
            os.replace(path, old)
            os.replace(target, path)
        else:
            os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Remove what :func:`atomic_path` leaves when a process is killed inside it: the
    ``.NAME.XXXXXXXX`` temporaries in ``directory``. Returns what was removed."""
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir()
             if p.name.startswith(".") and p.is_dir() and _is_atomic_temporary(p)]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def _is_atomic_temporary(p: Path) -> bool:
    # mkdtemp(prefix=".NAME.") adds 8 random characters; the only entry inside is NAME
    # (and NAME.old while a directory is being swapped)
    head, _, suffix = p.name[1:].rpartition(".")
    if not head or len(suffix) != 8:
        return False
    return all(q.name in (head, f"{head}.old") for q in p.iterdir())


def _inside(path: Path, other: Path) -> bool:
    return path == other or other in path.parents


def claim_output(out: str | Path, *, overwrite: bool = False,
                 inputs: Iterable[str | Path] = (), option: str = "--overwrite") -> Path:
    """Check that a command may write ``out`` before it starts working.

    Args:
        out: the file or directory the command will write.
        overwrite: the user asked to replace an existing ``out``.
        inputs: files and directories the command reads.
        option: how the user asks to overwrite, for the message.

    Raises:
        VlpError: ``out`` is, holds or lies inside an input (writing it would destroy
            what is read), or exists and is not empty while ``overwrite`` is False.
    """
    out = Path(out)
    target = out.resolve()
    for src in inputs:
        source = Path(src).resolve()
        if _inside(target, source) or _inside(source, target):
            relation = ("is" if target == source else
                        "is inside" if _inside(target, source) else "holds")
            raise VlpError(f"{out}: the output {relation} the input {src}; "
                           "choose an output path apart from the inputs")
    if out.exists() and not overwrite and (out.is_file() or any(out.iterdir())):
        raise VlpError(f"{out}: already exists and is not empty; choose a new path, or "
                       f"pass {option} to replace it")
    return out
