"""The platform stack's `credentials` output: the keys it holds, and how a stack or delivery
command reads one of them (pure: delivery commands import it without the Pulumi SDK)."""

from __future__ import annotations

from typing import Any

CREDENTIAL_KEYS = ("consulDeployerToken", "consulIssuerToken", "registryUsername", "registryPassword")


def credential(values: dict[str, Any] | None, key: str, owner: str) -> str:
    """One entry of a platform's `credentials` output, or an error saying how to get it."""
    if key not in CREDENTIAL_KEYS:
        raise ValueError(f"unknown credential {key!r}; one of {', '.join(CREDENTIAL_KEYS)}")
    if not isinstance(values, dict) or not values.get(key):
        raise RuntimeError(f"the platform stack {owner} has no `credentials` output with {key}: run "
                           f"`pulumi up --stack {owner}` first (it turns on Consul ACLs and the "
                           "registry's authentication)")
    value: str = values[key]
    return value
