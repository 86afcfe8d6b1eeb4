"""AclToken: a Consul ACL token with a policy of its own, both named after the actor, created or
updated by that name (so re-running, or re-creating after a server lost its data, converges).

The SecretID is given (pre-generated, when an agent needs it before the token exists) or made
here once and kept in state as a secret; the token that makes the calls is a secret input."""

from __future__ import annotations

import uuid
from typing import Any

import pulumi
from pulumi import dynamic

from bluegreen.components.consul import api as consul_api
from bluegreen.components.naming import ACL_TOKEN_TYPE

SECRET_OUTPUTS = ["secret_id", "token"]


def _apply(props: dict[str, Any], secret_id: str) -> dict[str, Any]:
    address, token, name = props["address"], props["token"], props["name"]
    consul_api.wait_for_acl(address, token)
    consul_api.acl_policy_upsert(address, token, name, props["rules"], props["description"])
    accessor = consul_api.acl_token_upsert(address, token, name, secret_id, name,
                                           props["description"])
    return {**props, "secret_id": secret_id, "accessor_id": accessor}


class _AclTokenProvider(dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        outs = _apply(props, props.get("secret_id") or str(uuid.uuid4()))
        return dynamic.CreateResult(id_=outs["accessor_id"], outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # A made-here SecretID is not an input: only a given one that differs is a change.
        keys = ["address", "token", "rules", "description", "revision"]
        changed = any(olds.get(k) != news.get(k) for k in keys) or (
            news.get("secret_id") is not None and news.get("secret_id") != olds.get("secret_id"))
        replaces = ["name"] if olds.get("name") != news.get("name") else []
        return dynamic.DiffResult(changes=changed or bool(replaces), replaces=replaces,
                                  delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(outs=_apply(news, news.get("secret_id") or olds["secret_id"]))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        consul_api.acl_token_delete(props["address"], props["token"], props["name"])
        consul_api.acl_policy_delete(props["address"], props["token"], props["name"])


class AclToken(dynamic.Resource, module=ACL_TOKEN_TYPE[0], name=ACL_TOKEN_TYPE[1]):
    """Token `name` allowed `rules` (see components.consul.rules); `secret_id` is its secret.

    `token` (a secret) makes the ACL calls: the management token, or the issuer's. A change of
    `revision` (e.g. the server container's ID) re-asserts the token and its policy."""

    accessor_id: pulumi.Output[str]
    secret_id: pulumi.Output[str]

    def __init__(self, name: str, *, address: pulumi.Input[str], token: pulumi.Input[str],
                 token_name: str, rules: str, description: str,
                 secret_id: pulumi.Input[str] | None = None, revision: pulumi.Input[str] = "",
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(_AclTokenProvider(), name, {
            "address": address, "token": pulumi.Output.secret(token), "name": token_name,
            "rules": rules, "description": description,
            "secret_id": None if secret_id is None else pulumi.Output.secret(secret_id),
            "revision": revision, "accessor_id": None,
        }, pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS)))
