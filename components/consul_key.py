"""ConsulKey: one Consul KV entry managed as a resource (aliases, service config, catalogue)."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi import dynamic

from . import consul_api


class _ConsulKeyProvider(dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        consul_api.kv_put(props["address"], props["key"], props["value"])
        return dynamic.CreateResult(id_=props["key"], outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        replaces = [k for k in ("address", "key") if olds.get(k) != news.get(k)]
        changed = replaces or olds.get("value") != news.get("value")
        return dynamic.DiffResult(changes=bool(changed), replaces=replaces,
                                  delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        # A plain overwrite: re-running an interrupted update writes the same value again.
        consul_api.kv_put(news["address"], news["key"], news["value"])
        return dynamic.UpdateResult(outs=news)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        consul_api.kv_delete(props["address"], props["key"])


class ConsulKey(dynamic.Resource):
    """A key/value pair written to Consul through an agent's HTTP API."""

    address: pulumi.Output[str]
    key: pulumi.Output[str]
    value: pulumi.Output[str]

    def __init__(self, name: str, *, address: pulumi.Input[str], key: pulumi.Input[str],
                 value: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None):
        super().__init__(_ConsulKeyProvider(), name,
                         {"address": address, "key": key, "value": value}, opts)
