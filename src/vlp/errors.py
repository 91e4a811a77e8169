"""User-facing errors and data-quality warnings.

Every problem with a user's file, field, shape or option raises :class:`VlpError`
with one line that names the file, the field and what was expected. The CLI prints
that line (no traceback) and exits with status 2.

Input that is legal but suspicious (empty captions, duplicate ids, VQA answer counts
other than ten, boxes outside the image) is reported by :func:`data_warning` as one
``warning:`` line; in strict mode (``vlp --strict``, ``data.strict: true`` or
:func:`strict_mode`) the same line is an error.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path


class VlpError(Exception):
    """An error caused by user input, reported as one clear line."""


class DataWarning(UserWarning):
    """Legal but suspicious input; an error in strict mode."""


_STRICT = False


def input_error(path: str | Path, field: str | None, message: str) -> VlpError:
    """Build a :class:`VlpError` naming the file and the field.

    Args:
        path: the file (or directory) the bad input came from.
        field: the key, column or tensor inside it, if any.
        message: what was expected and what was found.
    """
    return VlpError(_where(path, field, message))


def _where(path: str | Path, field: str | None, message: str) -> str:
    where = f"{path}" if field is None else f"{path}: field '{field}'"
    return f"{where}: {message}"


def set_strict(strict: bool) -> None:
    """Make data warnings errors (True) or warnings (False) from now on."""
    global _STRICT
    _STRICT = strict


def is_strict() -> bool:
    """Whether data warnings are errors."""
    return _STRICT


@contextlib.contextmanager
def strict_mode(strict: bool = True) -> Iterator[None]:
    """Data warnings are errors inside the block (or not, with ``strict=False``)."""
    before = _STRICT
    set_strict(strict)
    try:
        yield
    finally:
        set_strict(before)


def data_warning(path: str | Path, field: str | None, message: str) -> None:
    """Report legal but suspicious input: a :class:`DataWarning`, or in strict mode a
    :class:`VlpError` with the same line.

    Readers call it once per file and kind, with a count and the first examples, not once
    per row.
    """
    line = _where(path, field, message)
    if _STRICT:
        raise VlpError(f"{line} (strict mode)")
    warnings.warn(DataWarning(line), stacklevel=2)


def show_warning(message: Warning | str, category: type[Warning], filename: str,
                 lineno: int, file: object = None, line: str | None = None) -> None:
    """``warnings.showwarning`` for the ``vlp`` command and its worker processes: data
    warnings as one ``warning:`` line; others as Python prints them."""
    if issubclass(category, DataWarning):
        print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def one_line_warnings() -> None:
    """Show every data warning, each as one ``warning:`` line (:func:`show_warning`): the
    ``vlp`` command and the demo's worker processes both call it."""
    warnings.simplefilter("always", DataWarning)
    warnings.showwarning = show_warning
