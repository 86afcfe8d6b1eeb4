"""The platform stack's `credentials` output: the keys it holds, and how a stack or delivery
command reads one of them (pure: delivery commands import it without the Pulumi SDK)."""

from __future__ import annotations

from typing import Any

# consulDeployerTokens maps each environment on the platform to its own deployer token.
CREDENTIAL_KEYS = ("consulDeployerTokens", "consulIssuerToken", "registryUsername", "registryPassword")


def _entry(values: dict[str, Any] | None, key: str, owner: str) -> Any:
    if key not in CREDENTIAL_KEYS:
        raise ValueError(f"unknown credential {key!r}; one of {', '.join(CREDENTIAL_KEYS)}")
    if not isinstance(values, dict) or not values.get(key):
        raise RuntimeError(f"the platform stack {owner} has no `credentials` output with {key}: run "
                           f"`pulumi up --stack {owner}` first (it turns on Consul ACLs and the "
                           "registry's authentication)")
    return values[key]


def credential(values: dict[str, Any] | None, key: str, owner: str) -> str:
    """One entry of a platform's `credentials` output, or an error saying how to get it."""
    value: str = _entry(values, key, owner)
    return value


def deployer_token(values: dict[str, Any] | None, environment: str, owner: str) -> str:
    """The deployer token of `environment` from a platform's `credentials` output, or an error
    saying how to have the platform make one."""
    tokens = _entry(values, "consulDeployerTokens", owner)
    if not isinstance(tokens, dict) or not tokens.get(environment):
        stack = owner.rsplit("/", 1)[-1]
        raise RuntimeError(f"the platform stack {owner} makes no deployer token for environment "
                           f"{environment!r} (it has: {', '.join(sorted(tokens or {})) or 'none'}): "
                           f"add {environment} to bluegreen:platform.environments in "
                           f"stacks/Pulumi.{stack}.yaml and run `pulumi up --stack {stack}`")
    token: str = tokens[environment]
    return token
