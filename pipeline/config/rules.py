"""Range checks of a loaded config, by dotted key (``section.field``), raising ConfigError that names the key."""

from __future__ import annotations

from typing import Any

from pipeline.config.sections import ConfigError


def require_at_least_one(config: Any, *keys: str) -> None:
    """ConfigError naming the first dotted key (``section.field``) of ``config`` whose value is below 1 (None, a
    default chosen later, passes)."""
    for key in keys:
        value = _value_at(config, key)
        if value is not None and value < 1:
            raise ConfigError(f"{key} must be at least 1, got {value}")


def require_fractions(config: Any, *keys: str) -> None:
    """ConfigError naming the first dotted key of ``config`` whose value is outside [0, 1]."""
    for key in keys:
        value = _value_at(config, key)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{key} must be between 0 and 1, got {value}")


def _value_at(config: Any, key: str) -> Any:
    for name in key.split("."):
        config = getattr(config, name)
    return config
