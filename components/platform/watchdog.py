"""Watchdog: one bake-time watchdog (images/consul/watchdog.py) in a container on a platform
host, beside its Consul agent. It lives with the platform, not with the deploy that flipped, so a
bake outlives the CI runner; with nothing baking it only waits on Consul. A platform runs two
(`number` 1 and 2): the one holding the leader key acts, the other stands by (model.election)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from bluegreen.components.model.config import Host
from bluegreen.components.model.election import WATCHDOGS
from bluegreen.components.naming import docker_name
from bluegreen.components.platform.docker_host import consul_image_script


@dataclass(frozen=True)
class WatchdogArgs:
    stack: str
    image: str                     # the platform's Consul image: it carries the script, naming.py
    #                                and analysis.py
    host: Host                     # where it runs (platform.watchdogHosts); it talks to that agent
    proxy_url: pulumi.Input[str]   # the proxy's base URL: the stable URIs it probes
    provider: docker.Provider
    consul_token: pulumi.Input[str]   # a secret: reads bakes and checks, flips an alias back
    probe_rate: float = 5.0        # requests/s to each baking service's stable URI
    prometheus_url: pulumi.Input[str] | None = None   # where it judges real traffic (None: probes only)
    depends_on: tuple[pulumi.Resource, ...] = ()
    number: int = 1                # which of the platform's watchdogs: its container's name

    def __post_init__(self):
        if not 1 <= self.number <= WATCHDOGS:
            raise ValueError(f"watchdog number {self.number} is out of range [1, {WATCHDOGS}]")
        if not 0 < self.probe_rate <= 20:
            raise ValueError(f"watchdog probe rate {self.probe_rate}/s is out of range (0, 20]")
        if not self.host.consul.startswith("http"):
            raise ValueError(f"consul address {self.host.consul!r} must be an http(s) URL")


class Watchdog(pulumi.ComponentResource):
    """Flips an alias back when the colour it went to breaches during its bake time."""

    container_name: pulumi.Output[str]

    def __init__(self, name: str, args: WatchdogArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("bluegreen:platform:Watchdog", name, None, opts)
        ident = docker_name(args.stack, "watchdog", str(args.number))
        self.container = consul_image_script(
            f"{name}-container", self, container_name=ident, image=args.image, script="watchdog.py",
            host=args.host, consul_token=args.consul_token, stack=args.stack, role="watchdog",
            provider=args.provider, depends_on=args.depends_on,
            envs=[pulumi.Output.concat("PROXY_URL=", args.proxy_url), f"PROBE_RATE={args.probe_rate:g}",
                  f"WATCHDOG_ID={ident}", f"WATCHDOG_HOST={args.host.name}",
                  *([pulumi.Output.concat("PROMETHEUS_URL=", args.prometheus_url)]
                    if args.prometheus_url is not None else [])])
        self.container_name = self.container.name
        self.register_outputs({"container_name": self.container_name})
