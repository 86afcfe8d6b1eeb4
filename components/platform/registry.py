"""Registry: the in-house image registry, published on the platform host's address (127.0.0.1 for
a single machine; its lab or site address when other hosts pull from it)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.naming import docker_name
from components.platform.docker_host import http_healthcheck, labels, local_image


@dataclass(frozen=True)
class RegistryArgs:
    stack: str
    image: str
    port: int
    provider: docker.Provider
    address: str = "127.0.0.1"   # where it is published: every host pulls from address:port

    def __post_init__(self):
        if not 0 < self.port < 65536:
            raise ValueError(f"registry port {self.port} is not a TCP port")


class Registry(pulumi.ComponentResource):
    """A docker-registry container with its storage on a volume; `address` is host:port."""

    address: pulumi.Output[str]

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("bluegreen:platform:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        image = local_image(args.image, args.provider, self)
        storage = docker.Volume(f"{name}-storage", name=docker_name(args.stack, "registry"), opts=child)
        self.container = docker.Container(
            f"{name}-container",
            name=docker_name(args.stack, "registry"),
            image=image,
            ports=[docker.ContainerPortArgs(internal=5000, external=args.port, ip=args.address)],
            volumes=[docker.ContainerVolumeArgs(volume_name=storage.name,
                                                container_path="/var/lib/docker-registry")],
            restart="unless-stopped",
            memory=256,
            memory_swap=256,  # no swap; also what Docker reports back
            labels=labels(stack=args.stack, role="registry"),
            healthcheck=http_healthcheck("http://127.0.0.1:5000/v2/", must_contain="{"),
            wait=True,
            wait_timeout=60,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(delete_before_replace=True)),
        )
        # Docker treats 127.0.0.0/8 registries as insecure-allowed, so plain HTTP works locally;
        # engines on other hosts are told `--insecure-registry <address>` (the lab does) or use TLS.
        self.address = self.container.id.apply(lambda _: f"{args.address}:{args.port}")
        self.register_outputs({"address": self.address})
