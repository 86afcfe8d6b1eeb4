"""bluegreen:index:Service: one service in one environment, deployed onto a Platform's outputs,
from the values a stack's bluegreen:services entry holds."""


from typing import Any, NotRequired, TypedDict

import pulumi

from bluegreen.components.model.config import StackConfig, parse_stack_config
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.model.wire import integral_numbers
from bluegreen.components.naming import package_type
from bluegreen.components.package import ROOT, input_error
from bluegreen.components.program import actor_and_time, deploy_service, platform_wiring, service_summary
from bluegreen.components.stack_inputs import known_deployer_token, read_inputs


class ServiceArgs(TypedDict):
    service: str
    """The service's name, as its manifest (service.yaml) names it."""
    settings: dict[str, Any]
    """Its entry, as bluegreen:services.<service> in a stack file: {manifest: path to
    service.yaml, live: blue|green, blue: {version}, green: {version}, hosts, replicas, ...}."""
    environment: str
    """The environment it deploys to: the tag of its registrations and its alias's prefix."""
    hosts: dict[str, Any]
    """Docker hosts by name, as bluegreen:hosts in a stack file (the Platform's, or some of them)."""
    registry: pulumi.Input[str]
    """The Platform's `registry` output."""
    proxy: pulumi.Input[str]
    """The Platform's `proxy` output."""
    credentials: pulumi.Input[dict[str, Any]]
    """The Platform's `credentials` output (secret); it must list the environment."""
    proxies: NotRequired[pulumi.Input[dict[str, str]]]
    """The Platform's `proxies` output (default: the one proxy at `proxy`)."""
    platform: NotRequired[dict[str, Any]]
    """The Platform's `platform` input, when the same program deploys the Platform."""
    platform_stack: NotRequired[str]
    """Otherwise the stack that owns the platform (named in errors)."""
    stack: NotRequired[str]
    """The name its providers and containers carry (default: the stack's name)."""
    base_image: NotRequired[str]
    """What its Dockerfile builds FROM (build arg BASE_IMAGE); default debian:bookworm-slim."""
    root: NotRequired[str]
    """The directory relative manifest paths start from (default: this package's directory)."""


class Service(pulumi.ComponentResource):
    """A service in one environment: its image built and pushed by digest, its linked
    dependencies, a colour slot per configured colour with their health gates, and the Consul
    alias naming the live colour. A change deploys the offline colour, waits for its gate, then
    flips; an update that would touch the live colour is refused."""

    live: pulumi.Output[str]
    """The colour the alias names after this update."""
    url: pulumi.Output[str]
    """The stable URI: the live colour through the proxy."""
    preview_url: pulumi.Output[str]
    """The offline colour through the proxy."""
    images: pulumi.Output[dict[str, Any]]
    """Per colour, {version, image}: the image by digest it runs."""

    def __init__(self, name: str, args: ServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(package_type("Service"), name, None, opts)
        stack, root = service_stack_config(name, args), args.get("root") or ROOT
        credentials = pulumi.Output.secret(args["credentials"])
        inputs = read_inputs(root, stack, known_token=known_deployer_token(credentials, stack.environment))
        child = pulumi.ResourceOptions(parent=self)
        proxy = pulumi.Output.from_input(args["proxy"])
        wiring = platform_wiring(stack, name, pulumi.Output.from_input(args["registry"]), proxy,
                                 args.get("proxies") or proxy.apply(lambda url: {"proxy": url}),
                                 credentials, stack.platform_stack or stack.stack, opts=child)
        wiring.agents.update({host: settings.consul for host, settings in stack.hosts.items()})
        actor, now = actor_and_time()
        summary = service_summary(deploy_service(inputs, stack.services[0], wiring, stack.stack,
                                                 actor, now, opts=child))
        self.live, self.url, self.images = summary["live"], summary["url"], summary["images"]
        self.preview_url = summary["previewUrl"]
        self.register_outputs({"live": self.live, "url": self.url, "previewUrl": self.preview_url,
                               "images": self.images})


def service_stack_config(name: str, args: ServiceArgs) -> StackConfig:
    """The validated configuration of a Service resource, as a stack deploying only it would
    hold it."""
    values: dict[str, Any] = {"environment": args.get("environment"), "hosts": args.get("hosts"),
                              "services": {args.get("service"): args.get("settings")}}
    optional = {"platform": "platform", "platformStack": "platform_stack", "baseImage": "base_image"}
    values.update({key: args[field] for key, field in optional.items() if args.get(field)})  # type: ignore[literal-required]
    try:
        return parse_stack_config(args.get("stack") or pulumi.get_stack(), integral_numbers(values),
                                  args.get("root") or ROOT)
    except ConfigError as error:
        raise input_error(package_type("Service"), name, error) from None
