"""Small helpers that turn loosely typed YAML/JSON into typed values, with errors that name the
file, the field and the fix. Shared by the service manifest and the stack configuration."""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping


class ConfigError(ValueError):
    """Invalid input: the message says where (file and field), what is wrong and what is allowed."""

    def __init__(self, source: str, field: str, problem: str):
        self.source = source
        self.field = field
        self.problem = problem
        super().__init__(f"{source}: {field}: {problem}")


UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
SHORT_UNITS = ("ms", "s", "m")      # what health checks and timeouts are written in
LONG_UNITS = tuple(UNIT_SECONDS)    # what retention times and look-backs may use too


def parse_duration(text: str, units: tuple[str, ...] = SHORT_UNITS) -> float | None:
    """'500ms', '2s', '1m' (and with LONG_UNITS '2h', '30d') in seconds; None if it is none."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([a-z]+)", text.strip())
    if not match or match.group(2) not in units:
        return None
    return float(match.group(1)) * UNIT_SECONDS[match.group(2)]


def duration_hint(units: tuple[str, ...] = SHORT_UNITS) -> str:
    return "write e.g. 500ms, 2s or 1m" + (", 2h or 30d" if "d" in units else "")


class Fields:
    """Reads the fields of one mapping, remembering its location for error messages."""

    def __init__(self, source: str, path: str, data: Any, allowed: Iterable[str]):
        self.source = source
        self.path = path
        if not isinstance(data, Mapping):
            raise ConfigError(source, path or "(top level)", f"must be a mapping, got {_kind(data)}")
        allowed = list(allowed)
        unknown = sorted(set(map(str, data)) - set(allowed))
        if unknown:
            raise ConfigError(
                source,
                self.at(unknown[0]),
                f"unknown key; allowed keys here are: {', '.join(allowed)}",
            )
        self.data = data

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.source, self.at(key), problem)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key)
        return default if value is None else value

    def required(self, key: str) -> Any:
        if not self.has(key):
            raise self.error(key, "is required")
        return self.data[key]

    def string(self, key: str, default: str | None = None, *, pattern: str | None = None,
               hint: str = "") -> str:
        value = self.raw(key, default)
        if value is None:
            raise self.error(key, "is required" + (f" ({hint})" if hint else ""))
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise self.error(key, f"must be a string, got {_kind(value)}")
        value = str(value)
        if pattern and not re.fullmatch(pattern, value):
            raise self.error(key, f"{value!r} is not allowed; {hint or 'must match ' + pattern}")
        return value

    def choice(self, key: str, options: Iterable[str], default: str | None = None) -> str:
        options = list(options)
        value = self.string(key, default, hint=f"one of {', '.join(options)}")
        if value not in options:
            raise self.error(key, f"{value!r} is not allowed; use one of: {', '.join(options)}")
        return value

    def integer(self, key: str, default: int | None = None, *, minimum: int | None = None,
                maximum: int | None = None) -> int:
        value = self.raw(key, default)
        if value is None:
            raise self.error(key, "is required (an integer)")
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
                value = int(value)
            else:
                raise self.error(key, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum or maximum is not None and value > maximum:
            raise self.error(key, f"{value} is out of range; allowed: {minimum}..{maximum}")
        return value

    def number(self, key: str, default: float, *, minimum: float, below: float, hint: str) -> float:
        """A number in [minimum, below), e.g. a rate."""
        value = self.raw(key, default)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"must be a number, got {value!r}; {hint}")
        if not minimum <= value < below:
            raise self.error(key, f"{value} is out of range; {hint}")
        return float(value)

    def duration(self, key: str, default: str, units: tuple[str, ...] = SHORT_UNITS) -> float:
        """A duration like '500ms', '2s' or '1m' (or with `units`, e.g. '30d'), in seconds."""
        text = self.string(key, default)
        seconds = parse_duration(text, units)
        if seconds is None:
            raise self.error(key, f"{text!r} is not a duration; {duration_hint(units)}")
        return seconds

    def string_map(self, key: str) -> dict[str, str]:
        value = self.raw(key, {})
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be a mapping of names to values, got {_kind(value)}")
        result = {}
        for name, item in value.items():
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
                raise self.error(key, f"{name!r} is not a valid name (letters, digits, _ . -)")
            if isinstance(item, (Mapping, list)) or item is None:
                raise ConfigError(self.source, f"{self.at(key)}.{name}",
                                  f"must be a plain value, got {_kind(item)}")
            result[name] = str(item).lower() if isinstance(item, bool) else str(item)
        return result

    def nested(self, key: str, allowed: Iterable[str], default: Any = None) -> "Fields":
        return Fields(self.source, self.at(key), self.raw(key, default if default is not None else {}),
                      allowed)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
