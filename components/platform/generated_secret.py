"""GeneratedSecret: a random value made once, on create, and kept in state as a secret; every
later run reads it back, so whatever it is handed to stays unchanged."""

from __future__ import annotations

import base64
import secrets
import uuid
from typing import Any

import pulumi
from pulumi import dynamic

from bluegreen.components.naming import GENERATED_SECRET_TYPE

KINDS = ("uuid", "gossip-key", "password")


def generate(kind: str) -> str:
    """uuid: a Consul token SecretID; gossip-key: 32 random bytes in base64 (Consul's `encrypt`);
    password: 32 random bytes, URL-safe."""
    if kind == "uuid":
        return str(uuid.uuid4())
    if kind == "gossip-key":
        return base64.b64encode(secrets.token_bytes(32)).decode()
    if kind == "password":
        return secrets.token_urlsafe(32)
    raise ValueError(f"secret kind must be one of {KINDS}, got {kind!r}")


class _GeneratedSecretProvider(dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        return dynamic.CreateResult(id_=f"{props['kind']}-{uuid.uuid4().hex[:12]}",
                                    outs={"kind": props["kind"], "value": generate(props["kind"])})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        replaced = olds.get("kind") != news.get("kind")
        return dynamic.DiffResult(changes=replaced, replaces=["kind"] if replaced else [])


class GeneratedSecret(dynamic.Resource, module=GENERATED_SECRET_TYPE[0], name=GENERATED_SECRET_TYPE[1]):
    """`value`: a secret of `kind` (see generate), the same on every run until this is replaced."""

    value: pulumi.Output[str]

    def __init__(self, name: str, *, kind: str, opts: pulumi.ResourceOptions | None = None):
        if kind not in KINDS:
            raise ValueError(f"secret kind must be one of {KINDS}, got {kind!r}")
        super().__init__(_GeneratedSecretProvider(), name, {"kind": kind, "value": None},
                         pulumi.ResourceOptions.merge(
                             opts, pulumi.ResourceOptions(additional_secret_outputs=["value"])))
