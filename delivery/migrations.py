"""State written by an older version of the package, brought to this one's import path.

Every Consul resource (alias, key, gate, registration, token...) is a Pulumi dynamic resource: its
state keeps its provider as a pickle that names the provider's class by module. Up to 0.3.0 the
modules were top-level (`components.consul.health_gate`); from 0.4.0 they are `bluegreen.*`. An
update pickles the provider anew, but a delete or a refresh unpickles the one in the state, which
would fail on a module that no longer exists. `migrate` rewrites those pickles in the state (the
class is looked up under its new path and pickled as the SDK pickles it), touching nothing that
runs; `recovery.recover` runs it before every update through ./bg and the delivery commands.
"""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import dill
from pulumi.dynamic.dynamic import serialize_provider

PROVIDER_KEY = "__provider"
LEGACY_PACKAGES = ("components", "delivery", "policies")
# A module path of a legacy package as a pickle names it (not already under bluegreen.).
LEGACY_MODULE = re.compile(rb"(?<![\w.])(?:" + b"|".join(p.encode() for p in LEGACY_PACKAGES) + rb")\.")


class _NewPathUnpickler(dill.Unpickler):
    """Finds a legacy module's class under bluegreen."""

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".", 1)[0] in LEGACY_PACKAGES:
            module = f"bluegreen.{module}"
        return super().find_class(module, name)


def is_legacy(provider: object) -> bool:
    """Whether a state's `__provider` value names a module of the old top-level path."""
    if not isinstance(provider, str):
        return False
    try:
        return LEGACY_MODULE.search(base64.b64decode(provider, validate=True)) is not None
    except ValueError:
        return False


def migrated(provider: str) -> str:
    """`provider` pickled again with its class under the bluegreen.* path."""
    return serialize_provider(_NewPathUnpickler(io.BytesIO(base64.b64decode(provider))).load())


def _provider_fields(deployment: dict) -> list[dict]:
    """Every inputs and outputs mapping of the deployment's resources (pending ones too)."""
    resources = list(deployment.get("resources") or [])
    resources += [op.get("resource") or {} for op in deployment.get("pending_operations") or []]
    return [fields for resource in resources for fields in (resource.get("inputs"), resource.get("outputs"))
            if isinstance(fields, dict)]


def migrate(deployment: dict) -> int:
    """Rewrites the deployment's legacy provider pickles in place; returns how many."""
    count = 0
    for fields in _provider_fields(deployment):
        if is_legacy(fields.get(PROVIDER_KEY)):
            fields[PROVIDER_KEY] = migrated(fields[PROVIDER_KEY])
            count += 1
    return count


def has_legacy(deployment: dict) -> bool:
    """Whether any provider of the deployment names a module of the old top-level path."""
    return any(is_legacy(fields.get(PROVIDER_KEY)) for fields in _provider_fields(deployment))
