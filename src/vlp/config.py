"""Typed configuration: dataclasses are the one schema, YAML holds experiments.

A YAML file (nested mappings) plus ``key.path=value`` overrides is loaded into a
tree of dataclasses. Unknown keys and values of the wrong type are errors that
name the key; defaults live only in the dataclass fields.
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from vlp.errors import VlpError

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, where: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted where lossless."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise VlpError(f"{source}: field '{where}': expected a mapping, got {value!r}")
        return _from_dict(tp, value, where, source)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where, source)
            except VlpError as err:
                errors.append(str(err))
        raise VlpError(f"{source}: field '{where}': expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise VlpError(f"{source}: field '{where}': expected one of {_type_name(tp)}, "
                           f"got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise VlpError(f"{source}: field '{where}': expected a list, got {value!r}")
        (item,) = get_args(tp)[:1] or (Any,)
        items = [_coerce(v, item, f"{where}[{i}]", source) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise VlpError(f"{source}: field '{where}': expected a mapping, got {value!r}")
        _, val_tp = get_args(tp)
        return {str(k): _coerce(v, val_tp, f"{where}.{k}", source) for k, v in value.items()}
    return _coerce_scalar(value, tp, where, source)


def _coerce_scalar(value: Any, tp: Any, where: str, source: str) -> Any:
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
        raise VlpError(f"{source}: field '{where}': expected true or false, got {value!r}")
    wrong_type = isinstance(tp, type) and not isinstance(value, tp)
    if wrong_type or (tp is int and isinstance(value, bool)):
        raise VlpError(f"{source}: field '{where}': expected {_type_name(tp)}, got {value!r}")
    return value


def _from_dict(cls: type[T], data: dict[str, Any], prefix: str, source: str) -> T:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in names:
            full = f"{prefix}.{key}" if prefix else key
            raise VlpError(f"{source}: unknown key '{full}' (known keys here: "
                           f"{', '.join(sorted(names))})")
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else key
        kwargs[key] = _coerce(value, hints[key], full, source)
    return cls(**kwargs)


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build the dataclass ``cls`` from nested ``data``, checking keys and types.

    Args:
        cls: the root config dataclass.
        data: nested mappings as read from YAML.
        source: where the data came from, for error messages.
    """
    return _from_dict(cls, data, "", source)


def to_dict(obj: Any) -> dict[str, Any]:
    """The nested-dict form of a config dataclass (what ``from_dict`` reads back)."""
    return dataclasses.asdict(obj)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to nested ``data`` (values parsed as YAML scalars)."""
    for item in overrides:
        if "=" not in item:
            raise VlpError(f"override '{item}': expected key=value, e.g. train.lr=1e-4")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise VlpError(f"override '{item}': '{part}' is not a section")
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    return data


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """Load a YAML experiment file plus overrides into the dataclass ``cls``."""
    data: dict[str, Any] = {}
    source = "overrides"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VlpError(f"{path}: config file not found") from None
        except yaml.YAMLError as err:
            raise VlpError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise VlpError(f"{path}: expected a mapping of sections at the top level")
        data = loaded or {}
    apply_overrides(data, overrides or [])
    return from_dict(cls, data, source)


def dump_config(obj: Any) -> str:
    """YAML text of a config dataclass."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


__all__ = ["apply_overrides", "dump_config", "from_dict", "load_config", "to_dict"]
