"""Loading a typed job configuration: dataclass defaults < YAML file < command line (``--set section.key=value``),
strict (unknown keys, wrong types and values out of a field's range raise
:class:`pipeline.config.sections.ConfigError` naming the key), and its resolved form as JSON-able data and a
fingerprint."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from pipeline.config.rules import InRange
from pipeline.config.sections import ConfigError

C = typing.TypeVar("C")


def load_config(cls: type[C], yaml_path: str | Path | None = None, overrides: list[str] | None = None) -> C:
    """Defaults < YAML file < ``section.key=value`` overrides (values parsed as YAML). Strict: unknown keys fail."""
    data: dict[str, Any] = {}
    if yaml_path is not None:
        data = _read_yaml(Path(yaml_path))
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        _set_path(data, key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None, cls)
    return _build(cls, data, prefix="")


def to_dict(config: Any) -> dict[str, Any]:
    """The resolved config as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=list))


def fingerprint(data: dict[str, Any]) -> str:
    """sha256 of canonical JSON."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def _set_path(data: dict[str, Any], path: list[str], value: Any, cls: type) -> None:
    node = data
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key {'.'.join(path)!r}: {part!r} is not a section")
        node = child
    node[path[-1]] = value


def _build(cls: type[C], data: Any, prefix: str) -> C:
    name = prefix.rstrip(".") or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"config section {name!r} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown config key {prefix + unknown[0]!r}; {name} accepts: {', '.join(sorted(known))}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, hint, f"{prefix}{key}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        value = _coerce(value, args[0], key)
        for rule in hint.__metadata__:
            problem = rule.problem(value) if isinstance(rule, InRange) else None
            if problem:
                raise ConfigError(f"{key} {problem}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _coerce(value, options[0], key) if len(options) == 1 else value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if origin is tuple:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return tuple(_coerce(v, args[0], key) for v in items)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {hint!r}")
