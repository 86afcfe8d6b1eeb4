"""Let rules see which values are Pulumi secrets.

The engine sends secrets to a policy pack marked as secrets, but pulumi-policy (1.21.0) unwraps
them while deserializing a validation request, so a rule cannot tell a secret from plain text.
`install()` wraps the SDK's deserializer so that every string inside a secret arrives as a
`SecretStr`: a `str` in every other respect, so other rules are unaffected. Remediation requests
(which the SDK deserializes with its own secret proxies) pass through unchanged.

Without `install()` (or should a future SDK rename its internals, when `install()` returns False)
secrets look like plain text, and `no-plaintext-secrets` errs on the safe side: it reports them.
"""

from __future__ import annotations

import sys
from typing import Any

_MARK = "_bluegreen_marks_secrets"


class SecretStr(str):
    """A string that reached the policy pack as (part of) a Pulumi secret."""

    __slots__ = ()


def mark_secret(value: Any) -> Any:
    """Every string inside `value` as a SecretStr (numbers and booleans cannot leak much)."""
    if isinstance(value, str):
        return value if isinstance(value, SecretStr) else SecretStr(value)
    if isinstance(value, list):
        return [mark_secret(v) for v in value]
    if isinstance(value, dict):
        return {k: mark_secret(v) for k, v in value.items()}
    return value


def install() -> bool:
    """Patches pulumi_policy's deserializer once; True when secrets will arrive marked."""
    try:
        from pulumi_policy import deserialize
    except ImportError:  # pragma: no cover - the pack cannot run without it anyway
        return False
    original = getattr(deserialize, "_deserialize_property", None)
    sig_key = getattr(deserialize, "SPECIAL_SIG_KEY", None)
    secret_sig = getattr(deserialize, "SPECIAL_SECRET_SIG", None)
    if original is None or sig_key is None or secret_sig is None:
        print("bluegreen policies: pulumi_policy internals changed; secrets cannot be told apart "
              "from plain text, so no-plaintext-secrets may report secret values", file=sys.stderr)
        return False
    if getattr(original, _MARK, False):
        return True

    def deserialize_property(prop: Any, proxy_secrets: bool = False) -> Any:
        if (not proxy_secrets and isinstance(prop, dict) and prop.get(sig_key) == secret_sig
                and "value" in prop):
            return mark_secret(original(prop["value"], proxy_secrets))
        return original(prop, proxy_secrets)

    setattr(deserialize_property, _MARK, True)
    # deserialize_properties and the original recurse through this module global.
    deserialize._deserialize_property = deserialize_property
    return True
