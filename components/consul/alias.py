"""Alias: the KV key `<environment>/<service>` -> live colour, written only after that colour's
health gate passed (its value is the gate's output, so the write depends on the gate) and once the
every proxy serves that colour on the preview URI; then proven: the update fails unless each
proxy's stable URI answers from that colour within a bound."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from bluegreen.components.consul.health_gate import HealthGate
from bluegreen.components.consul.route_proof import AliasKey
from bluegreen.components.model.hooks import NO_HOOKS, Hooks
from bluegreen.components.naming import COLOURS, alias_key, proxy_route


@dataclass(frozen=True)
class AliasArgs:
    consul_address: pulumi.Input[str]
    environment: str
    service: str
    colour: str
    gate: HealthGate
    # The health path under the service's stable URI at each proxy (proxy name -> URL), where
    # the flip is proven, and under its preview URI, where the colour must answer before the flip.
    urls: pulumi.Input[dict]
    preview_urls: pulumi.Input[dict]
    token: pulumi.Input[str]         # the deployer's Consul token (a secret)
    # Asked before a flip and told after it (model.hooks), with what it moves and who moves it.
    hooks: Hooks = NO_HOOKS
    version: str | None = None
    digest: pulumi.Input[str] | None = None
    actor: str = "pulumi up"
    stack: str = ""

    def __post_init__(self):
        if self.colour not in COLOURS:
            raise ValueError(f"alias colour must be one of {COLOURS}, got {self.colour!r}")


class Alias(pulumi.ComponentResource):
    """Points `<environment>/<service>` at a colour; consul-template turns that into nginx routes."""

    key: pulumi.Output[str]
    colour: pulumi.Output[str]
    flip_seconds: pulumi.Output[float]   # alias write -> every proxy serving that colour, last flip
    proofs: pulumi.Output[dict]          # alias write -> serving, per proxy, last flip

    def __init__(self, name: str, args: AliasArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("bluegreen:service:Alias", name, None, opts)
        expected = args.colour

        def checked(colour: str) -> str:
            if colour != expected:
                raise ValueError(f"alias {args.environment}/{args.service} wants {expected} but was "
                                 f"given the gate of {colour}")
            return colour

        self.entry = AliasKey(
            f"{name}-key",
            address=args.consul_address,
            key=alias_key(args.environment, args.service),
            value=args.gate.colour.apply(checked),
            urls=args.urls,
            route=proxy_route(args.environment, args.service),
            preview_urls=args.preview_urls,
            preview_route=proxy_route(args.environment, args.service, preview=True),
            token=args.token,
            hooks=args.hooks.as_record() if args.hooks != NO_HOOKS else None,
            flip={"service": args.service, "environment": args.environment, "version": args.version,
                  "digest": args.digest, "actor": args.actor, "stack": args.stack},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.gate]),
        )
        self.key = self.entry.key
        self.colour = self.entry.value
        self.flip_seconds = self.entry.flip_s
        self.proofs = self.entry.proofs
        self.register_outputs({"key": self.key, "colour": self.colour,
                               "flipSeconds": self.flip_seconds, "proofs": self.proofs})
