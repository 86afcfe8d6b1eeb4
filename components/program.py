"""The stack program: its inputs (read and validated by components.stack_inputs) wired into
components. __main__.py only calls `run()`."""

from __future__ import annotations

import dataclasses
import datetime
import getpass
import os
import socket
from dataclasses import dataclass

import pulumi

from bluegreen.components.model.config import (
    PlatformConfig, PlatformSecrets, StackConfig, deployer_environments
)
from bluegreen.components.model.release import timestamp
from bluegreen.components.naming import offline_colour, proxy_host, proxy_port, service_component_name
from bluegreen.components.platform.credentials import PlatformCredentials, PlatformCredentialsArgs
from bluegreen.components.platform.docker_host import host_providers
from bluegreen.components.model.credentials import credential, deployer_token
from bluegreen.components.platform.platform import Platform, PlatformArgs
from bluegreen.components.service.service import Service, ServiceArgs
from bluegreen.components.stack_inputs import StackInputs, read_inputs


def from_credentials(credentials: pulumi.Output[dict], key: str, owner: str) -> pulumi.Output[str]:
    """One value of a platform's `credentials` output, still a secret."""
    return pulumi.Output.secret(credentials.apply(lambda values: credential(values, key, owner)))


def secrets_of(secrets: pulumi.Output[dict] | None, service: str) -> pulumi.Output[dict] | None:
    """One service's secret environment, still a secret Output."""
    if secrets is None:
        return None
    return secrets.apply(lambda values: {k: str(v) for k, v in values.get(service, {}).items()})


@dataclass(frozen=True)
class Wiring:
    """What every service of a stack deploys with: its platform's endpoints and credentials."""

    providers: dict
    registry: pulumi.Input[str]
    proxy: pulumi.Input[str]       # the URL clients use
    proxies: pulumi.Input[dict]    # each proxy's own base URL by host: a flip is proven on each
    agents: dict[str, pulumi.Input[str]]
    port: pulumi.Input[int]
    address: pulumi.Input[str]
    credentials: pulumi.Output[dict]


def run(root: str) -> None:
    """Registers the platform a stack owns (if any) and each of its services."""
    inputs = read_inputs(root)
    stack = inputs.stack
    actor, now = actor_and_time()
    # A service stack names its providers and labels its containers as its environment stack
    # does: a service moved between the two (`pulumi state move`) then keeps every URN and input.
    owner = stack.environment_stack or stack.stack
    wiring = own_platform(inputs, stack.platform) if stack.platform is not None \
        else referenced_platform(inputs, owner)
    # Hosts without a platform-managed agent use the address configured for them.
    for name, host in stack.hosts.items():
        wiring.agents.setdefault(name, host.consul)
    pulumi.export("registry", wiring.registry)
    pulumi.export("proxy", wiring.proxy)
    pulumi.export("proxies", wiring.proxies)   # environment stacks prove their flips on each
    summary = {settings.name: service_summary(deploy_service(inputs, settings, wiring, owner, actor, now))
               for settings in stack.services}
    pulumi.export("environment", stack.environment)
    pulumi.export("services", summary)


def actor_and_time() -> tuple[str, str]:
    """Who deploys (BLUEGREEN_ACTOR, else user@host and the command) and when, for the release
    history."""
    actor = os.environ.get("BLUEGREEN_ACTOR") or \
        f"{getpass.getuser()}@{socket.gethostname()} (pulumi {'preview' if pulumi.runtime.is_dry_run() else 'up'})"
    return actor, timestamp(datetime.datetime.now(datetime.timezone.utc))


def own_platform(inputs: StackInputs, settings: PlatformConfig) -> Wiring:
    """The platform this stack owns (`settings`): registered here, its outputs exported."""
    platform, wiring = owned_platform(inputs.stack, settings, inputs.platform_secrets)
    pulumi.export("consul", platform.consul)
    if platform.prometheus is not None:
        pulumi.export("prometheus", platform.prometheus)
    if platform.registry_ca is not None:
        # Public: what a host outside the platform installs to pull (README: real sites).
        pulumi.export("registryCa", platform.registry_ca)
    # Environment stacks (and the pipeline) read these through a StackReference.
    pulumi.export("credentials", platform.credentials)
    return wiring


def owned_platform(stack: StackConfig, settings: PlatformConfig, supplied: PlatformSecrets,
                   opts: pulumi.ResourceOptions | None = None) -> tuple[Platform, Wiring]:
    """Registers the platform `settings` describe, with the site's `supplied` credentials (any
    not supplied are generated); `opts` (e.g. a parent) apply to its top-level resources."""
    home = stack.hosts[settings.host]
    owned = PlatformCredentials(f"{stack.stack}-credentials",
                                PlatformCredentialsArgs(supplied=supplied), opts=opts)
    providers = host_providers(stack.stack, stack.hosts,
                               f"{home.address}:{settings.registry_port}",
                               owned.registry_username, owned.registry_password, opts=opts)
    platform = Platform(f"{stack.stack}-platform", PlatformArgs(
        stack=stack.stack, settings=dataclasses.replace(settings, environments=deployer_environments(stack)),
        hosts=stack.hosts, providers=providers, credentials=owned), opts=opts)
    return platform, Wiring(providers, platform.registry, platform.proxy, platform.proxies,
                            dict(platform.agents), settings.proxy_port,
                            settings.client_proxy_address, platform.credentials)


def referenced_platform(inputs: StackInputs, owner: str) -> Wiring:
    """The platform of the stack this one references, read through its outputs."""
    stack, reference, platform_stack = inputs.stack, inputs.reference, inputs.stack.platform_stack
    if reference is None or platform_stack is None:
        raise pulumi.RunError(f"{stack.source}: bluegreen.platform: set either platform (this stack "
                              "owns the platform) or platformStack (the stack that owns it)")
    registry, proxy = reference.require_output("registry"), reference.require_output("proxy")
    credentials: pulumi.Output[dict] = pulumi.Output.secret(reference.get_output("credentials"))
    # A platform from before `proxies` existed ran one proxy, at `proxy`.
    proxies = pulumi.Output.all(proxy, reference.get_output("proxies")).apply(
        lambda values: values[1] or {"proxy": values[0]})
    return platform_wiring(stack, owner, registry, proxy, proxies, credentials, platform_stack)


def platform_wiring(stack: StackConfig, prefix: str, registry: pulumi.Output[str],
                    proxy: pulumi.Output[str], proxies: pulumi.Input[dict],
                    credentials: pulumi.Output[dict], platform_owner: str,
                    opts: pulumi.ResourceOptions | None = None) -> Wiring:
    """What services deploy with on a platform known by its outputs (`registry`, `proxy`,
    `proxies`, `credentials`, as a Platform exports them): providers named
    `<prefix>-host-<host>`; `platform_owner` names the platform in errors."""
    providers = host_providers(
        prefix, stack.hosts, registry,
        from_credentials(credentials, "registryUsername", platform_owner),
        from_credentials(credentials, "registryPassword", platform_owner), opts=opts)
    return Wiring(providers, registry, proxy, proxies, {}, proxy.apply(proxy_port),
                  proxy.apply(proxy_host), credentials)


def deploy_service(inputs: StackInputs, settings, wiring: Wiring, owner: str, actor: str,
                   now: str, opts: pulumi.ResourceOptions | None = None) -> Service:
    """Registers one service of the stack on the platform `wiring` describes."""
    stack = inputs.stack
    platform_owner = stack.platform_stack or stack.stack
    return Service(service_component_name(stack.environment, settings.name), ServiceArgs(
        stack=owner, environment=stack.environment, settings=settings,
        manifest=inputs.manifests[settings.name], hosts=stack.hosts, providers=wiring.providers,
        build_host=stack.build_host, registry=wiring.registry, agents=wiring.agents,
        proxy=wiring.proxy, proxies=wiring.proxies,
        consul_token=pulumi.Output.secret(wiring.credentials.apply(
            lambda values: deployer_token(values, stack.environment, platform_owner))),
        issuer_token=from_credentials(wiring.credentials, "consulIssuerToken", platform_owner),
        plans=inputs.plans[settings.name], records=inputs.records[settings.name],
        checkout=inputs.checkouts[settings.name], committed_at=inputs.commits.get(settings.name),
        actor=actor, now=now,
        base_image=stack.base_image, secret_environment=secrets_of(inputs.secrets, settings.name),
        network_hosts=inputs.network_hosts[settings.name],
        proxy_port=wiring.port, proxy_address=wiring.address,
        routes={name: m.route for name, m in inputs.manifests.items()},
        secret_fingerprints=inputs.fingerprints.get(settings.name, {}),
        dependencies_shape=inputs.dependencies[settings.name]), opts=opts)


def service_summary(service: Service) -> dict:
    """A service's entry in the `services` output."""
    return {
        "live": service.live,
        "offline": service.live.apply(offline_colour),
        "url": service.url,
        "previewUrl": service.preview_url,
        "images": service.images,
        # Alias write -> the proxy serving the live colour, measured at the last flip.
        "flipSeconds": service.flip_seconds,
        # ... per proxy: the flip is proven on each.
        "flipProofs": service.flip_proofs,
    }
