"""ConsulKey: one Consul KV entry managed as a resource (aliases, service config, catalogue)."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi import dynamic

from bluegreen.components.consul import api as consul_api
from bluegreen.components.consul.legacy import with_legacy_type
from bluegreen.components.naming import CONSUL_KEY_TYPE


def _drifted(props: dict[str, Any]) -> bool:
    """Whether the key, as the program read it before this update (`observed`), holds something
    else than the value: written outside `pulumi up` meanwhile, so this update writes it again."""
    return "observed" in props and props["observed"] != props["value"]


class _ConsulKeyProvider(dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        consul_api.kv_put(props["address"], props["key"], props["value"], props["token"])
        return dynamic.CreateResult(id_=props["key"], outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # KV is cluster-wide: only a new key is a new resource. Any agent can write it, so a new
        # (or not yet known) agent address is a plain update. Deleting the old key first keeps a
        # replacement from deleting what it just wrote when old and new keys coincide.
        replaces = ["key"] if olds.get("key") != news.get("key") else []
        changed = any(olds.get(k) != news.get(k) for k in ("address", "key", "value", "token")) \
            or _drifted(news)
        return dynamic.DiffResult(changes=changed, replaces=replaces, delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        # A plain overwrite: re-running an interrupted update writes the same value again. A new
        # token alone is only recorded (the delete needs it), so nothing re-renders for it.
        if any(olds.get(k) != news.get(k) for k in ("address", "key", "value")) or _drifted(news):
            consul_api.kv_put(news["address"], news["key"], news["value"], news["token"])
        return dynamic.UpdateResult(outs=news)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        consul_api.kv_delete(props["address"], props["key"], props.get("token", ""))


class ConsulKey(dynamic.Resource, module=CONSUL_KEY_TYPE[0], name=CONSUL_KEY_TYPE[1]):
    """A key/value pair written to Consul through an agent's HTTP API with `token` (a secret)."""

    address: pulumi.Output[str]
    key: pulumi.Output[str]
    value: pulumi.Output[str]

    def __init__(self, name: str, *, address: pulumi.Input[str], key: pulumi.Input[str],
                 value: pulumi.Input[str], token: pulumi.Input[str],
                 observed: str | None = None, opts: pulumi.ResourceOptions | None = None):
        # `observed`: what the key held when the program read it (None: not read, not compared).
        props = {"address": address, "key": key, "value": value, "token": pulumi.Output.secret(token)}
        if observed is not None:
            props["observed"] = observed
        super().__init__(_ConsulKeyProvider(), name, props,
                         pulumi.ResourceOptions.merge(with_legacy_type(opts), pulumi.ResourceOptions(
                             additional_secret_outputs=["token"])))
