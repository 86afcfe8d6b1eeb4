"""AgentRegistration: a container registered with the Consul agent of its host.

Registering through the agent (not the catalog) is what makes the agent run the HTTP check."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi import dynamic

from bluegreen.components.consul import api as consul_api
from bluegreen.components.consul.legacy import with_legacy_type
from bluegreen.components.naming import REGISTRATION_TYPE


class _AgentRegistrationProvider(dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        consul_api.agent_register(props["address"], props["payload"], props["token"])
        return dynamic.CreateResult(id_=props["payload"]["ID"], outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # During previews the address or payload may still be unknown (the port comes from a new
        # container): only a known change of agent or ID moves the registration; anything else
        # is a re-registration in place. Deregister first: old and new may share their ID.
        new_address, new_payload = news.get("address"), news.get("payload")
        moved = (isinstance(new_address, str) and new_address != olds.get("address")) or (
            isinstance(new_payload, dict) and new_payload.get("ID") != olds["payload"].get("ID"))
        changed = any(olds.get(k) != news.get(k) for k in ("address", "payload", "token"))
        return dynamic.DiffResult(changes=changed, replaces=["address"] if moved else [],
                                  delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        # A re-registration starts the check critical again: a new token alone is only recorded
        # (the deregistration needs it), so a live instance never leaves rotation for it.
        if any(olds.get(k) != news.get(k) for k in ("address", "payload")):
            consul_api.agent_register(news["address"], news["payload"], news["token"])
        return dynamic.UpdateResult(outs=news)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        consul_api.agent_deregister(props["address"], props["payload"]["ID"],
                                    props.get("token", ""))


class AgentRegistration(dynamic.Resource, module=REGISTRATION_TYPE[0], name=REGISTRATION_TYPE[1]):
    """PUT /v1/agent/service/register on `address` with `payload` (see naming.registration_payload)
    and `token` (a secret)."""

    address: pulumi.Output[str]
    payload: pulumi.Output[dict]

    def __init__(self, name: str, *, address: pulumi.Input[str], payload: pulumi.Input[dict],
                 token: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None):
        super().__init__(_AgentRegistrationProvider(), name,
                         {"address": address, "payload": payload,
                          "token": pulumi.Output.secret(token)},
                         pulumi.ResourceOptions.merge(with_legacy_type(opts), pulumi.ResourceOptions(
                             additional_secret_outputs=["token"])))
