"""DeliveryExporter: keeps every service's delivery metrics current (images/consul/
delivery_exporter.py over model.scoreboard) in Consul KV for the catalogue and on a /metrics port
Prometheus scrapes. A container of the platform's Consul image on the platform host, with a token
that only lists the release histories and writes the delivery keys; it decides nothing during a
flip, so one is enough (Docker restarts it)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from bluegreen.components.model.config import Host
from bluegreen.components.naming import docker_name
from bluegreen.components.platform.docker_host import consul_image_script


@dataclass(frozen=True)
class DeliveryExporterArgs:
    stack: str
    image: str                     # the platform's Consul image: it carries the script
    host: Host                     # the platform host; the exporter talks to its agent
    provider: docker.Provider
    consul_token: pulumi.Input[str]   # a secret: lists the histories, writes the delivery keys
    port: int | None = None        # where it serves /metrics on the host's address (None: KV only)
    depends_on: tuple[pulumi.Resource, ...] = ()

    def __post_init__(self):
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"delivery metrics port {self.port} is not a TCP port "
                             "(bluegreen:platform.prometheus.deliveryPort)")
        if not self.host.consul.startswith("http"):
            raise ValueError(f"consul address {self.host.consul!r} must be an http(s) URL")

    @property
    def listen(self) -> str | None:
        return f"{self.host.address}:{self.port}" if self.port is not None else None


class DeliveryExporter(pulumi.ComponentResource):
    """The delivery metrics of every service, in KV and (given a port) as Prometheus metrics."""

    address: pulumi.Output[str] | None

    def __init__(self, name: str, args: DeliveryExporterArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("bluegreen:platform:DeliveryExporter", name, None, opts)
        self.container = consul_image_script(
            f"{name}-container", self, container_name=docker_name(args.stack, "delivery-exporter"),
            image=args.image, script="delivery_exporter.py", host=args.host,
            consul_token=args.consul_token, stack=args.stack, role="delivery-exporter",
            provider=args.provider, depends_on=args.depends_on,
            envs=[f"DELIVERY_METRICS_LISTEN={args.listen}"] if args.listen else [])
        listen = args.listen
        self.address = self.container.id.apply(lambda _: listen) if listen else None
        self.register_outputs({"address": self.address})
