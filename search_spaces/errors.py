"""The space's configuration error and the one check that the config and the task heads share."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field, the value and what is allowed."""

    def __init__(self, field_name: str, value: Any, allowed: str) -> None:
        self.field_name, self.value, self.allowed = field_name, value, allowed
        super().__init__(f"invalid {field_name}={value!r}: {allowed}")


def check_positive(name: str, value: Any) -> None:
    """Raise :class:`ConfigError` naming ``name`` unless ``value`` is an integer >= 1 (not a bool)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(name, value, "expected a positive integer")
