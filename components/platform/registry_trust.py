"""RegistryTrust: puts the registry's CA where each host's Docker engine looks for it
(`/etc/docker/certs.d/<registry>/ca.crt`), so the engine pulls over TLS and trusts that CA for
that registry only: no `insecure-registries`, no change to the host's own CA store.

The engines are reached through the Docker API only (over ssh:// on real hosts), so the file is
written by a container that bind-mounts the engine's certs.d, gets the CA as an upload, copies it
into place and exits. (It mounts certs.d itself: Docker's bind syntax cannot name a folder whose
name holds a colon, as `<host>:<port>` does.)"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

import shlex

from bluegreen.components.naming import DOCKER_CERTS_DIR, REGISTRY_CA_DIR, docker_name, registry_ca_file
from bluegreen.components.platform.docker_host import labels

CA_FILE = "ca.crt"
MOUNT = "/certs.d"
CA_MOUNT = "/registry-cas"
UPLOADED = "/registry-ca.crt"


def install_script(registry: str) -> str:
    """The shell line that puts the uploaded CA where the engine looks for `registry`'s, and in
    the host's REGISTRY_CA_DIR (for a deployer on that host)."""
    folder = shlex.quote(f"{MOUNT}/{registry}")
    flat = shlex.quote(registry_ca_file(registry).replace(REGISTRY_CA_DIR, CA_MOUNT, 1))
    return f"mkdir -p {folder} && cp {UPLOADED} {folder}/{CA_FILE} && cp {UPLOADED} {flat}"


@dataclass(frozen=True)
class RegistryTrustArgs:
    stack: str
    registry: str                           # host:port, as engines pull from it
    ca: pulumi.Input[str]                   # PEM
    images: Mapping[str, pulumi.Input[str]]  # host -> an image with sh there (it runs mkdir and cp)
    providers: dict[str, docker.Provider]

    def __post_init__(self):
        missing = sorted(set(self.images) - set(self.providers))
        if missing:
            raise ValueError(f"no Docker provider for host(s) {', '.join(missing)}")


class RegistryTrust(pulumi.ComponentResource):
    """One exited container per host, which copied the CA into the engine's trust folder for the
    registry; a new CA replaces it (and so rewrites the file)."""

    def __init__(self, name: str, args: RegistryTrustArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("bluegreen:platform:RegistryTrust", name, None, opts)
        self.containers = {
            host: docker.Container(
                f"{name}-{host}",
                name=docker_name(args.stack, "registry-trust"),
                image=image,
                entrypoints=["sh", "-c"],
                command=[install_script(args.registry)],
                volumes=[docker.ContainerVolumeArgs(host_path=DOCKER_CERTS_DIR, container_path=MOUNT),
                         docker.ContainerVolumeArgs(host_path=REGISTRY_CA_DIR, container_path=CA_MOUNT)],
                uploads=[docker.ContainerUploadArgs(file=UPLOADED, content=args.ca)],
                must_run=False,     # it exits once the file is in place
                restart="on-failure",   # (a copy that failed is tried again)
                max_retry_count=3,
                memory=16,
                memory_swap=16,
                network_mode="none",
                labels=labels(stack=args.stack, role="registry-trust"),
                opts=pulumi.ResourceOptions(parent=self, provider=args.providers[host],
                                            delete_before_replace=True))
            for host, image in sorted(args.images.items())}
        self.register_outputs({})
