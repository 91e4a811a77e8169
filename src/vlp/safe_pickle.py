"""Load pickled *data* without running code from it.

Some published formats keep plain data in pickles: py-bottom-up-attention's per-image
``.npz`` files hold an ``info`` dict as a pickled numpy object array, RefCOCO ships
``refs(unc).p``. ``pickle.load`` on such a file runs whatever callables the file names
(``os.system``, ``subprocess.Popen``, ``builtins.eval``, ...), so a crafted file runs a
shell command. :func:`safe_loads` / :func:`safe_load` rebuild only plain Python data and
numpy arrays and refuse everything else before anything is called.

Every way a pickle reaches code (``GLOBAL``, ``STACK_GLOBAL``, ``INST``, ``OBJ``, and
``EXT*`` through the copyreg registry) goes through :meth:`pickle.Unpickler.find_class`;
ours answers only from a fixed table:

* ``builtins.set`` / ``frozenset`` (protocols 0-2 pickle sets by calling them) and
  ``builtins.bytes`` with no arguments (protocol 2's ``b""``);
* ``_codecs.encode`` with the encoding ``latin1`` only (protocol 2's ``bytes``);
* with ``numpy=True``: ``numpy.ndarray``, ``numpy.dtype`` and
  ``numpy[._]core.multiarray._reconstruct`` / ``scalar``, what numpy pickles arrays and
  numpy scalars with (its 1.x and 2.x module names), under protocols 0-4 as ``np.save``
  writes them. ``_reconstruct`` accepts only ``(ndarray, (0,), ...)`` and ``ndarray``
  itself cannot be called, so a pickle cannot request an allocation; the array's data is
  then checked against its shape by numpy. Protocol 5's ``_frombuffer`` is refused.

Dicts, lists, tuples, strings, numbers, booleans and None need no global at all. The
callables handed to the pickle have no attributes BUILD could change. Everything refused
or unreadable is one line (:class:`~vlp.errors.VlpError`) naming ``what``.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import copyreg
import importlib
import io
import pickle
import pickletools
from pathlib import Path
from typing import IO, Any

import numpy as np

from vlp.errors import VlpError

PLAIN_DATA = "dict, list, tuple, str, bytes, int, float, bool, None, set"


class UnsafePickleError(VlpError):
    """A pickle named a class or function that data files have no business calling.

    Attributes:
        global_name: the refused ``module.name``.
    """

    def __init__(self, message: str, global_name: str) -> None:
        super().__init__(message)
        self.global_name = global_name


class _Refused(pickle.UnpicklingError):
    def __init__(self, global_name: str) -> None:
        super().__init__(global_name)
        self.global_name = global_name


def _multiarray() -> Any:
    try:  # numpy 2.x (and the forward-compatible stub of 1.26)
        return importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 1.26
        return importlib.import_module("numpy.core.multiarray")


# The callables a pickle may reach are instances without a __dict__ or settable
# attributes, so BUILD cannot modify them (a plain function's attributes could be set).


class _Latin1Encode:
    """``_codecs.encode``: protocol 2 pickles Python 3 bytes as (latin-1 text, "latin1")."""

    __slots__ = ()

    def __call__(self, text: object, encoding: object = "utf-8") -> bytes:
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise _Refused(f"_codecs.encode with encoding {encoding!r}")
        return codecs.encode(text, "latin1")


class _EmptyBytes:
    """``builtins.bytes``: protocol 2 pickles ``b""`` as ``bytes()``; ``bytes(n)`` would
    allocate n bytes on the pickle's request, so arguments are refused."""

    __slots__ = ()

    def __call__(self, *args: object) -> bytes:
        if args:
            raise _Refused("builtins.bytes with arguments")
        return b""


class _NdarrayType:
    """Stands for ``numpy.ndarray`` in a pickle: numpy passes the class to
    ``_reconstruct`` and never calls it, so calling it (an allocation) is refused."""

    __slots__ = ()

    def __call__(self, *args: object) -> None:
        raise _Refused("numpy.ndarray called directly")


class _Reconstruct:
    """``_reconstruct(ndarray, (0,), b"b")``: the empty array that BUILD then fills with
    data whose length numpy checks against the shape."""

    __slots__ = ()

    def __call__(self, subtype: object, shape: object, dtype: object) -> np.ndarray:
        if not isinstance(subtype, _NdarrayType) or shape != (0,):
            raise _Refused(f"numpy _reconstruct with {type(subtype).__name__} {shape!r}")
        result: np.ndarray = _multiarray()._reconstruct(np.ndarray, (0,), dtype)
        return result


def _numpy_globals() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {("numpy", "ndarray"): _NdarrayType(),
                                         ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(module, "_reconstruct")] = _Reconstruct()
        table[(module, "scalar")] = _multiarray().scalar
    return table


_PLAIN_GLOBALS: dict[tuple[str, str], Any] = {
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
    ("builtins", "bytes"): _EmptyBytes(), ("_codecs", "encode"): _Latin1Encode(),
}


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """Protocols 0-2 use Python 2's names (``__builtin__.set``, ``commands.call``), as
    :meth:`pickle.Unpickler.find_class` maps them with ``fix_imports``."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class _DataUnpickler(pickle.Unpickler):
    """An unpickler whose only globals are the table's."""

    def __init__(self, file: IO[bytes], encoding: str, allowed: dict[tuple[str, str], Any]
                 ) -> None:
        super().__init__(file, encoding=encoding)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        module, name = _python3_name(module, name)
        found = self._allowed.get((module, name))
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found


def _refuse_extensions(data: bytes) -> None:
    """``EXT*`` opcodes fetch objects through copyreg's cache, bypassing ``find_class``;
    they can only do so once some code registered extensions, so scan only then."""
    if not getattr(copyreg, "_inverted_registry", None):
        return
    for op, arg, _ in pickletools.genops(data):
        if op.name.startswith("EXT"):
            raise _Refused(f"copyreg extension {arg}")


def _decode_text(value: Any) -> Any:
    """Python 2 ``str`` read with ``encoding="bytes"``: UTF-8, else Latin-1; tuples → lists."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("latin-1")
    if isinstance(value, list | tuple):
        return [_decode_text(v) for v in value]
    if isinstance(value, dict):
        return {_decode_text(k): _decode_text(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return type(value)(_decode_text(v) for v in value)
    return value


def _what_is_allowed(numpy: bool) -> str:
    return f"plain data ({PLAIN_DATA})" + (" and numpy arrays" if numpy else "")


def _load(file: IO[bytes], what: str, encoding: str, numpy: bool) -> Any:
    allowed = {**_PLAIN_GLOBALS, **(_numpy_globals() if numpy else {})}
    try:
        data = _DataUnpickler(file, encoding, allowed).load()
        return _decode_text(data) if encoding == "bytes" else data
    except _Refused as err:
        raise UnsafePickleError(
            f"{what}: refused to unpickle: it calls {err.global_name}, and only "
            f"{_what_is_allowed(numpy)} may be loaded from a data file; nothing was run",
            err.global_name) from None
    except RecursionError:
        raise VlpError(f"{what}: not a readable pickle (nested too deeply)") from None
    except Exception as err:  # a corrupt pickle fails in many ways; each is one line
        detail = " ".join(str(err).split())[:200]
        raise VlpError(f"{what}: not a readable pickle ({type(err).__name__}"
                       f"{': ' + detail if detail else ''})") from None


def safe_loads(data: bytes, what: str, *, encoding: str = "ASCII", numpy: bool = True) -> Any:
    """Unpickle plain data and numpy arrays from ``data``; refuse anything else.

    Args:
        data: the pickle.
        what: where it came from, for messages (e.g. ``"x.npz: field 'info'"``).
        encoding: how Python 2 ``str`` is decoded (as :class:`pickle.Unpickler`);
            ``"bytes"`` keeps them as bytes and then decodes every bytes value to str
            (UTF-8, else Latin-1) and turns tuples into lists, as RefCOCO's readers do.
        numpy: allow numpy arrays, dtypes and scalars (False: plain data only).

    Returns:
        The unpickled object.

    Raises:
        UnsafePickleError: the pickle names any other class or function (a
            :class:`~vlp.errors.VlpError`; one line, nothing was called).
        VlpError: the data is not a readable pickle.
    """
    try:
        _refuse_extensions(data)
    except _Refused as err:
        raise UnsafePickleError(f"{what}: refused to unpickle: it uses a "
                                f"{err.global_name}; nothing was run", err.global_name) from None
    except Exception as err:
        raise VlpError(f"{what}: not a readable pickle ({err})") from None
    return _load(io.BytesIO(data), what, encoding, numpy)


def safe_load(file: str | Path | IO[bytes], what: str | None = None, *,
              encoding: str = "ASCII", numpy: bool = True) -> Any:
    """Unpickle plain data and numpy arrays from a file (see :func:`safe_loads`).

    Args:
        file: a path, or a binary file object positioned at the pickle.
        what: where it came from, for messages (default: the path).
        encoding: see :func:`safe_loads`.
        numpy: see :func:`safe_loads`.

    Raises:
        UnsafePickleError: the pickle names a class or function outside the allowed set.
        VlpError: the file is missing or unreadable, or not a readable pickle.
    """
    if isinstance(file, str | Path):
        path = Path(file)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise VlpError(f"{what or path}: cannot read ({err.strerror})") from None
        return safe_loads(data, what or str(path), encoding=encoding, numpy=numpy)
    if getattr(copyreg, "_inverted_registry", None):
        return safe_loads(file.read(), what or "pickle", encoding=encoding, numpy=numpy)
    return _load(file, what or "pickle", encoding, numpy)

