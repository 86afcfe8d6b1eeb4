"""bluegreen:index:Platform: the shared platform (Consul, registry, proxy, watchdogs, metrics)
from the values a stack's bluegreen:hosts and bluegreen:platform hold."""


from typing import Any, NotRequired, TypedDict

import pulumi

from bluegreen.components.model.config import PlatformSecrets, StackConfig, parse_stack_config
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.model.wire import integral_numbers
from bluegreen.components.naming import package_type
from bluegreen.components.program import owned_platform
from bluegreen.components.package import ROOT, input_error


class PlatformArgs(TypedDict):
    hosts: dict[str, Any]
    """Docker hosts by name, as bluegreen:hosts in a stack file: {docker: unix:///... or
    ssh://..., consul: the agent's URL, address: the IPv4 address registrations advertise,
    bridgeAddress, consulSerfPort, consulServerPort} (docs/platform-teams.md)."""
    platform: dict[str, Any]
    """The platform, as bluegreen:platform in a stack file: {host, consul: {image}, registry:
    {image, port}, proxy: {image, port, metricsPort, drainTimeout}, prometheus, environments}."""
    stack: NotRequired[str]
    """The name its containers, providers and ACL tokens carry (default: the stack's name); the
    Service resources deploying onto it take the same."""


class Platform(pulumi.ComponentResource):
    """The shared platform of one or more environments: a Consul agent per host (servers on the
    platform hosts), the in-house registry, the nginx proxy driven by consul-template, the bake
    watchdogs and, when configured, Prometheus. Services deploy onto it with its outputs."""

    consul: pulumi.Output[str]
    """The platform host's Consul agent URL."""
    registry: pulumi.Output[str]
    """The in-house registry, host:port."""
    proxy: pulumi.Output[str]
    """The proxy's base URL: each service answers at <proxy>/<environment>/<route>/."""
    proxies: pulumi.Output[dict[str, str]]
    """Each proxy's own base URL by host (one unless platform.proxy.hosts lists several): a flip
    is proven at each."""
    credentials: pulumi.Output[dict[str, Any]]
    """Secret: a deployer Consul token per environment (consulDeployerTokens), the issuer's token,
    the registry's user and password; a Service deploys with it."""

    def __init__(self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(package_type("Platform"), name, None, opts)
        stack = platform_stack_config(name, args)
        assert stack.platform is not None  # platform_stack_config refuses a Platform without it
        platform, _ = owned_platform(stack, stack.platform, PlatformSecrets(),
                                     opts=pulumi.ResourceOptions(parent=self))
        self.consul, self.registry = platform.consul, platform.registry
        self.proxy, self.proxies = platform.proxy, pulumi.Output.from_input(platform.proxies)
        self.credentials = platform.credentials
        self.register_outputs({"consul": self.consul, "registry": self.registry, "proxy": self.proxy,
                               "proxies": self.proxies, "credentials": self.credentials})


def platform_stack_config(name: str, args: PlatformArgs) -> StackConfig:
    """The validated configuration of a Platform resource, as a stack owning it would hold it."""
    values = integral_numbers({"hosts": args.get("hosts"), "platform": args.get("platform")})
    try:
        if not values["platform"]:
            raise ConfigError("", "platform", "is required: the platform's "
                              "host, consul, registry and proxy, as bluegreen:platform in a stack file")
        return parse_stack_config(args.get("stack") or pulumi.get_stack(), values, ROOT)
    except ConfigError as error:
        raise input_error(package_type("Platform"), name, error) from None
