"""State written by an older version of the package, brought to this one's import path.

Every Consul resource (alias, key, gate, registration, token...) is a Pulumi dynamic resource: its
state keeps its provider as a pickle that names the provider's class by module. Up to 0.3.0 the
modules were top-level (`components.consul.health_gate`); from 0.4.0 they are `bluegreen.*`. An
update pickles the provider anew, but a delete or a refresh unpickles the one in the state, which
would fail on a module that no longer exists. `migrate` rewrites those pickles in the state (the
class is looked up under its new path and pickled as the SDK pickles it), touching nothing that
runs. The SDK keeps the provider as a secret, so only an export with its secrets shown can tell;
`recovery.recover` does that once per stack, before its first update through ./bg or the delivery
commands by this version.
"""

from __future__ import annotations

import base64
import io
import json
import re
from typing import Any

import dill
from pulumi.dynamic.dynamic import serialize_provider

PROVIDER_KEY = "__provider"
# How Pulumi's state marks a secret (the SDK stores a dynamic resource's provider as one).
SECRET_SIG, SECRET_VALUE = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"
LEGACY_PACKAGES = ("components", "delivery", "policies")
# A module path of a legacy package as a pickle names it (not already under bluegreen.).
LEGACY_MODULE = re.compile(rb"(?<!bluegreen\.)(?:" + b"|".join(p.encode() for p in LEGACY_PACKAGES) + rb")\.")


class _NewPathUnpickler(dill.Unpickler):
    """Finds a legacy module's class under bluegreen."""

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".", 1)[0] in LEGACY_PACKAGES:
            module = f"bluegreen.{module}"
        return super().find_class(module, name)


def _plain(value: object) -> object:
    """A state value as it is: a secret (as `pulumi stack export --show-secrets` writes it, which
    is how the SDK stores a dynamic provider) unwrapped."""
    if isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE and "plaintext" in value:
        return json.loads(value["plaintext"])
    return value


def _like(original: object, value: str) -> object:
    """`value` wrapped as `original` was (a secret stays a secret)."""
    if isinstance(original, dict):
        return {SECRET_SIG: SECRET_VALUE, "plaintext": json.dumps(value)}
    return value


def is_legacy(provider: object) -> bool:
    """Whether a state's `__provider` value names a module of the old top-level path."""
    provider = _plain(provider)
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
    """Rewrites the deployment's legacy provider pickles in place (an export with its secrets
    shown); returns how many."""
    count = 0
    for fields in _provider_fields(deployment):
        old = fields.get(PROVIDER_KEY)
        if is_legacy(old):
            fields[PROVIDER_KEY] = _like(old, migrated(str(_plain(old))))
            count += 1
    return count
