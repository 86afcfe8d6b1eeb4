"""AgentRegistration: a container registered with the Consul agent of its host.

Registering through the agent (not the catalog) is what makes the agent run the HTTP check."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi import dynamic

from . import consul_api


class _AgentRegistrationProvider(dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        consul_api.agent_register(props["address"], props["payload"])
        return dynamic.CreateResult(id_=props["payload"]["ID"], outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        moved = olds.get("address") != news.get("address") or \
            olds.get("payload", {}).get("ID") != news.get("payload", {}).get("ID")
        return dynamic.DiffResult(changes=olds != news, replaces=["address"] if moved else [],
                                  delete_before_replace=True)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        consul_api.agent_register(news["address"], news["payload"])
        return dynamic.UpdateResult(outs=news)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        consul_api.agent_deregister(props["address"], props["payload"]["ID"])


class AgentRegistration(dynamic.Resource):
    """PUT /v1/agent/service/register on `address` with `payload` (see planning.registration_payload)."""

    address: pulumi.Output[str]
    payload: pulumi.Output[dict]

    def __init__(self, name: str, *, address: pulumi.Input[str], payload: pulumi.Input[dict],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(_AgentRegistrationProvider(), name,
                         {"address": address, "payload": payload}, opts)
