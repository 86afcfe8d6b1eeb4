"""Docker providers per host, and small builders shared by the components that run containers."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from .config import Host


def host_providers(stack: str, hosts: dict[str, Host],
                   registry: pulumi.Input[str]) -> dict[str, docker.Provider]:
    """One pulumi-docker provider per configured host (its engine socket or ssh URL).

    The in-house registry needs no credentials, but the provider wants an entry for every
    registry it pushes to."""
    # http:// tells the provider to read digests over plain HTTP (a registry on 127.0.0.1).
    auth = [docker.ProviderRegistryAuthArgs(address=pulumi.Output.concat("http://", registry),
                                            auth_disabled=True)]
    return {name: docker.Provider(f"{stack}-host-{name}", host=host.docker, registry_auth=auth)
            for name, host in hosts.items()}


def labels(**values: str) -> list[docker.ContainerLabelArgs]:
    """Container labels under the bluegreen. prefix: what `docker ps --filter` and cleanup use."""
    return [docker.ContainerLabelArgs(label=f"bluegreen.{key}", value=value)
            for key, value in sorted(values.items())]


def http_healthcheck(url: str, must_contain: str = "", interval: str = "1s",
                     retries: int = 60) -> docker.ContainerHealthcheckArgs:
    """A Docker health check with curl (in the base image); `wait=True` on a container uses it."""
    return docker.ContainerHealthcheckArgs(
        tests=["CMD-SHELL", f"curl -fsS {url} | grep -q '{must_contain}' || exit 1"],
        interval=interval, timeout="2s", retries=retries, start_period="1s")


def local_image(name: str, reference: str, provider: docker.Provider,
                parent: pulumi.Resource) -> docker.RemoteImage:
    """An image already on the host (built by the bootstrap); its ID pins the container."""
    return docker.RemoteImage(name, name=reference, keep_locally=True,
                              opts=pulumi.ResourceOptions(parent=parent, provider=provider))
