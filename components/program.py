"""The stack program: typed config in, components out. __main__.py only calls `run()`."""

from __future__ import annotations


import pulumi

from .config import StackConfig, parse_stack_config
from .docker_host import host_providers
from .manifest import load_manifest
from .platform import Platform, PlatformArgs
from .planning import offline_colour
from .service import Service, ServiceArgs
from .validation import ConfigError

CONFIG_KEYS = ("environment", "hosts", "platform", "platformStack", "services", "baseImage")


def read_config(root: str) -> StackConfig:
    """Reads every bluegreen:* value of the current stack once and validates it."""
    config = pulumi.Config("bluegreen")
    values = {}
    for key in CONFIG_KEYS:
        value = config.get_object(key)
        if value is None:
            value = config.get(key)
        if value is not None:
            values[key] = value
    return parse_stack_config(pulumi.get_stack(), values, root)


def run(root: str) -> None:
    try:
        stack = read_config(root)
        manifests = {s.name: load_manifest(s.manifest) for s in stack.services}
    except ConfigError as error:
        # Nothing is registered before validation, so an invalid input deploys nothing.
        raise pulumi.RunError(f"invalid configuration: {error}") from None

    providers = host_providers(stack.stack, stack.hosts)
    if stack.platform is not None:
        platform = Platform(f"{stack.stack}-platform", PlatformArgs(
            stack=stack.stack, settings=stack.platform, hosts=stack.hosts, providers=providers))
        registry, proxy, agents = platform.registry, platform.proxy, dict(platform.agents)
        build_host = stack.platform.host
        pulumi.export("consul", platform.consul)
    else:
        reference = pulumi.StackReference(stack.platform_stack)
        registry = reference.require_output("registry")
        proxy = reference.require_output("proxy")
        agents = {}
        build_host = next(iter(stack.hosts))
    # Hosts without a platform-managed agent use the address configured for them.
    for name, host in stack.hosts.items():
        agents.setdefault(name, host.consul)
    pulumi.export("registry", registry)
    pulumi.export("proxy", proxy)

    summary = {}
    for settings in stack.services:
        service = Service(f"{stack.environment}-{settings.name}", ServiceArgs(
            stack=stack.stack, environment=stack.environment, settings=settings,
            manifest=manifests[settings.name], hosts=stack.hosts, providers=providers,
            build_host=build_host, registry=registry, agents=agents,
            base_image=stack.base_image))
        offline = offline_colour(settings.live)
        summary[settings.name] = {
            "live": service.live,
            "offline": offline,
            "url": pulumi.Output.concat(proxy, f"/{stack.environment}/{manifests[settings.name].route}/"),
            "previewUrl": pulumi.Output.concat(proxy, f"/preview/{stack.environment}/{manifests[settings.name].route}/"),
            "images": service.images,
        }
    pulumi.export("environment", stack.environment)
    pulumi.export("services", summary)
