"""Typed YAML configs: a YAML file mapped onto (nested) dataclasses, with command-line overrides.

Every config in the toolkit is a dataclass with defaults. `load_config` reads a YAML mapping,
checks every key against the dataclass fields (an unknown key is an error naming the file and the
dotted key, with the valid keys listed), converts values to the declared types, and applies
`--override a.b.c=value` strings parsed against the same types. Values are parsed with
`yaml.safe_load` (never `eval`), so `1e-4`, `true`, `[1, 2]` and `null` work as in YAML. An empty
config file (nothing but comments, or `{}`) is refused rather than read as "all defaults".

A config may inherit another one with a top-level `base: FILE` key (FILE relative to the real
location of the including file, so a linked config finds its own siblings): the base is read
first (itself perhaps with a `base:`), then the including file's keys are merged over it, section
by section (a mapping merges into the base's mapping, any other value replaces the base's). This is
the "defaults + override" layering of Hydra's defaults list (facebookresearch/hydra,
hydra/_internal/defaults_list.py) and of ESPnet/WeNet configs, kept to one key: e.g.
`egs/librispeech/conf/tera_tiny.yaml` says only what differs from `tera_base.yaml`. A chain that
comes back to a file already in it is an error; so is a key unknown to the schema, and the message
names the file of the chain that wrote the key.

Supported field types: bool, int, float, str, Optional[X], list[X], tuple[X, ...], dict[str, X],
Literal[...] and nested dataclasses. A dataclass whose keys were renamed lists them in a class
attribute `RENAMED_KEYS = {old: new}`; an old key in a user's YAML is then an error that names
the new one, while configs this toolkit stored itself (a run's config.yaml, a checkpoint's config
section) are read with `upgrade_keys` first, so runs and checkpoints made before a rename still
load and still count as the same settings.
"""
from __future__ import annotations

import dataclasses
import os
import re
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


def upgrade_keys(cls: type, data: Any) -> Any:
    """`data` (a stored config of dataclass `cls`) with every renamed key (`RENAMED_KEYS` of `cls`
    and of its nested dataclass fields, at any depth) under its new name; a key whose new name is
    already present is left for `from_dict` to report."""
    if not isinstance(data, dict) or not dataclasses.is_dataclass(cls):
        return data
    renamed = getattr(cls, "RENAMED_KEYS", {})
    out = {}
    for k, v in data.items():
        new = renamed.get(k, k)
        out[new if new not in data else k] = v
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in out:
            tp = hints[f.name]
            if get_origin(tp) in (Union, types.UnionType):  # Optional[Section]
                tp = next((a for a in get_args(tp) if a is not type(None)), tp)
            if dataclasses.is_dataclass(tp):
                out[f.name] = upgrade_keys(tp, out[f.name])
    return out


def from_dict(cls: type[T], data: dict | None, source: str = "",
              origins: dict[str, Path] | None = None) -> T:
    """Build dataclass `cls` from a plain mapping; errors are prefixed with `source`, or, for a key
    that `origins` (from `read_yaml_origins`) says another file of a `base:` chain wrote, that file."""
    try:
        return _build(cls, data or {}, "")
    except ConfigError as e:
        source = _origin_of(str(e), origins) or source
        raise ConfigError(f"{source}: {e}" if source else str(e)) from None


# The dotted key at the start of a message of _build/_convert: "unknown key 'a.b'",
# "missing required key 'a.b'" or "a.b[2]: ...".
_MESSAGE_KEY = re.compile(r"^(?:unknown key '([^']+)'|missing required key '([^']+)'|([A-Za-z_][\w.]*)(?:\[\d+\])*:)")


def _origin_of(message: str, origins: dict[str, Path] | None) -> str | None:
    """The file that wrote the key a ConfigError message is about, or None (a key no file of the
    chain wrote: a missing one, or one set by an override)."""
    m = _MESSAGE_KEY.match(message)
    if not origins or not m:
        return None
    origin = origins.get(next(g for g in m.groups() if g))
    return None if origin is None else str(origin)


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


def _read_yaml_file(path: Path) -> dict:
    """One YAML file's mapping; a syntax error, a non-mapping or an empty file is a ConfigError
    naming the file (and line)."""
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


BASE_KEY = "base"


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, its `base:` chain resolved (see the module docstring); a syntax error,
    a non-mapping, an empty file or a bad `base:` is a ConfigError naming the file (and line)."""
    return read_yaml_origins(path)[0]


def read_yaml_origins(path: str | Path, _chain: tuple[str, ...] = ()) -> tuple[dict, dict[str, Path]]:
    """`read_yaml(path)` and, for every dotted key of the result, the file of the chain that wrote
    it (for `from_dict(..., origins=...)` to name that file in its errors)."""
    path = Path(path)
    data = _read_yaml_file(path)
    real = os.path.realpath(path)
    base = data.pop(BASE_KEY, None)
    origins = {k: path for k in _dotted_keys(data)}
    if base is None:
        return data, origins
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: {BASE_KEY}: expected the name of a config file, got {base!r}")
    base_path = Path(os.path.dirname(real)) / base
    if os.path.realpath(base_path) in (*_chain, real):
        chain = " -> ".join(map(str, (*_chain, real, os.path.realpath(base_path))))
        raise ConfigError(f"{path}: {BASE_KEY}: {base} comes back to a file already included ({chain})")
    if not base_path.is_file():
        raise ConfigError(f"{path}: {BASE_KEY}: {base_path}: no such config file")
    merged, base_origins = read_yaml_origins(base_path, (*_chain, real))
    _merge_into(merged, data)
    return merged, {**base_origins, **origins}


def _dotted_keys(data: dict, prefix: str = "") -> list[str]:
    """Every key of a nested mapping as a dotted path, sections included."""
    keys = []
    for k, v in data.items():
        keys.append(f"{prefix}{k}")
        if isinstance(v, dict):
            keys += _dotted_keys(v, f"{prefix}{k}.")
    return keys


def _merge_into(base: dict, over: dict) -> None:
    """Merge `over` into `base` in place: mappings merge key by key, other values replace."""
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge_into(base[k], v)
        else:
            base[k] = v


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Load YAML `path` (optional) onto dataclass `cls`, then apply `overrides`.

    Raises ConfigError with a one-line message naming the file and the key at fault.
    """
    data, origins = read_yaml_origins(path) if path is not None else ({}, {})
    data = apply_overrides(data, overrides)
    for ov in overrides or []:  # an error in an overridden key names the file given, as without base:
        origins.pop(ov.split("=", 1)[0].strip(), None)
    return from_dict(cls, data, str(path) if path is not None else "config", origins)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write a config dataclass as YAML (atomically)."""
    from s3prl.atomic import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
