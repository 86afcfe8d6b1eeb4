"""Alias: the KV key `<environment>/<service>` -> live colour, written only after that colour's
health gate passed (its value is the gate's output, so the write depends on the gate)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.consul.health_gate import HealthGate
from components.consul.key import ConsulKey
from components.naming import COLOURS, alias_key


@dataclass(frozen=True)
class AliasArgs:
    consul_address: pulumi.Input[str]
    environment: str
    service: str
    colour: str
    gate: HealthGate

    def __post_init__(self):
        if self.colour not in COLOURS:
            raise ValueError(f"alias colour must be one of {COLOURS}, got {self.colour!r}")


class Alias(pulumi.ComponentResource):
    """Points `<environment>/<service>` at a colour; consul-template turns that into nginx routes."""

    key: pulumi.Output[str]
    colour: pulumi.Output[str]

    def __init__(self, name: str, args: AliasArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("bluegreen:service:Alias", name, None, opts)
        expected = args.colour

        def checked(colour: str) -> str:
            if colour != expected:
                raise ValueError(f"alias {args.environment}/{args.service} wants {expected} but was "
                                 f"given the gate of {colour}")
            return colour

        self.entry = ConsulKey(
            f"{name}-key",
            address=args.consul_address,
            key=alias_key(args.environment, args.service),
            value=args.gate.colour.apply(checked),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.gate]),
        )
        self.key = self.entry.key
        self.colour = self.entry.value
        self.register_outputs({"key": self.key, "colour": self.colour})
