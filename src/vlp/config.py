"""Typed configuration: dataclasses are the one schema, YAML holds experiments.

A YAML file (nested mappings) plus ``key.path=value`` overrides is loaded into a
tree of dataclasses. Unknown keys, values of the wrong type and values outside a
field's range are errors that name the source (the file, or "overrides"), the key
and what was expected; defaults live only in the dataclass fields.

Ranges are declared on the fields (:func:`ranged`) and checked by :func:`check_fields`
from each config's ``__post_init__``, so every config is checked however it is built
(``from_dict``, the constructor, ``dataclasses.replace``). Rules between fields raise
:class:`FieldError` from the same place; :func:`from_dict` adds the source to it.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from vlp.errors import VlpError

T = TypeVar("T")

# integers beyond int32 are no size, count or id any tensor code takes
MAX_INT = 2**31 - 1


class FieldError(VlpError):
    """A config value outside its range, or two fields that disagree.

    Raised while a config dataclass is built; :func:`from_dict` re-raises it with the
    file (or "overrides") the value came from.

    Attributes:
        key: the field's full name, e.g. ``train.lr``.
        message: what was expected and what was found.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"field '{key}': {message}")
        self.key = key
        self.message = message


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric field admits: finite numbers between optional bounds.

    ``ge``/``gt`` bound it below (inclusive / exclusive), ``le``/``lt`` above.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def admits(self, x: float) -> bool:
        """Whether ``x`` lies inside."""
        return not ((self.ge is not None and x < self.ge) or (self.gt is not None and x <= self.gt)
                    or (self.le is not None and x > self.le)
                    or (self.lt is not None and x >= self.lt))

    def describe(self) -> str:
        """The range in words, e.g. ``>= 1`` or ``in [0, 1)``."""
        low = ("[", self.ge) if self.ge is not None else ("(", self.gt)
        high = ("]", self.le) if self.le is not None else (")", self.lt)
        if low[1] is not None and high[1] is not None:
            return f"in {low[0]}{_num(low[1])}, {_num(high[1])}{high[0]}"
        if low[1] is not None:
            return f"{'>=' if low[0] == '[' else '>'} {_num(low[1])}"
        if high[1] is not None:
            return f"{'<=' if high[0] == ']' else '<'} {_num(high[1])}"
        return "finite"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def limits(*, ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None) -> dict[str, Range]:
    """Field metadata giving a numeric range (for a list field: of each item), e.g.
    ``field(default_factory=..., metadata=limits(ge=0, lt=1))``.

    Args:
        ge: lowest value allowed. gt: a bound the value must exceed.
        le: highest value allowed. lt: a bound the value must stay below.
    """
    return {"range": Range(ge, gt, le, lt)}


def ranged(default: float, *, ge: float | None = None, gt: float | None = None,
           le: float | None = None, lt: float | None = None) -> Any:
    """A dataclass field with a numeric default and a range (see :func:`limits`)."""
    return dataclasses.field(default=default, metadata=limits(ge=ge, gt=gt, le=le, lt=lt))


def check_fields(obj: Any, section: str) -> None:
    """Check every ranged field of the config dataclass ``obj``.

    Args:
        obj: a dataclass instance whose fields were declared with :func:`ranged`.
        section: its key in the config tree (``model``, ``train`` …), for messages.

    Raises:
        FieldError: a value of the wrong type or outside its range.
    """
    for f in dataclasses.fields(obj):
        rng = f.metadata.get("range")
        if rng is None:
            continue
        key = f"{section}.{f.name}" if section else f.name
        value = getattr(obj, f.name)
        integral = str(f.type).removeprefix("list[").removesuffix("]") in ("int", str(int))
        if isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                check_value(item, rng, f"{key}[{i}]", integral)
        else:
            check_value(value, rng, key, integral)


def check_value(value: Any, rng: Range, key: str, integral: bool = False) -> None:
    """Check one number against ``rng`` (an integer field takes no float, and no bool).

    Raises:
        FieldError: naming ``key``, the range and the value found.
    """
    kind = "an integer" if integral else "a finite number"
    number = isinstance(value, int if integral else (int, float)) \
        and not isinstance(value, bool)
    if not number or not math.isfinite(value) or (integral and abs(value) > MAX_INT):
        raise FieldError(key, f"expected {kind} {rng.describe()}, got {value!r}")
    if not rng.admits(value):
        raise FieldError(key, f"expected {kind} {rng.describe()}, got {value!r}")


def check(ok: bool, key: str, message: str) -> None:
    """Raise :class:`FieldError` (``key``, ``message``) unless ``ok``: one cross-field rule."""
    if not ok:
        raise FieldError(key, message)


@dataclasses.dataclass(frozen=True)
class _Source:
    """Where values came from: a file, except the keys that overrides set."""

    file: str
    overridden: frozenset[str] = frozenset()
    recorded: bool = False  # the file is a run's own record of every field

    def chose(self, key: str) -> bool:
        """Whether the user set ``key``: in their config or an override, but not in a
        run's record (which holds every field, chosen or default)."""
        return not self.recorded or self.of(key) == "overrides"

    def of(self, key: str) -> str:
        """The source of ``key`` (``"overrides"`` when it or a section above it was set
        by an override)."""
        parts = key.split("[", 1)[0].split(".")
        keys = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        return "overrides" if keys & self.overridden else self.file

    def error(self, key: str, message: str) -> VlpError:
        """The one-line error about ``key``."""
        return VlpError(f"{self.of(key)}: field '{key}': {message}")

    def unknown(self, key: str, names: Iterable[str]) -> VlpError:
        """The one-line error about the unknown key ``key`` (``names``: the known ones)."""
        return VlpError(f"{self.of(key)}: unknown key '{key}' (known keys here: "
                        f"{', '.join(sorted(names))})")


class _Section(_Source):
    """Values of one section checked apart (a task's options): errors are
    :class:`FieldError`, which the enclosing :func:`from_dict` gives its source."""

    def error(self, key: str, message: str) -> VlpError:
        return FieldError(key, message)

    def unknown(self, key: str, names: Iterable[str]) -> VlpError:
        return FieldError(key, f"unknown key (known keys here: {', '.join(sorted(names))})")


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, where: str, source: _Source) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted where lossless."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise source.error(where, f"expected a mapping, got {value!r}")
        return _from_dict(tp, value, where, source)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where, source)
            except VlpError:
                pass
        raise source.error(where, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp) or isinstance(value, bool):
            raise source.error(where, f"expected one of {_type_name(tp)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise source.error(where, f"expected a list, got {value!r}")
        (item,) = get_args(tp)[:1] or (Any,)
        items = [_coerce(v, item, f"{where}[{i}]", source) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise source.error(where, f"expected a mapping, got {value!r}")
        _, val_tp = get_args(tp)
        return {str(k): _coerce(v, val_tp, f"{where}.{k}", source) for k, v in value.items()}
    return _coerce_scalar(value, tp, where, source)


def _coerce_scalar(value: Any, tp: Any, where: str, source: _Source) -> Any:
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # YAML 1.1 reads "3e-4" (no dot) as a string; accept any float literal
        try:
            return float(value)
        except ValueError:
            pass
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if tp is bool and not isinstance(value, bool):
        raise source.error(where, f"expected true or false, got {value!r}")
    wrong_type = isinstance(tp, type) and not isinstance(value, tp)
    if wrong_type or (tp is int and isinstance(value, bool)):
        raise source.error(where, f"expected {_type_name(tp)}, got {value!r}")
    return value


def _from_dict(cls: type[T], data: dict[str, Any], prefix: str, source: _Source) -> T:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in names:
            full = f"{prefix}.{key}" if prefix else key
            raise source.unknown(full, names)
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else key
        kwargs[key] = _coerce(value, hints[key], full, source)
    try:
        # a config may complete the given fields first (model.preset: the preset's values)
        with_defaults = getattr(cls, "with_defaults", None)
        obj = cls(**(with_defaults(kwargs) if with_defaults is not None else kwargs))
        check_given = getattr(obj, "check_given", None)
        if check_given is not None:
            check_given({str(k) for k in data})
        # rules on what the user chose (not on the fields a run's record repeats)
        check_chosen = getattr(obj, "check_chosen", None)
        if check_chosen is not None:
            check_chosen({str(k) for k in data
                          if source.chose(f"{prefix}.{k}" if prefix else str(k))})
    except FieldError as err:  # its key is already full: each section knows its name
        raise source.error(err.key, err.message) from None
    return obj


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config",
              overridden: Iterable[str] = (), recorded: bool = False) -> T:
    """Build the dataclass ``cls`` from nested ``data``, checking keys, types and ranges.

    Args:
        cls: the root config dataclass.
        data: nested mappings as read from YAML.
        source: where the data came from, for error messages.
        overridden: keys whose values came from overrides instead (their errors name
            "overrides" as the source).
        recorded: ``source`` is a run's own ``config.yaml`` (``--resume``), which holds
            every field: the rules on what a user chose (a section's ``check_chosen``) see
            only the overridden ones; ``check_given`` still sees every field given.

    Raises:
        VlpError: one line naming the source, the key and what was expected.
    """
    if not isinstance(data, dict):
        raise VlpError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    return _from_dict(cls, data, "", _Source(source, frozenset(overridden), recorded))


def from_section(cls: type[T], data: dict[str, Any], section: str) -> T:
    """Build the dataclass ``cls`` of the config section ``section`` (e.g. ``task.options``,
    checked inside the ``__post_init__`` of the config that holds it) from ``data``,
    checking keys, types and ranges as :func:`from_dict` does.

    Raises:
        FieldError: naming ``section.<key>``; the enclosing :func:`from_dict` adds the
            file (or "overrides") it came from.
    """
    if not isinstance(data, dict):
        raise FieldError(section, f"expected a mapping, got {data!r}")
    return _from_dict(cls, data, section, _Section(section))


def to_dict(obj: Any) -> dict[str, Any]:
    """The nested-dict form of a config dataclass (what ``from_dict`` reads back)."""
    return dataclasses.asdict(obj)


def override_key(item: str) -> str:
    """The dotted key an override ``a.b=value`` sets (checked: one line when malformed)."""
    if "=" not in item:
        raise VlpError(f"override '{item}': expected key=value, e.g. train.lr=1e-4")
    key = item.split("=", 1)[0].strip()
    if not key or any(not part for part in key.split(".")):
        raise VlpError(f"override '{item}': expected key=value with a dotted key, "
                       "e.g. train.lr=1e-4")
    return key


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to nested ``data`` (values parsed as YAML scalars)."""
    for item in overrides:
        key = override_key(item)
        raw = item.split("=", 1)[1]
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise VlpError(f"override '{item}': '{part}' is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise VlpError(f"override '{item}': the value is not valid YAML "
                           f"({' '.join(str(err).split())})") from None
    return data


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file of config sections, read with ``safe_load`` (no tags that build Python
    objects); every problem is one line naming the file."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VlpError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise VlpError(f"{path}: is a directory, not a YAML config file") from None
    except UnicodeDecodeError as err:
        raise VlpError(f"{path}: not UTF-8 text (byte {err.start}); expected a YAML "
                       "config file") from None
    except yaml.YAMLError as err:
        raise VlpError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise VlpError(f"{path}: expected a mapping of sections at the top level, got "
                       f"{type(loaded).__name__}")
    return loaded or {}


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None,
                recorded: bool = False) -> T:
    """Load a YAML experiment file plus overrides into the dataclass ``cls``.

    Without a file the defaults hold, changed by the overrides. ``recorded``: the file is
    a run's own ``config.yaml`` (see :func:`from_dict`).

    Raises:
        VlpError: one line naming the file (or "overrides"), the key and what was
            expected.
    """
    overrides = overrides or []
    data = read_yaml(Path(path)) if path is not None else {}
    apply_overrides(data, overrides)
    source = str(path) if path is not None else "overrides"
    return from_dict(cls, data, source, {override_key(o) for o in overrides}, recorded)


def dump_config(obj: Any) -> str:
    """YAML text of a config dataclass."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


__all__ = [
    "FieldError",
    "Range",
    "apply_overrides",
    "check",
    "check_fields",
    "check_value",
    "dump_config",
    "from_dict",
    "from_section",
    "limits",
    "load_config",
    "override_key",
    "ranged",
    "read_yaml",
    "to_dict",
]
