"""Checked reading of the files every published format is made of: text, JSON, JSON lines.

The format readers (:mod:`vlp.data.formats`) build on these. Every helper reports a bad file
as one :class:`~vlp.errors.VlpError` line naming the file, the field and what was expected,
e.g. ``captions.json: field 'annotations[3].caption': missing (expected a string)``.
JSON-lines fields are named ``line N.key`` with N counted from 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from vlp.data.features import parse_image_id
from vlp.errors import data_warning, input_error

R = TypeVar("R")

# kind name used in messages → check; bool is excluded from numbers because JSON
# true/false would otherwise pass as 1/0
_KINDS: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "string": ("a string", str),
    "integer": ("an integer", int),
    "number": ("a number", (int, float)),
    "list": ("a list", list),
    "object": ("an object", dict),
}


def read_text(path: str | Path, what: str = "a text file") -> str:
    """The UTF-8 text of a file, reporting every way it can fail to be one as one line.

    Args:
        path: the file to read.
        what: what the file should be, for the messages (e.g. ``a JSON file``).

    Raises:
        VlpError: the file is missing, a directory, unreadable or not UTF-8.
    """
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise input_error(path, None, f"file not found (expected {what})") from None
    except IsADirectoryError:
        raise input_error(path, None, f"is a directory (expected {what})") from None
    except UnicodeDecodeError as e:
        raise input_error(path, None, f"not UTF-8 text (byte {e.start}; expected "
                                      f"{what})") from None
    except OSError as e:
        raise input_error(path, None, f"cannot read ({e.strerror})") from None


def parse_json(path: str | Path, text: str) -> Any:
    """Parse JSON ``text`` read from ``path``; an empty or invalid document is one line.

    Args:
        path: the file the text came from, for messages.
        text: the file's content.
    """
    if not text.strip():
        raise input_error(path, None, "empty file (expected JSON)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise input_error(path, None, f"invalid JSON at line {e.lineno}, column {e.colno}: "
                                      f"{e.msg}") from None
    except RecursionError:
        raise input_error(path, None, "invalid JSON: nested too deeply") from None


def load_json(path: str | Path) -> Any:
    """Parse a JSON file, reporting a missing file or bad JSON as one line.

    Args:
        path: the file to read.

    Raises:
        VlpError: the file is missing, a directory, unreadable, not UTF-8, empty or not
            valid JSON.
    """
    return parse_json(path, read_text(path, "a JSON file"))


def type_name(value: Any) -> str:
    """A parsed JSON value's kind in words, for messages (``a list``, ``null``)."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def check_kind(path: str | Path, value: Any, where: str, kind: str) -> Any:
    """Return ``value`` if it is of ``kind``, else raise naming the file and field.

    Args:
        path: the file the value came from.
        value: the parsed JSON value.
        where: the field, e.g. ``annotations[3].caption``.
        kind: one of ``string``, ``integer``, ``number``, ``list``, ``object``.
    """
    expected, types = _KINDS[kind]
    if isinstance(value, bool) or not isinstance(value, types):
        raise input_error(path, where, f"expected {expected}, found {type_name(value)}")
    return value


def json_field(path: str | Path, obj: dict[str, Any], key: str, where: str, kind: str) -> Any:
    """Read ``obj[key]`` and check its kind; a missing key is reported, not a ``KeyError``.

    Args:
        path: the file the object came from.
        obj: a parsed JSON object.
        key: the key to read.
        where: the object's own field path ("" for the top level).
        kind: see :func:`check_kind`.
    """
    name = f"{where}.{key}" if where else key
    if key not in obj:
        raise input_error(path, name, f"missing (expected {_KINDS[kind][0]})")
    return check_kind(path, obj[key], name, kind)


def json_entries(path: str | Path, obj: dict[str, Any], key: str) -> list[tuple[str, Any]]:
    """The objects of the top-level list ``obj[key]``, each with its field path.

    Args:
        path: the file the object came from.
        obj: the parsed top-level JSON object.
        key: the key of the list, e.g. ``annotations``.
    """
    items = json_field(path, obj, key, "", "list")
    return [(f"{key}[{i}]", check_kind(path, item, f"{key}[{i}]", "object"))
            for i, item in enumerate(items)]


def top_object(path: Path, doc: Any, what: str) -> dict[str, Any]:
    """``doc`` if it is a JSON object, else one line naming the file and ``what`` it should
    hold (e.g. ``a VQA questions file``)."""
    if not isinstance(doc, dict):
        raise input_error(path, None, f"expected {what} (a JSON object at the top level), "
                                      f"found {type_name(doc)}")
    return doc


def read_json_lines(path: str | Path, what: str = "JSON lines") -> list[tuple[str, dict[str, Any]]]:
    """The objects of a JSON-lines file, each with its field path ``line N``.

    Args:
        path: the file.
        what: what the file should hold, for messages.

    Raises:
        VlpError: the file is missing, a directory, not UTF-8, holds no object, or a line
            is not a JSON object (the last one, typically, when the file was cut short).
    """
    path = Path(path)
    text = read_text(path, what)
    # split on "\n" only: JSON strings may hold U+2028, which str.splitlines would cut at
    lines = text.split("\n")
    last = max((n for n, line in enumerate(lines, start=1) if line.strip()), default=0)
    rows = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            torn = " (the file looks cut short)" if n == last and n > 1 else ""
            raise input_error(path, where, f"invalid JSON at column {e.colno}: {e.msg}"
                                           f"{torn}") from None
        except RecursionError:
            raise input_error(path, where, "invalid JSON: nested too deeply") from None
        rows.append((where, check_kind(path, obj, where, "object")))
    if not rows:
        raise input_error(path, None, f"empty file (expected {what}, one object per line)")
    return rows


def check_unique(path: Path, seen: dict[Any, str], key: Any, where: str, field: str) -> None:
    """Refuse a second record with ``key`` (predictions are matched to records by it)."""
    if key in seen:
        raise input_error(path, f"{where}.{field}", f"duplicate {field} {key!r} (also "
                                                    f"{seen[key]})")
    seen[key] = where


def read_unique_records(path: str | Path, what: str,
                        parse: Callable[[Path, dict[str, Any], str], R],
                        key: Callable[[R], Any], field: str) -> list[R]:
    """The records of a JSON-lines file, one per line by ``parse(path, row, where)``;
    a second record with the same ``key`` is refused, naming ``field``.

    Raises:
        VlpError: as :func:`read_json_lines`, as ``parse``, or a repeated key.
    """
    path = Path(path)
    records = []
    seen: dict[Any, str] = {}
    for where, row in read_json_lines(path, what):
        record = parse(path, row, where)
        check_unique(path, seen, key(record), where, field)
        records.append(record)
    return records


def image_name_field(path: Path, row: dict[str, Any], key: str, where: str) -> str:
    """An image file name whose stem ends in the image id (``2248275918.jpg``).

    Raises:
        VlpError: the field is missing, not a string, or its stem has no trailing digits
            (the region store is keyed by them).
    """
    name = json_field(path, row, key, where, "string")
    try:
        parse_image_id(Path(name).stem)
    except ValueError:
        raise input_error(path, f"{where}.{key}", f"expected an image file name ending in "
                          f"its numeric id, e.g. '2248275918.jpg', found {name!r}") from None
    return str(name)


EXAMPLES = 3  # examples a data warning lists


def examples(items: list[Any], n: int = EXAMPLES) -> str:
    """The first ``n`` of ``items`` for a message, e.g. ``a, b, c, …``."""
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (", …" if len(items) > n else "")


def check_captions(path: Path, captions: list[tuple[str, str]]) -> None:
    """Refuse a caption file whose captions are all blank; warn once about blank ones.

    Args:
        path: the caption file.
        captions: (field, caption text) of every caption in the file.

    Raises:
        VlpError: every caption is empty or whitespace (nothing to learn from).
    """
    blank = [where for where, text in captions if not text.strip()]
    if captions and len(blank) == len(captions):
        raise input_error(path, blank[0], f"empty: all {len(captions)} captions of the file "
                                          "are empty or whitespace (nothing to learn from)")
    if blank:
        data_warning(path, blank[0], f"{len(blank)} of {len(captions)} captions are empty or "
                                     f"whitespace (e.g. {examples(blank)})")
