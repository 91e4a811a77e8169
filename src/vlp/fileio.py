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

TMP_PREFIX = ".vlp-tmp-"  # what marks a temporary of atomic_path; nothing else is removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    Works for files and directories. On error the temporary is removed and an
    existing ``path`` is left untouched. Whether an existing ``path`` may be replaced
    is the caller's decision (see :func:`claim_output`). The temporary is a directory
    ``.vlp-tmp-NAME.XXXXXXXX`` beside ``path``, which a killed process leaves behind for
    :func:`remove_stale_temporaries`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent))
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


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Clean up after a process killed inside :func:`atomic_path` in ``directory``.

    Only ``.vlp-tmp-NAME.XXXXXXXX`` directories are touched. One killed between the two
    renames of a directory swap holds the only copy of ``NAME`` (as ``NAME.old``): that
    copy is put back first. Returns the temporaries removed.
    """
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir()
             if p.name.startswith(TMP_PREFIX) and p.is_dir() and not p.is_symlink()]
    for tmp in stale:
        name = tmp.name[len(TMP_PREFIX):].rpartition(".")[0]
        old, path = tmp / f"{name}.old", directory / name
        if name and old.is_dir() and not path.exists():
            os.replace(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
    return stale


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


def _inside(path: Path, other: Path) -> bool:
    return path == other or other in path.parents


def claim_output(out: str | Path, *, overwrite: bool = False,
                 inputs: Iterable[str | Path] = (), option: str = "--overwrite",
                 inside_ok: bool = False) -> Path:
    """Check that a command may write ``out`` before it starts working.

    Args:
        out: the file or directory the command will write.
        overwrite: the user asked to replace an existing ``out``.
        inputs: files and directories the command reads.
        option: how the user asks to overwrite, for the message.
        inside_ok: an output inside an input directory is allowed (it cannot destroy the
            input: e.g. an evaluation directory inside the run it evaluates).

    Raises:
        VlpError: ``out`` is, holds or lies inside an input (writing it would destroy
            what is read), or exists and is not empty while ``overwrite`` is False.
    """
    out = Path(out)
    target = out.resolve()
    for src in inputs:
        source = Path(src).resolve()
        if (_inside(target, source) and not inside_ok) or _inside(source, target):
            relation = ("is" if target == source else
                        "is inside" if _inside(target, source) else "holds")
            raise VlpError(f"{out}: the output {relation} the input {src}; "
                           "choose an output path apart from the inputs")
    if out.exists() and not overwrite and (out.is_file() or any(out.iterdir())):
        raise VlpError(f"{out}: already exists and is not empty; choose a new path, or "
                       f"pass {option} to replace it")
    return out
