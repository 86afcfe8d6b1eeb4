"""VirtualAddress: one address for several proxies. keepalived (VRRP) beside each proxy moves it
to a host whose nginx answers; clients use only that address."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from bluegreen.components.model.config import Host
from bluegreen.components.model.vrrp import vrrp_environment
from bluegreen.components.naming import vrrp_container
from bluegreen.components.platform.docker_host import labels, local_image


@dataclass(frozen=True)
class VirtualAddressArgs:
    stack: str
    image: str                   # the proxy image: it has keepalived and the vrrp script
    address: str                 # the virtual address, on the proxy hosts' network
    hosts: tuple[Host, ...]      # the proxy hosts, the preferred first
    port: int                    # the proxies' port: each keepalived asks its own host's nginx
    providers: dict[str, docker.Provider]
    depends_on: tuple[pulumi.Resource, ...] = ()

    def __post_init__(self):
        missing = [h.name for h in self.hosts if h.name not in self.providers]
        if missing:
            raise ValueError(f"proxy hosts {missing} have no Docker provider (bluegreen:hosts)")
        vrrp_environment(self.stack, self.address, [h.address for h in self.hosts], 0, self.port)


class VirtualAddress(pulumi.ComponentResource):
    """A keepalived container on each proxy host; `address` is the virtual address."""

    address: pulumi.Output[str]

    def __init__(self, name: str, args: VirtualAddressArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("bluegreen:platform:VirtualAddress", name, None, opts)
        addresses = [h.address for h in args.hosts]
        self.containers = {host.name: self._keepalived(
            f"{name}-{host.name}", args, host,
            vrrp_environment(args.stack, args.address, addresses, index, args.port))
            for index, host in enumerate(args.hosts)}
        self.address = pulumi.Output.all(*[c.id for c in self.containers.values()]).apply(
            lambda _: args.address)
        self.register_outputs({"address": self.address})

    def _keepalived(self, name: str, args: VirtualAddressArgs, host: Host,
                    envs: list[str]) -> docker.Container:
        provider = args.providers[host.name]
        return docker.Container(
            name,
            name=vrrp_container(args.stack, host.name),
            image=local_image(args.image, provider, self),
            entrypoints=["/usr/bin/tini", "--", "/usr/local/bin/vrrp"],
            # The host's network: the address goes on its interface, VRRP goes out on its link.
            network_mode="host",
            capabilities=docker.ContainerCapabilitiesArgs(adds=["NET_ADMIN"]),
            envs=envs,
            restart="unless-stopped",
            memory=32,
            memory_swap=32,  # no swap; also what Docker reports back
            labels=labels(stack=args.stack, role="vrrp", host=host.name),
            opts=pulumi.ResourceOptions(parent=self, provider=provider,
                                        depends_on=list(args.depends_on),
                                        delete_before_replace=True))
