"""Secrets: no secret-looking value in plain text in container environments, Consul KV entries or
registration metadata; such values are Pulumi secrets (encrypted in state, hidden in previews)."""

from __future__ import annotations

import json
import re
from typing import Any, Iterator, Mapping

from pulumi_policy import EnforcementLevel, Severity

from .common import (CONSUL_KEY, CONTAINER, REGISTRATION, dynamic_kind, is_secret, is_unknown,
                     resource_policy)

SECRET_NAME = re.compile(r"passw(or)?d|secret|token|api[_-]?key|private[_-]?key", re.IGNORECASE)
# Names that point at a secret rather than hold it (Docker's *_FILE convention, paths, endpoints);
# a URL with a password in it is still caught by its value.
REFERENCE_NAME = re.compile(r"[_.-](file|path|url|uri|endpoint)$", re.IGNORECASE)
# KV keys whose last segment is a service name, not the name of a setting.
STRUCTURAL_KEY = re.compile(r"^bluegreen/(aliases|routes|catalogue)/")
SECRET_VALUES = (
    (re.compile(r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key ID"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"), "a GitHub token"),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), "a Slack token"),
    (re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@", re.IGNORECASE), "a URL with a password"),
)

FIX = ("Make it a Pulumi secret: `pulumi config set --secret <key> <value>` and read it with "
       "Config.require_secret (or wrap it in pulumi.Output.secret), so it is encrypted in state "
       "and hidden in previews")


def secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name)) and not REFERENCE_NAME.search(name)


def secret_value_kind(value: str) -> str | None:
    for pattern, kind in SECRET_VALUES:
        if pattern.search(value):
            return kind
    return None


def value_problem(name: str, value: Any) -> str | None:
    """Why (name, value) holds a plain-text secret, or None. Secrets and unknowns are fine."""
    if is_secret(value) or is_unknown(value) or not isinstance(value, str) or value == "":
        return None
    kind = secret_value_kind(value)
    if kind:
        return f"{name} holds {kind} in plain text"
    if secret_name(name):
        return f"{name} looks like a secret and holds a plain-text value"
    return None


def _env_entries(envs: Any) -> Iterator[tuple[str, Any]]:
    """(NAME, value) of `NAME=value` entries; a secret entry keeps its secret marker as value."""
    for entry in envs if isinstance(envs, list) else []:
        if is_unknown(entry) or not isinstance(entry, str):
            continue
        name, _, value = entry.partition("=")
        yield name, (entry if is_secret(entry) else value)


def _json_entries(path: str, name: str, value: Any) -> Iterator[tuple[str, str, Any]]:
    """(path, name of the nearest field, leaf value) of the JSON document held in a KV value."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _json_entries(f"{path}.{key}", str(key), item)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from _json_entries(f"{path}[{position}]", name, item)
    elif isinstance(value, str):
        yield path, name, value


def check_plaintext_secrets(resource: Mapping[str, Any], _config: Mapping[str, Any]) -> list[str]:
    props, name = resource["props"], resource["name"]
    problems = []
    if resource["type"] == CONTAINER:
        for variable, value in _env_entries(props.get("envs")):
            problem = value_problem(variable, value)
            if problem:
                problems.append(f"container {name}: environment variable {problem}. {FIX}, or "
                                "mount it as a file and pass its path in <NAME>_FILE")
        return problems
    kind = dynamic_kind(resource)
    if kind == CONSUL_KEY:
        key, value = props.get("key"), props.get("value")
        if not isinstance(key, str) or is_secret(value) or not isinstance(value, str):
            return []
        # The setting's name is the key's last segment, except where that is a service's name.
        leaf = "value" if STRUCTURAL_KEY.match(key) else key.rsplit("/", 1)[-1]
        entries: list[tuple[str, str, Any]] = [(key, leaf, value)]
        if value.lstrip().startswith(("{", "[")):
            try:
                document = json.loads(value)
            except ValueError:
                document = None
            if isinstance(document, (dict, list)):
                # A JSON document: judge its fields; the document as a whole only by its name.
                entries = [(key, leaf, value)] if secret_name(leaf) else []
                entries += list(_json_entries(key, leaf, document))
        for path, entry_name, entry_value in entries:
            problem = value_problem(entry_name, entry_value)
            if problem:
                problems.append(f"Consul KV entry {path}: {problem}, readable by anyone with KV "
                                f"access and stored in plain text in the stack state. {FIX}")
        return problems
    if kind == REGISTRATION:
        payload = props.get("payload")
        meta = payload.get("Meta") if isinstance(payload, Mapping) else None
        for field, value in (meta.items() if isinstance(meta, Mapping) else []):
            problem = value_problem(f"Meta.{field}", value)
            if problem:
                problems.append(f"registration {name}: {problem}; registration metadata is public "
                                "to every Consul reader. Keep secrets out of Meta")
    return problems


POLICIES = [
    resource_policy(
        "no-plaintext-secrets",
        "No secret-looking value (names like password, secret, token, api key, private key; "
        "private keys, cloud keys, URLs with passwords) in plain text in container environments, "
        "Consul KV or registration metadata; use Pulumi secrets.",
        EnforcementLevel.MANDATORY, check_plaintext_secrets, severity=Severity.CRITICAL),
]
