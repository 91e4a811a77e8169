"""User-facing errors.

Every problem with a user's file, field, shape or option raises :class:`VlpError`
with one line that names the file, the field and what was expected. The CLI prints
that line (no traceback) and exits with status 2.
"""

from __future__ import annotations

from pathlib import Path


class VlpError(Exception):
    """An error caused by user input, reported as one clear line."""


def input_error(path: str | Path, field: str | None, message: str) -> VlpError:
    """Build a :class:`VlpError` naming the file and the field.

    Args:
        path: the file (or directory) the bad input came from.
        field: the key, column or tensor inside it, if any.
        message: what was expected and what was found.
    """
    where = f"{path}" if field is None else f"{path}: field '{field}'"
    return VlpError(f"{where}: {message}")
