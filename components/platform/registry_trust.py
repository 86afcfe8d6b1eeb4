"""RegistryTrust: puts the registry's CA where each host's Docker engine looks for it
(`/etc/docker/certs.d/<registry>/ca.crt`), so the engine pulls over TLS and trusts that CA for
that registry only: no `insecure-registries`, no change to the host's own CA store.

The engines are reached through the Docker API only (over ssh:// on real hosts), so the file is
written by a container that bind-mounts that directory, gets the CA uploaded into it, and exits."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.naming import docker_name, registry_trust_dir
from components.platform.docker_host import labels

CA_FILE = "ca.crt"
MOUNT = "/trust"


@dataclass(frozen=True)
class RegistryTrustArgs:
    stack: str
    registry: str                           # host:port, as engines pull from it
    ca: pulumi.Input[str]                   # PEM
    images: dict[str, pulumi.Input[str]]    # host -> an image present there (runs `true` only)
    providers: dict[str, docker.Provider]

    def __post_init__(self):
        missing = sorted(set(self.images) - set(self.providers))
        if missing:
            raise ValueError(f"no Docker provider for host(s) {', '.join(missing)}")


class RegistryTrust(pulumi.ComponentResource):
    """One exited container per host, whose upload wrote the CA into the engine's trust folder
    for the registry; a new CA replaces it (and so rewrites the file)."""

    def __init__(self, name: str, args: RegistryTrustArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("bluegreen:platform:RegistryTrust", name, None, opts)
        self.containers = {
            host: docker.Container(
                f"{name}-{host}",
                name=docker_name(args.stack, "registry-trust"),
                image=image,
                command=["true"],
                volumes=[docker.ContainerVolumeArgs(host_path=registry_trust_dir(args.registry),
                                                    container_path=MOUNT)],
                uploads=[docker.ContainerUploadArgs(file=f"{MOUNT}/{CA_FILE}", content=args.ca)],
                must_run=False,     # it exits at once: its work was the upload
                restart="on-failure",   # (`true` does not fail; the policy pack wants a policy)
                max_retry_count=3,
                memory=16,
                memory_swap=16,
                network_mode="none",
                labels=labels(stack=args.stack, role="registry-trust"),
                opts=pulumi.ResourceOptions(parent=self, provider=args.providers[host],
                                            delete_before_replace=True))
            for host, image in sorted(args.images.items())}
        self.register_outputs({})
