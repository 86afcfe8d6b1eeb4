"""Docker providers per host, and small builders shared by the components that run containers."""

from __future__ import annotations

import ipaddress

import pulumi
import pulumi_docker as docker

from bluegreen.components.model.config import Host
from bluegreen.components.naming import PLATFORM_TOKEN_FILE


def host_providers(stack: str, hosts: dict[str, Host], registry: pulumi.Input[str],
                   username: pulumi.Input[str], password: pulumi.Input[str],
                   opts: pulumi.ResourceOptions | None = None) -> dict[str, docker.Provider]:
    """One pulumi-docker provider per configured host (its engine socket or ssh URL), with the
    in-house registry's credentials (secrets) for its pushes and pulls."""
    # The scheme tells the provider how to read digests: plain HTTP from a registry on loopback,
    # else HTTPS, trusting the CAs of the system and of SSL_CERT_DIR (./bg adds REGISTRY_CA_DIR).
    auth = [docker.ProviderRegistryAuthArgs(address=pulumi.Output.from_input(registry).apply(registry_url),
                                            username=pulumi.Output.secret(username),
                                            password=pulumi.Output.secret(password))]
    return {name: docker.Provider(f"{stack}-host-{name}", host=host.docker, registry_auth=auth, opts=opts)
            for name, host in hosts.items()}


def needs_tls(address: str) -> bool:
    """Whether a registry published at `address` (a host, no port) serves HTTPS: Docker pulls over
    plain HTTP only from loopback (or from registries an engine is told to trust insecurely)."""
    try:
        return not ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address != "localhost"


def registry_url(registry: str) -> str:
    """`registry` (host:port) with the scheme it serves."""
    return ("https://" if needs_tls(registry.rsplit(":", 1)[0].strip("[]")) else "http://") + registry


def needs_legacy_builder(host: Host) -> bool:
    """Whether builds on this host must use the legacy builder: the provider's buildx path builds
    on the default engine (DOCKER_HOST) whatever the provider's host, so only a unix:// engine can
    use it (and keeps it: changing builders would change its images' digests)."""
    return not host.docker.startswith("unix://")


def labels(**values: str) -> list[docker.ContainerLabelArgs]:
    """Container labels under the bluegreen. prefix: what `docker ps --filter` and cleanup use."""
    return [docker.ContainerLabelArgs(label=f"bluegreen.{key}", value=value)
            for key, value in sorted(values.items())]


def http_healthcheck(url: str, must_contain: str = "", interval: str = "1s",
                     retries: int = 60, status: int | None = None,
                     insecure: bool = False, start_period: str = "1s") -> docker.ContainerHealthcheckArgs:
    """A Docker health check with curl (in the base image); `wait=True` on a container uses it.
    Healthy: a 2xx answer containing `must_contain`, or, given `status`, exactly that status.
    `insecure`: an https URL whose certificate is not checked. Failures within `start_period`
    do not count, so a long one with few `retries` reports a dead service quickly."""
    curl = "curl -k" if insecure else "curl"
    test = (f"{curl} -fsS {url} | grep -q '{must_contain}' || exit 1" if status is None else
            f"{curl} -sS -o /dev/null -w '%{{http_code}}' {url} | grep -qx '{status}' || exit 1")
    return docker.ContainerHealthcheckArgs(
        tests=["CMD-SHELL", test], interval=interval, timeout="2s", retries=retries,
        start_period=start_period)


def secret_upload(path: str, content: pulumi.Input[str]) -> docker.ContainerUploadArgs:
    """A file written into a container before it starts, readable by root only: how secrets reach
    platform containers, since `docker inspect` shows their command and environment."""
    return docker.ContainerUploadArgs(file=path, content=pulumi.Output.secret(content),
                                      permissions="0600")


def once_up(container: docker.Container, value: str) -> pulumi.Output[str]:
    """`value`, resolved once `container` exists: who reads it waits for the container."""
    return container.id.apply(lambda _: value)


def local_image(reference: str, provider: docker.Provider, parent: pulumi.Resource) -> pulumi.Output[str]:
    """The ID of a platform image already on the host (built by the bootstrap), read on every
    run: when the bootstrap rebuilds an image under the same tag, its containers are replaced."""
    return docker.get_remote_image_output(
        name=reference, opts=pulumi.InvokeOptions(parent=parent, provider=provider)).id


def consul_image_script(name: str, parent: pulumi.Resource, *, container_name: str, image: str,
                        script: str, host: Host, envs: list, consul_token: pulumi.Input[str],
                        stack: str, role: str, provider: docker.Provider,
                        depends_on: tuple[pulumi.Resource, ...] = ()) -> docker.Container:
    """A platform script of the Consul image (images/consul/`script`) in a container on `host`'s
    network, beside its agent: the agent's address and its token file in the environment (with
    `envs`), restarted by Docker, 64 MB and no swap."""
    return docker.Container(
        name,
        name=container_name,
        image=local_image(image, provider, parent),
        entrypoints=["python3", "-u", f"/usr/local/lib/bluegreen/{script}"],
        network_mode="host",   # the agent (and the proxy, Prometheus) listen on the host's loopback
        envs=[f"CONSUL_HTTP_ADDR={host.consul}", f"CONSUL_HTTP_TOKEN_FILE={PLATFORM_TOKEN_FILE}", *envs],
        uploads=[secret_upload(PLATFORM_TOKEN_FILE, consul_token)],
        restart="unless-stopped",
        memory=64,
        memory_swap=64,  # no swap; also what Docker reports back
        labels=labels(stack=stack, role=role, host=host.name),
        opts=pulumi.ResourceOptions(parent=parent, provider=provider, depends_on=list(depends_on),
                                    delete_before_replace=True))
