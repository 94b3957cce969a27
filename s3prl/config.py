"""Typed YAML configs: a YAML file mapped onto (nested) dataclasses, with command-line overrides.

Every config in the toolkit is a dataclass with defaults. `load_config` reads a YAML mapping,
checks every key against the dataclass fields (an unknown key is an error naming the file and the
dotted key, with the valid keys listed), converts values to the declared types, and applies
`--override a.b.c=value` strings parsed against the same types. Values are parsed with
`yaml.safe_load` (never `eval`), so `1e-4`, `true`, `[1, 2]` and `null` work as in YAML. An empty
config file (nothing but comments, or `{}`) is refused rather than read as "all defaults".

Supported field types: bool, int, float, str, Optional[X], list[X], tuple[X, ...], dict[str, X],
Literal[...] and nested dataclasses. A dataclass whose keys were renamed lists them in a class
attribute `RENAMED_KEYS = {old: new}`; an old key is then an error that names the new one.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from s3prl.errors import ConfigError  # re-exported: `from s3prl.config import ConfigError` keeps working

T = TypeVar("T")



def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML value to the declared type `tp`, or raise ConfigError naming `where`."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} is not a {_type_name(tp)}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {list(choices)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for section {tp.__name__}, got {value!r}")
        return _build(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = (get_args(tp) + (Any, Any))[:2]
        return {_convert(k, kt, where): _convert(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: {value!r} is not a bool (use true or false)")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
                return int(value)
            raise ConfigError(f"{where}: {value!r} is not an int")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # YAML 1.1 reads "1e-4" (no dot) as a string; accept any float literal.
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ConfigError(f"{where}: {value!r} is not a float")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {value!r} is not a string")
        return value
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)} for value {value!r}")


def _build(cls: type[T], data: dict, where: str) -> T:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        renamed = getattr(cls, "RENAMED_KEYS", {})  # {old key: new key} of a dataclass whose keys changed
        if unknown[0] in renamed:
            new = f"{where}.{renamed[unknown[0]]}" if where else renamed[unknown[0]]
            raise ConfigError(f"key '{key}' is now '{new}'; rename it")
        raise ConfigError(f"unknown key '{key}' (valid: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(value, hints[name], f"{where}.{name}" if where else name)
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        key = f"{where}.{missing[0]}" if where else missing[0]
        raise ConfigError(f"missing required key '{key}'")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:  # __post_init__ checks
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def from_dict(cls: type[T], data: dict | None, source: str = "") -> T:
    """Build dataclass `cls` from a plain mapping; errors are prefixed with `source`."""
    try:
        return _build(cls, data or {}, "")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}" if source else str(e)) from None


def to_dict(cfg: Any) -> Any:
    """Plain-Python (YAML/checkpoint safe) view of a config dataclass."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def apply_overrides(data: dict, overrides: list[str] | None, source: str = "--override") -> dict:
    """Apply `a.b.c=value` strings to a nested mapping (values parsed as YAML scalars)."""
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"{source}: '{ov}' is not of the form key.path=value")
        key, raw = ov.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p, {}), dict):
                raise ConfigError(f"{source}: '{key}' goes through a non-section key '{p}'")
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a syntax error, a non-mapping or an empty file is a ConfigError naming the file (and line)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}:{line}: malformed YAML: {problem}") from None
    if data is None or data == {}:
        # An empty file (or only comments) is most likely a config that was never filled in or was
        # truncated; taking it as "all defaults" would silently train something else.
        raise ConfigError(f"{path}: empty config (no keys); write the settings in it, or leave out the "
                          f"option to use the defaults")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Load YAML `path` (optional) onto dataclass `cls`, then apply `overrides`.

    Raises ConfigError with a one-line message naming the file and the key at fault.
    """
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    return from_dict(cls, data, str(path) if path is not None else "config")


def save_config(cfg: Any, path: str | Path) -> None:
    """Write a config dataclass as YAML (atomically)."""
    from s3prl.atomic import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
