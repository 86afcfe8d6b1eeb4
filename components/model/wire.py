"""Values as they arrive over Pulumi's wire (protobuf Struct): every number is a float there,
so a port written 8500 arrives as 8500.0."""

from __future__ import annotations

from typing import Any


def integral_numbers(value: Any) -> Any:
    """`value` with every whole float (8500.0) made an int, in nested dicts and lists too; other
    values unchanged. The stack config's validators expect the ints a YAML file gives."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: integral_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [integral_numbers(item) for item in value]
    return value
