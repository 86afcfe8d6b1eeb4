"""The stack program: typed config in, components out. __main__.py only calls `run()`."""

from __future__ import annotations

import datetime
import getpass
import json
import os
import socket
import subprocess

import pulumi
from pulumi.runtime.sync_await import _sync_await

from components.consul.api import ConsulError
from components.consul.records import ServiceRecords, read_service_records
from components.model.bake import disagreement
from components.model.config import (
    OBJECT_KEYS, STRING_KEYS, PlatformSecrets, ServiceConfig, StackConfig, parse_platform_secrets,
    parse_stack_config, stack_file, stack_values
)
from components.model.manifest import load_manifest
from components.model.release import plan_colours, timestamp
from components.model.validation import ConfigError
from components.naming import (
    context_digest, docker_name, offline_colour, proxy_port, service_component_name, service_network
)
from components.platform.address_pools import (
    EngineNetworks, check_capacity, new_networks, private_network_hosts, read_engine_networks
)
from components.platform.credentials import PlatformCredentials, PlatformCredentialsArgs
from components.platform.docker_host import host_providers
from components.platform.platform import Platform, PlatformArgs, credential
from components.service.service import Service, ServiceArgs


def read_config(root: str) -> StackConfig:
    """Reads every bluegreen:* value of the current stack once and validates it."""
    config = pulumi.Config("bluegreen")
    values = {key: config.get(key) for key in STRING_KEYS}
    values.update({key: config.get_object(key) for key in OBJECT_KEYS})
    values = {key: value for key, value in values.items() if value is not None}
    return parse_stack_config(pulumi.get_stack(), stack_values(pulumi.get_stack(), values, root), root)


def read_secrets(stack: str) -> pulumi.Output[dict] | None:
    """bluegreen:secrets, {service: {NAME: value}}, set with `pulumi config set --secret --path`;
    it stays an Output so values are never plain in state, previews or the policy pack."""
    raw = pulumi.runtime.get_config("bluegreen:secrets")  # presence only; the value stays secret
    if raw is None or raw.strip() in ("", "{}", "null"):
        return None
    if not pulumi.runtime.is_config_secret("bluegreen:secrets"):
        raise ConfigError(stack_file(stack), "bluegreen.secrets",
                          "holds plain-text values; remove them and set each with `pulumi config set "
                          "--secret --path 'bluegreen:secrets.<service>.<NAME>' VALUE`")
    secrets = pulumi.Config("bluegreen").require_secret_object("secrets")

    def checked(values) -> dict:
        if not isinstance(values, dict) or not all(isinstance(v, dict) for v in values.values()):
            raise ConfigError(stack_file(stack), "bluegreen.secrets",
                              "must map service names to {NAME: value}; set entries with "
                              "`pulumi config set --secret --path 'bluegreen:secrets.<service>.<NAME>' VALUE`")
        return values

    return secrets.apply(checked)


def read_platform_secrets(stack: str) -> PlatformSecrets:
    """bluegreen:platformSecrets: credentials a site supplies instead of generated ones. Checked
    here, before anything registers, without quoting a value; used only as secret Outputs."""
    raw = pulumi.runtime.get_config("bluegreen:platformSecrets")
    if raw is None or raw.strip() in ("", "{}", "null"):
        return PlatformSecrets()
    if not pulumi.runtime.is_config_secret("bluegreen:platformSecrets"):
        raise ConfigError(stack_file(stack), "bluegreen.platformSecrets",
                          "holds plain-text values; remove them and set each with `pulumi config set "
                          "--secret --path 'bluegreen:platformSecrets.<name>' VALUE`")
    try:
        values = json.loads(raw)
    except ValueError:
        raise ConfigError(stack_file(stack), "bluegreen.platformSecrets",
                          "must be a mapping of names to values") from None
    return parse_platform_secrets(stack, values)


def platform_reference(stack: StackConfig) -> pulumi.StackReference:
    """The stack whose `credentials` output this one deploys with: the platform stack it
    references, or itself (its outputs as its last update left them) when it owns the platform."""
    if stack.platform_stack:
        return pulumi.StackReference(stack.platform_stack)
    own = f"{pulumi.get_organization()}/{pulumi.get_project()}/{stack.stack}"
    return pulumi.StackReference(f"{stack.stack}-last-update", stack_name=own)


def last_deployer_token(reference: pulumi.StackReference) -> str:
    """The deployer's Consul token as the platform stack's last update left it, read now: the
    release records are read with it before anything else registers. Empty before the platform's
    first update."""
    details = _sync_await(reference.get_output_details("credentials"))
    values = details.secret_value if details.secret_value is not None else details.value
    return (values or {}).get("consulDeployerToken", "") if isinstance(values, dict) else ""


def from_credentials(credentials: pulumi.Output[dict], key: str, owner: str) -> pulumi.Output[str]:
    """One value of a platform's `credentials` output, still a secret."""
    return pulumi.Output.secret(credentials.apply(lambda values: credential(values, key, owner)))


def secrets_of(secrets: pulumi.Output[dict] | None, service: str) -> pulumi.Output[dict] | None:
    """One service's secret environment, still a secret Output."""
    if secrets is None:
        return None
    return secrets.apply(lambda values: {k: str(v) for k, v in values.get(service, {}).items()})


def read_records(stack: StackConfig, settings: ServiceConfig, token: str) -> ServiceRecords:
    """Consul's records of a service, through the agent of its first host, with the deployer's
    `token`. Unreachable Consul is an error, except on a platform's first deployment (its Consul
    container does not exist yet, or it has not finished once): without the records, released
    versions could not be told from new ones."""
    host = stack.hosts[settings.hosts[0]]
    try:
        return read_service_records(host.consul, stack.environment, settings.name,
                                    token or "anonymous")
    except ConsulError:
        # The platform's first update has not finished: its Consul does not exist yet, or its
        # outputs hold no deployer token yet (and Consul denies anonymous reads).
        if stack.platform is not None and (not token or not container_exists(
                stack.hosts[stack.platform.host].docker, docker_name(stack.stack, "consul", stack.platform.host))):
            return ServiceRecords()
        raise


def read_networks(stack: StackConfig, hosts) -> dict[str, EngineNetworks]:
    """Address pools and bridge networks of the engines of `hosts`."""
    return {h: read_engine_networks(h, stack.hosts[h].docker, stack.source) for h in hosts}


def plan_networks(stack: StackConfig, manifests: dict) -> dict[str, tuple[str, ...]]:
    """Per service, the hosts where it has a private network; refuses (before anything is
    registered) an update that needs more new networks on a host than its engine can make."""
    engines = read_networks(stack, sorted({h for s in stack.services for h in s.hosts}))
    plan = {s.name: private_network_hosts(stack.environment, s.name, s.hosts,
                                          bool(manifests[s.name].dependencies), engines)
            for s in stack.services}
    wanted: dict[str, set[str]] = {}
    for service, hosts in plan.items():
        for host in hosts:
            wanted.setdefault(host, set()).add(service_network(stack.environment, service))
    check_capacity(stack.source, new_networks(wanted, engines), engines)
    return plan


def container_exists(docker_host: str, name: str) -> bool:
    result = subprocess.run(["docker", "-H", docker_host, "container", "inspect", name],
                            capture_output=True)
    return result.returncode == 0


def run(root: str) -> None:
    try:
        stack = read_config(root)
        secrets = read_secrets(stack.stack)
        platform_secrets = read_platform_secrets(stack.stack)
        manifests = {s.name: load_manifest(s.manifest, (stack.source, f"bluegreen.services.{s.name}.manifest"))
                     for s in stack.services}
        for settings in stack.services:
            manifest = manifests[settings.name]
            if manifest.name != settings.name:
                raise ConfigError(stack.source, f"bluegreen.services.{settings.name}",
                                  f"{manifest.path} names the service {manifest.name!r}; use "
                                  "that name as the key")
            for host in settings.hosts if manifest.calls else ():
                if not stack.hosts[host].bridge_address:
                    raise ConfigError(stack.source, f"bluegreen.hosts.{host}.bridgeAddress",
                                      f"{manifest.path} calls {', '.join(manifest.calls)}, so its "
                                      f"host {host} needs its Docker bridge address (e.g. 172.17.0.1) "
                                      "to reach the proxy")
        network_hosts = plan_networks(stack, manifests) if stack.services else {}
        reference = platform_reference(stack) if stack.services or stack.platform_stack else None
        token = last_deployer_token(reference) if stack.services else ""
        records = {s.name: read_records(stack, s, token) for s in stack.services}
        checkouts = {name: context_digest(m.build.context, exclude_files=(m.path,))
                     for name, m in manifests.items()}
        plans = {s.name: plan_colours(stack.source, s, manifests[s.name], checkouts[s.name],
                                      records[s.name].releases, records[s.name].slots)
                 for s in stack.services}
        disagreements = [problem for s in stack.services if (problem := disagreement(
            stack.source, stack.environment, s, records[s.name].live, records[s.name].bake))]
    except ConfigError as error:
        # Nothing is registered before validation, so an invalid input deploys nothing.
        raise pulumi.RunError(f"invalid configuration: {error}") from None
    except ConsulError as error:
        raise pulumi.RunError(f"cannot read the release records, so nothing was changed: {error}") from None
    if disagreements:
        raise pulumi.RunError(f"the stack disagrees with the bake watchdog: {disagreements[0]}")
    actor = os.environ.get("BLUEGREEN_ACTOR") or \
        f"{getpass.getuser()}@{socket.gethostname()} (pulumi {'preview' if pulumi.runtime.is_dry_run() else 'up'})"
    now = timestamp(datetime.datetime.now(datetime.timezone.utc))

    # A service stack names its providers and labels its containers as its environment stack
    # does: a service moved between the two (`pulumi state move`) then keeps every URN and input.
    owner = stack.environment_stack or stack.stack
    if stack.platform is not None:
        home = stack.hosts[stack.platform.host]
        owned = PlatformCredentials(f"{stack.stack}-credentials",
                                    PlatformCredentialsArgs(supplied=platform_secrets))
        providers = host_providers(stack.stack, stack.hosts,
                                   f"{home.address}:{stack.platform.registry_port}",
                                   owned.registry_username, owned.registry_password)
        platform = Platform(f"{stack.stack}-platform", PlatformArgs(
            stack=stack.stack, settings=stack.platform, hosts=stack.hosts, providers=providers,
            credentials=owned))
        registry, proxy, agents = platform.registry, platform.proxy, dict(platform.agents)
        port = stack.platform.proxy_port
        credentials = platform.credentials
        pulumi.export("consul", platform.consul)
        if platform.registry_ca is not None:
            # Public: what a host outside the platform installs to pull (README: real sites).
            pulumi.export("registryCa", platform.registry_ca)
        # Environment stacks (and the pipeline) read these through a StackReference.
        pulumi.export("credentials", credentials)
    else:
        registry = reference.require_output("registry")
        proxy = reference.require_output("proxy")
        port = proxy.apply(proxy_port)
        credentials = pulumi.Output.secret(reference.get_output("credentials"))
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
            manifest=manifests[settings.name], hosts=stack.hosts, providers=providers,
            build_host=stack.build_host, registry=registry, agents=agents, proxy=proxy,
            consul_token=deployer_token, issuer_token=issuer_token, plans=plans[settings.name], records=records[settings.name],
            checkout=checkouts[settings.name], actor=actor, now=now,
            base_image=stack.base_image, secret_environment=secrets_of(secrets, settings.name),
            network_hosts=network_hosts[settings.name],
            proxy_port=port, routes={name: m.route for name, m in manifests.items()}))
        offline = offline_colour(settings.live)
        summary[settings.name] = {
            "live": service.live,
            "offline": offline,
            "url": service.url,
            "previewUrl": service.preview_url,
            "images": service.images,
            # Alias write -> the proxy serving the live colour, measured at the last flip.
            "flipSeconds": service.flip_seconds,
        }
    pulumi.export("environment", stack.environment)
    pulumi.export("services", summary)
