"""The stack program: its inputs (read and validated by components.stack_inputs) wired into
components. __main__.py only calls `run()`."""

from __future__ import annotations

import datetime
import getpass
import os
import socket

import pulumi

from components.model.release import timestamp
from components.naming import offline_colour, proxy_host, proxy_port, service_component_name
from components.platform.credentials import PlatformCredentials, PlatformCredentialsArgs
from components.platform.docker_host import host_providers
from components.platform.platform import Platform, PlatformArgs, credential
from components.service.service import Service, ServiceArgs
from components.stack_inputs import read_inputs


def from_credentials(credentials: pulumi.Output[dict], key: str, owner: str) -> pulumi.Output[str]:
    """One value of a platform's `credentials` output, still a secret."""
    return pulumi.Output.secret(credentials.apply(lambda values: credential(values, key, owner)))


def secrets_of(secrets: pulumi.Output[dict] | None, service: str) -> pulumi.Output[dict] | None:
    """One service's secret environment, still a secret Output."""
    if secrets is None:
        return None
    return secrets.apply(lambda values: {k: str(v) for k, v in values.get(service, {}).items()})


def run(root: str) -> None:
    """Registers the platform a stack owns (if any) and each of its services."""
    inputs = read_inputs(root)
    stack = inputs.stack
    actor = os.environ.get("BLUEGREEN_ACTOR") or \
        f"{getpass.getuser()}@{socket.gethostname()} (pulumi {'preview' if pulumi.runtime.is_dry_run() else 'up'})"
    now = timestamp(datetime.datetime.now(datetime.timezone.utc))

    # A service stack names its providers and labels its containers as its environment stack
    # does: a service moved between the two (`pulumi state move`) then keeps every URN and input.
    owner = stack.environment_stack or stack.stack
    if stack.platform is not None:
        home = stack.hosts[stack.platform.host]
        owned = PlatformCredentials(f"{stack.stack}-credentials",
                                    PlatformCredentialsArgs(supplied=inputs.platform_secrets))
        providers = host_providers(stack.stack, stack.hosts,
                                   f"{home.address}:{stack.platform.registry_port}",
                                   owned.registry_username, owned.registry_password)
        platform = Platform(f"{stack.stack}-platform", PlatformArgs(
            stack=stack.stack, settings=stack.platform, hosts=stack.hosts, providers=providers,
            credentials=owned))
        registry, proxy, agents = platform.registry, platform.proxy, dict(platform.agents)
        port, address = stack.platform.proxy_port, stack.platform.proxy_address
        credentials = platform.credentials
        pulumi.export("consul", platform.consul)
        if platform.prometheus is not None:
            pulumi.export("prometheus", platform.prometheus)
        if platform.registry_ca is not None:
            # Public: what a host outside the platform installs to pull (README: real sites).
            pulumi.export("registryCa", platform.registry_ca)
        # Environment stacks (and the pipeline) read these through a StackReference.
        pulumi.export("credentials", credentials)
    else:
        registry = inputs.reference.require_output("registry")
        proxy = inputs.reference.require_output("proxy")
        port, address = proxy.apply(proxy_port), proxy.apply(proxy_host)
        credentials = pulumi.Output.secret(inputs.reference.get_output("credentials"))
        providers = host_providers(
            owner, stack.hosts, registry,
            from_credentials(credentials, "registryUsername", stack.platform_stack),
            from_credentials(credentials, "registryPassword", stack.platform_stack))
        agents = {}
    platform_owner = stack.platform_stack or stack.stack
    deployer_token = from_credentials(credentials, "consulDeployerToken", platform_owner)
    issuer_token = from_credentials(credentials, "consulIssuerToken", platform_owner)
    # Hosts without a platform-managed agent use the address configured for them.
    for name, host in stack.hosts.items():
        agents.setdefault(name, host.consul)
    pulumi.export("registry", registry)
    pulumi.export("proxy", proxy)

    summary = {}
    for settings in stack.services:
        service = Service(service_component_name(stack.environment, settings.name), ServiceArgs(
            stack=owner, environment=stack.environment, settings=settings,
            manifest=inputs.manifests[settings.name], hosts=stack.hosts, providers=providers,
            build_host=stack.build_host, registry=registry, agents=agents, proxy=proxy,
            consul_token=deployer_token, issuer_token=issuer_token,
            plans=inputs.plans[settings.name], records=inputs.records[settings.name],
            checkout=inputs.checkouts[settings.name], actor=actor, now=now,
            base_image=stack.base_image, secret_environment=secrets_of(inputs.secrets, settings.name),
            network_hosts=inputs.network_hosts[settings.name],
            proxy_port=port, proxy_address=address,
            routes={name: m.route for name, m in inputs.manifests.items()},
            secret_fingerprints=inputs.fingerprints.get(settings.name, {})))
        summary[settings.name] = {
            "live": service.live,
            "offline": service.live.apply(offline_colour),
            "url": service.url,
            "previewUrl": service.preview_url,
            "images": service.images,
            # Alias write -> the proxy serving the live colour, measured at the last flip.
            "flipSeconds": service.flip_seconds,
        }
    pulumi.export("environment", stack.environment)
    pulumi.export("services", summary)
