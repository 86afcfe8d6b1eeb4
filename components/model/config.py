"""Typed stack configuration, read once in __main__.py and validated before anything deploys."""

from __future__ import annotations

import base64
import binascii
import glob
import ipaddress
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import yaml

from bluegreen.components.model.analysis import Bounds
from bluegreen.components.model.election import WATCHDOGS
from bluegreen.components.model.hooks import CONFIRM_TIMEOUT_S, HOOK_TIMEOUT_S, MANUAL, NO_HOOKS, Hooks, url_problem
from bluegreen.components.model.manifest import (
    NAME_HINT, NAME_PATTERN, check_variables, joinable, memory_size
)
from bluegreen.components.model.validation import LONG_UNITS, ConfigError, Fields
from bluegreen.components.model.rollout import MAX_STEPS, STEP_S, Rollout
from bluegreen.components.model.split import NO_SPLIT, Split, parse_split
from bluegreen.components.naming import COLOURS, PROXY_PATHS, instance_id, joined_name_problem

# The bluegreen:* stack config keys, declared once (Pulumi.yaml carries their descriptions and
# defaults; a unit test keeps the two in step). Secrets are read separately, as a secret Output.
STRING_KEYS = ("environment", "platformStack", "baseImage", "buildHost", "environmentStack",
               "auditRetention")
OBJECT_KEYS = ("hosts", "platform", "services")
SECRET_KEYS = ("secrets", "platformSecrets")   # objects Pulumi keeps encrypted

HOST_NAME = r"[a-z][a-z0-9-]{0,30}"
IPV4 = r"[0-9]{1,3}(\.[0-9]{1,3}){3}"
ENV_NAME = r"[a-z][a-z0-9-]{0,30}"


@dataclass(frozen=True)
class Host:
    """A Docker host with its Consul agent."""

    name: str
    docker: str                    # unix:///var/run/docker.sock or ssh://user@host
    consul: str                    # http://127.0.0.1:8500, the host's agent
    address: str = "127.0.0.1"     # what registrations advertise; the proxy connects there
    consul_serf_port: int = 8301   # the agent's LAN gossip port (agents the platform starts)
    consul_server_port: int = 8300
    bridge_address: str | None = None  # the host's IP on its Docker bridge: how containers reach the agent
    docker_socket: str | None = None   # the engine's socket on the host (for the registrator); default
                                       # the unix:// path of `docker`, else /var/run/docker.sock


@dataclass(frozen=True)
class ConsulSettings:
    image: str
    datacenter: str = "dc1"


@dataclass(frozen=True)
class PrometheusSettings:
    """Prometheus on the platform host: it scrapes every proxy's metrics (mtail)."""

    image: str
    port: int
    retention: str = "7d"          # Prometheus's own duration (h, d, w): how long samples stay
    scrape_interval_s: float = 5.0
    delivery_port: int | None = None   # where the delivery metrics exporter serves /metrics


@dataclass(frozen=True)
class PlatformConfig:
    """The shared platform a stack owns: Consul agents, the registry and the proxy."""

    host: str                      # the host that runs the registry and the proxy
    consul: ConsulSettings
    registry_image: str
    registry_port: int
    proxy_image: str
    proxy_port: int
    agents: tuple[str, ...] = ()   # further hosts that get a client agent joined to the servers
    servers: tuple[str, ...] = ()  # the hosts that run Consul servers (an odd number); () means `host`
    proxy_address: str = "127.0.0.1"  # where the proxy listens on its host
    # How long a reload's retired nginx workers, and the long-lived connections they hold (on the
    # colour a flip left), may drain before nginx closes them.
    proxy_drain_s: float = 30.0
    proxy_metrics_port: int | None = None   # where the proxy's mtail serves /metrics; None: off
    # Networks (CIDR) whose clients may use /preview/ on the public listener besides the proxy's
    # own host: a deploying machine elsewhere (its flip proof and preview gate ask there).
    proxy_preview_from: tuple[str, ...] = ()
    # The hosts that each run a proxy (() means `host` alone) and, with two or more, the virtual
    # address that VRRP (keepalived) moves between them: clients use that one address.
    proxy_hosts: tuple[str, ...] = ()
    proxy_virtual_address: str | None = None
    prometheus: PrometheusSettings | None = None
    # The environments that deploy on this platform, each with a deployer token that can change
    # only that environment (a stack that owns its platform and deploys services adds its own).
    environments: tuple[str, ...] = ()
    # The hosts of the platform's two bake watchdogs (() means both on `host`): on two hosts, the
    # standby takes over the bakes when the active one's host is lost.
    watchdog_hosts: tuple[str, ...] = ()

    @property
    def server_hosts(self) -> tuple[str, ...]:
        return self.servers or (self.host,)

    @property
    def proxy_host_names(self) -> tuple[str, ...]:
        return self.proxy_hosts or (self.host,)

    @property
    def watchdog_host_names(self) -> tuple[str, ...]:
        """The host of each watchdog, in their numbers' order."""
        return self.watchdog_hosts or (self.host,) * WATCHDOGS

    @property
    def client_proxy_address(self) -> str:
        """The address clients reach the proxies at: the virtual one when there are several."""
        return self.proxy_virtual_address or self.proxy_address

    @property
    def client_hosts(self) -> tuple[str, ...]:
        """Hosts with a client agent: `agents`, and `host` and every proxy host that is not a
        server (each proxy reads Consul through its own host's agent)."""
        extra = tuple(dict.fromkeys(h for h in (self.host, *self.proxy_host_names)
                                    if h not in self.server_hosts))
        return extra + tuple(a for a in self.agents if a not in extra)


@dataclass(frozen=True)
class PlatformSecrets:
    """Credentials a site supplies instead of generated ones (`bluegreen:platformSecrets`, a
    secret). Values never appear in reprs or error messages."""

    consul_management_token: str | None = field(default=None, repr=False)
    consul_gossip_key: str | None = field(default=None, repr=False)
    registry_username: str | None = field(default=None, repr=False)
    registry_password: str | None = field(default=None, repr=False)
    # The registry's TLS certificate and key from the site's CA, and that CA (all PEM).
    registry_certificate: str | None = field(default=None, repr=False)
    registry_key: str | None = field(default=None, repr=False)
    registry_ca: str | None = field(default=None, repr=False)


UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
REGISTRY_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class ColourConfig:
    """What one colour slot runs: a version of the service, plus optional environment overrides."""

    version: str
    environment: dict[str, str] = field(default_factory=dict)
    image: str | None = None       # a pre-built repository@sha256:... (the pipeline's); else built


# What a stack entry lets a manifest give one container unless it says otherwise (maxMemory).
DEFAULT_MAX_MEMORY_MB = 4096


@dataclass(frozen=True)
class ServiceConfig:
    """A service as one stack deploys it."""

    name: str
    manifest: str                  # absolute path of service.yaml
    live: str
    colours: dict[str, ColourConfig]
    hosts: tuple[str, ...]
    replicas: int = 1
    gate_timeout_s: int = 60
    bake_s: float = 0.0            # after a flip, how long the watchdog watches the new colour (0: off)
    bake_max_error_rate: float = 0.05  # the share of 5xx answers on the stable URI that rolls back
    # What the watchdog asks of the real traffic (Prometheus) during a bake (model.analysis).
    bake_min_success_rate: float = 0.99
    bake_max_p99_s: float = 0.5
    bake_window_s: float = 60.0
    # `<colour>@<shape>`: this change may replace the live colour's containers (model.live).
    acknowledge_live: str | None = None
    max_memory_mb: int = DEFAULT_MAX_MEMORY_MB  # the most memory one of its containers may ask for
    split: Split = NO_SPLIT        # stable traffic on the offline colour, cohorts (model.split)
    rollout: Rollout | None = None  # a flip walked in steps of a split (model.rollout)
    hooks: Hooks = NO_HOOKS        # webhooks, approval and notifications around a flip (model.hooks)
    preview_gate: Bounds | None = None  # what preview traffic must show before a flip (None: unchecked)


AUDIT_RETENTION = "30d"                 # the audit trail's default retention
AUDIT_RETENTION_S = 30 * 86400.0


@dataclass(frozen=True)
class StackConfig:
    stack: str
    environment: str
    hosts: dict[str, Host]
    platform: PlatformConfig | None
    platform_stack: str | None
    services: tuple[ServiceConfig, ...]
    base_image: str = "debian:bookworm-slim"   # what service Dockerfiles build FROM
    build_host: str = ""                       # whose engine builds and pushes images
    environment_stack: str | None = None       # a service stack's environment stack
    audit_retention_s: float = AUDIT_RETENTION_S   # how long the audit trail keeps an event

    @property
    def source(self) -> str:
        return stack_file(self.stack)

    def service_host(self, service: "ServiceConfig | str | None" = None) -> Host:
        """The host whose Consul agent reads and writes a service's records: its first host (the
        stack's first host for a service the stack does not deploy, or for none)."""
        if isinstance(service, str):
            service = next((s for s in self.services if s.name == service), None)
        return self.hosts[service.hosts[0]] if service else next(iter(self.hosts.values()))

    def colour_instances(self, service: "ServiceConfig", colour: str) -> dict[str, str]:
        """Every instance of `service`'s `colour` (its Consul service ID) -> the Consul agent
        address it is registered with, on every host and replica: what a health gate waits for."""
        return {instance_id(self.environment, service.name, colour, host, index): self.hosts[host].consul
                for host in service.hosts for index in range(service.replicas)}


def stack_file(stack: str) -> str:
    return f"stacks/Pulumi.{stack}.yaml"


# What a service stack takes from its environment stack; it holds only services and secrets.
INHERITED_KEYS = ("environment", "hosts", "platformStack", "baseImage", "buildHost",
                  "auditRetention")
STACK_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"


def read_stack_file(root: str, stack: str) -> dict[str, Any]:
    """The bluegreen:* values of stacks/Pulumi.<stack>.yaml (keys without the namespace)."""
    with open(os.path.join(root, stack_file(stack)), encoding="utf-8") as handle:
        raw = (yaml.safe_load(handle) or {}).get("config") or {}
    return {key.split(":", 1)[1]: value for key, value in raw.items()
            if isinstance(key, str) and key.startswith("bluegreen:")}


def project_defaults(root: str) -> dict[str, Any]:
    """The defaults Pulumi.yaml declares for bluegreen:* keys: what a stack that sets nothing gets."""
    with open(os.path.join(root, "Pulumi.yaml"), encoding="utf-8") as handle:
        declared = (yaml.safe_load(handle) or {}).get("config") or {}
    return {key.split(":", 1)[1]: spec["default"] for key, spec in declared.items()
            if key.startswith("bluegreen:") and isinstance(spec, dict) and "default" in spec}


def _is_set(values: Mapping[str, Any], key: str, defaults: Mapping[str, Any]) -> bool:
    value = values.get(key)
    return value not in (None, "", {}, []) and value != defaults.get(key)


def stack_values(stack: str, values: Mapping[str, Any], root: str) -> dict[str, Any]:
    """A stack's bluegreen:* values as the program deploys them; the one place of inheritance.

    A service stack (`bluegreen:environmentStack: production`, file stacks/Pulumi.production.<x>.yaml)
    takes environment, hosts, platformStack, baseImage and buildHost from its environment stack's
    file and holds only its own services and secrets. A service is deployed by one stack: the
    environment stack and a service stack of it may not both list it."""
    source = stack_file(stack)
    defaults = project_defaults(root)
    environment_stack = values.get("environmentStack")
    if not environment_stack:
        own = dict(values)
        if own.get("services"):
            _refuse_shared_services(stack, own["services"], root)
        return own
    field_name = "bluegreen.environmentStack"
    if not isinstance(environment_stack, str) or not re.fullmatch(STACK_NAME, environment_stack.rsplit("/", 1)[-1]):
        raise ConfigError(source, field_name, f"{environment_stack!r} is not a stack name; name the "
                          "environment stack, e.g. production")
    environment_stack = environment_stack.rsplit("/", 1)[-1]
    env_source = stack_file(environment_stack)
    if environment_stack == stack or not os.path.exists(os.path.join(root, env_source)):
        raise ConfigError(source, field_name, f"{env_source} does not exist; name the environment "
                          "stack whose environment and hosts this stack deploys to, e.g. production")
    inherited = read_stack_file(root, environment_stack)
    if inherited.get("environmentStack"):
        raise ConfigError(source, field_name, f"{environment_stack} is a service stack itself "
                          f"({env_source} sets environmentStack); name its environment stack "
                          f"{inherited['environmentStack']} instead")
    if inherited.get("platform") or not inherited.get("environment"):
        raise ConfigError(source, field_name, f"{environment_stack} is not an environment stack on a "
                          f"shared platform ({env_source} needs environment and platformStack, and "
                          "no platform of its own); name one such as production")
    parse_stack_config(environment_stack, {**inherited, "services": {}}, root)  # errors name its file
    for key in (*INHERITED_KEYS, "platform"):
        if _is_set(values, key, defaults):
            raise ConfigError(source, f"bluegreen.{key}",
                              f"a service stack takes this from {env_source}; remove it here "
                              f"(or change it there)")
    services = values.get("services") or {}
    both = sorted(set(services) & set(inherited.get("services") or {})) if isinstance(services, Mapping) else []
    if both:
        raise ConfigError(source, f"bluegreen.services.{both[0]}",
                          f"is deployed by {env_source} too; a service is deployed by one stack: "
                          f"remove it from {env_source} or from {source}")
    resolved = {key: inherited[key] for key in INHERITED_KEYS if key in inherited}
    resolved.update({key: value for key, value in values.items()
                     if key not in (*INHERITED_KEYS, "platform")})
    resolved["environmentStack"] = environment_stack
    return resolved


def service_stacks(environment_stack: str, root: str) -> dict[str, dict[str, Any]]:
    """The service stacks of an environment stack (by their files under stacks/): their own values."""
    found = {}
    for path in sorted(glob.glob(os.path.join(root, "stacks", "Pulumi.*.yaml"))):
        other = os.path.basename(path)[len("Pulumi."):-len(".yaml")]
        try:
            with open(path, encoding="utf-8") as handle:
                if "environmentStack" not in handle.read():
                    continue
            values = read_stack_file(root, other)
        except (OSError, yaml.YAMLError):
            continue
        if str(values.get("environmentStack", "")).rsplit("/", 1)[-1] == environment_stack:
            found[other] = values
    return found


def stack_deploying(environment_stack: str, service: str, root: str) -> str | None:
    """Which stack of an environment deploys `service`: the environment stack or one of its
    service stacks (None: no stack file under `root` lists it)."""
    try:
        own = read_stack_file(root, environment_stack)
    except (OSError, yaml.YAMLError):
        return None
    if service in (own.get("services") or {}):
        return environment_stack
    return next((name for name, values in service_stacks(environment_stack, root).items()
                 if service in (values.get("services") or {})), None)


def _refuse_shared_services(stack: str, services: Any, root: str) -> None:
    """An environment stack may not deploy a service one of its service stacks deploys."""
    if not isinstance(services, Mapping):
        return
    for other, values in service_stacks(stack, root).items():
        both = sorted(set(services) & set(values.get("services") or {}))
        if both:
            raise ConfigError(stack_file(stack), f"bluegreen.services.{both[0]}",
                              f"is deployed by the service stack {stack_file(other)} too; a service "
                              f"is deployed by one stack: remove it from {stack_file(stack)} or "
                              f"from {stack_file(other)}")


def parse_stack_config(stack: str, values: Mapping[str, Any], root: str) -> StackConfig:
    """Builds a StackConfig from the `bluegreen:*` values of a stack (keys without namespace).

    `root` is the project directory: manifest paths are relative to it."""
    source = stack_file(stack)
    top = Fields(source, "bluegreen", values, [*STRING_KEYS, *OBJECT_KEYS, *SECRET_KEYS])
    environment = _environment(top) if top.raw("services") or top.raw("environment") else ""
    hosts = _hosts(top)
    # Pulumi.yaml declares {} and "" as defaults: empty means "not this stack's".
    platform = _platform(top, hosts) if top.raw("platform") else None
    platform_stack = top.string("platformStack") if top.raw("platformStack") else None
    if platform is None and platform_stack is None and top.raw("services"):
        raise top.error("platform", "set either platform (this stack owns the platform) or "
                        "platformStack (the stack that owns it)")
    services = _services(top, hosts, root)
    base_image = top.string("baseImage", "debian:bookworm-slim")
    if top.raw("buildHost"):
        build_host = top.choice("buildHost", sorted(hosts))
    elif platform is not None:
        build_host = platform.host
    elif len(hosts) == 1 or not services:
        build_host = next(iter(hosts))
    else:
        raise top.error("buildHost", "name the host whose engine builds and pushes images: one of "
                        + ", ".join(sorted(hosts)))
    environment_stack = top.string("environmentStack") if top.raw("environmentStack") else None
    return StackConfig(stack, environment, hosts, platform, platform_stack, services, base_image,
                       build_host, environment_stack, _audit_retention(top))


def _audit_retention(top: Fields) -> float:
    seconds = top.duration("auditRetention", AUDIT_RETENTION, LONG_UNITS)
    if seconds < 3600:
        raise top.error("auditRetention", f"{top.raw('auditRetention')!r} is too short to look back "
                        "on; keep the audit trail an hour or more, e.g. 30d")
    return seconds


def _environment(top: Fields) -> str:
    environment = joinable(top, "environment", top.string(
        "environment", pattern=ENV_NAME, hint="lower-case name such as integration or production"))
    if environment in PROXY_PATHS:
        raise top.error("environment", f"{environment!r} is a path the proxy serves itself "
                        f"(/{environment}/...); name the environment otherwise, e.g. staging")
    return environment


def parse_platform_secrets(stack: str, values: Any) -> PlatformSecrets:
    """Validates `bluegreen:platformSecrets` without ever quoting a value."""
    fields = Fields(stack_file(stack), "bluegreen.platformSecrets", values or {},
                    ["consulManagementToken", "consulGossipKey", "registryUsername",
                     "registryPassword", *TLS_SECRETS])

    def secret(key: str, valid: Callable[[str], object], hint: str) -> str | None:
        if not fields.has(key):
            return None
        value = fields.raw(key)
        if not isinstance(value, str) or not valid(value):
            raise fields.error(key, f"is not valid (value not shown); {hint}")
        return value

    def gossip_key(value: str) -> bool:
        try:
            return len(base64.b64decode(value, validate=True)) in (16, 24, 32)
        except (binascii.Error, ValueError):
            return False

    username = secret("registryUsername", REGISTRY_USER.fullmatch,
                      "letters, digits, . _ - (at most 64)")
    password = secret("registryPassword",
                      lambda v: len(v) >= 12 and v.isprintable() and not any(c.isspace() for c in v),
                      "at least 12 printable characters without spaces")
    if (username is None) != (password is None):
        raise fields.error("registryPassword" if password is None else "registryUsername",
                           "set registryUsername and registryPassword together")
    tls = {key: secret(key, lambda v: pem_block(v, kind),   # called at once, with this kind
                       f"PEM text (-----BEGIN ...{kind}-----), e.g. `\"$(cat file.pem)\"`")
           for key, kind in TLS_SECRETS.items()}
    if any(v is not None for v in tls.values()) and not all(v is not None for v in tls.values()):
        missing = next(k for k, v in tls.items() if v is None)
        raise fields.error(missing, "set registryCertificate, registryKey and registryCa together "
                                    "(the registry's certificate, its key, and the CA that signed it)")
    return PlatformSecrets(
        consul_management_token=secret("consulManagementToken", UUID.fullmatch,
                                       "a UUID, e.g. from `uuidgen`"),
        consul_gossip_key=secret("consulGossipKey", gossip_key,
                                 "16, 24 or 32 bytes in base64, e.g. from `consul keygen`"),
        registry_username=username, registry_password=password,
        registry_certificate=tls["registryCertificate"], registry_key=tls["registryKey"],
        registry_ca=tls["registryCa"])


# The site's registry TLS secrets and the kind of PEM block each holds.
TLS_SECRETS = {"registryCertificate": "CERTIFICATE", "registryKey": "PRIVATE KEY",
               "registryCa": "CERTIFICATE"}


def pem_block(text: str, kind: str) -> bool:
    """Whether `text` holds a PEM block of `kind` (PRIVATE KEY also matches EC/RSA PRIVATE KEY)."""
    begin = text.find("-----BEGIN ")
    return begin >= 0 and text[begin:].split("\n", 1)[0].rstrip().endswith(f"{kind}-----") \
        and "-----END " in text


def _hosts(top: Fields) -> dict[str, Host]:
    raw = top.raw("hosts", {})
    if not isinstance(raw, Mapping) or not raw:
        raise top.error("hosts", "needs at least one host, e.g. local: {docker: unix:///var/run/docker.sock, "
                        "consul: http://127.0.0.1:8500}")
    hosts = {}
    for name in raw:
        if not isinstance(name, str) or not re.fullmatch(HOST_NAME, name):
            raise top.error("hosts", f"host name {name!r} must be lower-case letters, digits and '-'")
        fields = Fields(top.source, f"bluegreen.hosts.{name}", raw[name],
                        ["docker", "consul", "address", "bridgeAddress", "consulSerfPort",
                         "consulServerPort", "dockerSocket"])
        hosts[name] = Host(
            name=name,
            docker=fields.string("docker", pattern=r"(unix|ssh|tcp)://.+",
                                 hint="unix:///path/docker.sock, ssh://user@host or tcp://host:2376"),
            consul=fields.string("consul", pattern=r"https?://[^/]+",
                                 hint="the agent's HTTP address, e.g. http://127.0.0.1:8500"),
            address=fields.string("address", "127.0.0.1", pattern=IPV4,
                                  hint="the host's IPv4 address, e.g. 10.0.0.5: containers publish "
                                       "their ports there, and the proxy connects to them there"),
            bridge_address=fields.string("bridgeAddress", pattern=r"[0-9.]+",
                                         hint="an IPv4 address such as 172.17.0.1")
            if fields.has("bridgeAddress") else None,
            consul_serf_port=fields.integer("consulSerfPort", 8301, minimum=1, maximum=65535),
            consul_server_port=fields.integer("consulServerPort", 8300, minimum=1, maximum=65535),
            docker_socket=fields.string("dockerSocket", pattern=r"/.+",
                                        hint="the absolute path of the engine's socket on that host")
            if fields.has("dockerSocket") else None,
        )
    return hosts


def _platform(top: Fields, hosts: dict[str, Host]) -> PlatformConfig:
    fields = top.nested("platform", ["host", "agents", "servers", "consul", "registry", "proxy",
                                     "prometheus", "environments", "watchdogHosts"])
    host = fields.choice("host", list(hosts))
    servers = fields.raw("servers", [])
    if not isinstance(servers, list) or any(s not in hosts for s in servers) \
            or len(set(servers)) != len(servers):
        raise fields.error("servers", f"must list configured hosts once each ({', '.join(hosts)})")
    if servers and len(servers) % 2 == 0:
        raise fields.error("servers", f"lists {len(servers)} hosts; Consul needs an odd number of "
                           "servers (1, 3 or 5) for a quorum that survives a failure")
    agents = fields.raw("agents", [])
    taken = set(servers or [host])
    if not isinstance(agents, list) or any(a not in hosts or a in taken for a in agents):
        raise fields.error("agents", "must list other configured hosts "
                           f"({', '.join(h for h in hosts if h not in taken)})")
    consul = fields.nested("consul", ["image", "datacenter"])
    registry = fields.nested("registry", ["image", "port"])
    proxy = fields.nested("proxy", ["image", "port", "address", "drainTimeout", "metricsPort",
                                    "previewFrom", "hosts", "virtualAddress"])
    drain_s = proxy.duration("drainTimeout", "30s")
    if not 1 <= drain_s <= 3600:
        raise proxy.error("drainTimeout", f"{proxy.raw('drainTimeout')!r} is out of range; "
                          "allowed: 1s to 60m, e.g. 30s")
    platform = PlatformConfig(
        host=host,
        consul=ConsulSettings(image=consul.string("image"), datacenter=consul.string("datacenter", "dc1")),
        registry_image=registry.string("image"),
        registry_port=registry.integer("port", minimum=1, maximum=65535),
        proxy_image=proxy.string("image"),
        proxy_port=proxy.integer("port", minimum=1, maximum=65535),
        agents=tuple(agents),
        proxy_drain_s=drain_s,
        servers=tuple(servers),
        proxy_address=proxy.string("address", "127.0.0.1", pattern=IPV4,
                                   hint="an IPv4 address of the proxy's host, e.g. 127.0.0.1"),
        proxy_preview_from=_preview_from(proxy),
        **_proxy_hosts(proxy, hosts),
        environments=_environments(fields),
        **_metrics(fields, proxy),
    )
    return replace(platform, watchdog_hosts=_watchdog_hosts(fields, hosts, platform))


def _watchdog_hosts(fields: Fields, hosts: dict[str, Host], platform: PlatformConfig) -> tuple[str, ...]:
    """watchdogHosts: one host per watchdog, each with a Consul agent of the platform; a host
    other than the platform host must reach the proxy and Prometheus at their addresses."""
    if not fields.has("watchdogHosts"):
        return ()
    raw = fields.raw("watchdogHosts")
    agent_hosts = {*platform.server_hosts, *platform.client_hosts}
    candidates = [h for h in hosts if h in agent_hosts]
    if not isinstance(raw, list) or len(raw) != WATCHDOGS or any(h not in candidates for h in raw):
        raise fields.error("watchdogHosts", f"{raw!r} must name {WATCHDOGS} hosts that run a Consul "
                             f"agent of the platform ({', '.join(candidates)}), one per watchdog, "
                             f"e.g. [{candidates[0]}, {candidates[-1]}]")
    home = platform.host
    loopback = [a for a in (hosts[home].address, platform.client_proxy_address) if a.startswith("127.")]
    if any(h != home for h in raw) and loopback:
        raise fields.error("watchdogHosts", f"puts a watchdog off the platform host {home}, but the "
                             f"proxy and Prometheus it asks listen on {loopback[0]} there; keep both "
                             f"on {home}, or give the platform host and the proxy network addresses")
    return tuple(raw)


def _proxy_hosts(proxy: Fields, hosts: dict[str, Host]) -> dict[str, Any]:
    """proxy.hosts (configured hosts, once each) and proxy.virtualAddress: set exactly when there
    are two or more proxies, an IPv4 address of the hosts' network that no host has."""
    raw = proxy.raw("hosts", [])
    if not isinstance(raw, list) or not all(isinstance(h, str) and h in hosts for h in raw) \
            or len(set(raw)) != len(raw):
        raise proxy.error("hosts", f"{raw!r} must list configured hosts once each "
                          f"({', '.join(hosts)}), e.g. [{', '.join(list(hosts)[:2])}]")
    several = len(raw) > 1
    if several != proxy.has("virtualAddress"):
        raise proxy.error("virtualAddress", "is required with two or more proxy hosts (the address "
                          "clients use, e.g. 10.0.0.100)" if several else
                          "moves between two or more proxies: list them in proxy.hosts, or remove it")
    if several and proxy.has("address"):
        raise proxy.error("address", "is for a single proxy; with proxy.hosts each proxy listens on "
                          "its host's addresses and clients use proxy.virtualAddress: remove it")
    virtual = proxy.string("virtualAddress", pattern=IPV4, hint="an IPv4 address, e.g. 10.0.0.100") \
        if several else None
    if virtual is not None and virtual in {h.address for h in hosts.values()}:
        raise proxy.error("virtualAddress", f"{virtual} is a host's own address; pick a free "
                          "address of the proxy hosts' network")
    return {"proxy_hosts": tuple(raw), "proxy_virtual_address": virtual}


def _environments(platform: Fields) -> tuple[str, ...]:
    """platform.environments: names as `environment` takes them, each once."""
    raw = platform.raw("environments", [])
    hint = "write e.g. [integration, production]"
    if not isinstance(raw, list) or len(set(map(str, raw))) != len(raw):
        raise platform.error("environments", f"{raw!r} is not a list of distinct environment "
                             f"names; {hint}")
    for name in raw:
        if not isinstance(name, str) or not re.fullmatch(ENV_NAME, name) \
                or joined_name_problem(name) or name in PROXY_PATHS:
            raise platform.error("environments", f"{name!r} is not an environment name (lower-case, "
                                 f"e.g. staging; no '--'); {hint}")
    return tuple(raw)


def deployer_environments(stack: "StackConfig") -> tuple[str, ...]:
    """The environments the stack's platform makes a deployer token for."""
    if stack.platform is None:
        return ()
    own = (stack.environment,) if stack.environment else ()
    return own + tuple(e for e in stack.platform.environments if e not in own)


def _preview_from(proxy: Fields) -> tuple[str, ...]:
    """proxy.previewFrom: IPv4 networks, e.g. [10.250.77.1/32] for a deploying machine."""
    raw = proxy.raw("previewFrom", [])
    try:
        if not isinstance(raw, list):
            raise ValueError
        return tuple(str(ipaddress.IPv4Network(str(cidr), strict=False)) for cidr in raw)
    except ValueError:
        raise proxy.error("previewFrom", f"{raw!r} is not a list of IPv4 networks; write e.g. "
                          "[10.250.77.1/32] for the machine that deploys") from None


RETENTION = r"[1-9][0-9]{0,4}[hdw]"   # Prometheus's own durations, in the units that fit
SCRAPE_INTERVAL_S = (1.0, 60.0)


def _metrics(platform: Fields, proxy: Fields) -> dict[str, Any]:
    """proxy.metricsPort (mtail's /metrics) and prometheus (which needs it: it scrapes there)."""
    metrics_port = proxy.integer("metricsPort", minimum=1, maximum=65535) \
        if proxy.has("metricsPort") else None
    if metrics_port is not None and metrics_port == proxy.integer("port", minimum=1, maximum=65535):
        raise proxy.error("metricsPort", f"is the proxy's own port {metrics_port}; give the metrics "
                          "another port, e.g. the proxy's port + 10")
    if not platform.has("prometheus"):
        return {"proxy_metrics_port": metrics_port}
    settings = platform.nested("prometheus", ["image", "port", "retention", "scrapeInterval",
                                              "deliveryPort"])
    if metrics_port is None:
        raise proxy.error("metricsPort", f"is not set, and {platform.at('prometheus')} scrapes the "
                          "proxy's metrics there: set it to a free port, e.g. 18090")
    interval = settings.duration("scrapeInterval", "5s")
    if not SCRAPE_INTERVAL_S[0] <= interval <= SCRAPE_INTERVAL_S[1]:
        raise settings.error("scrapeInterval", f"{settings.raw('scrapeInterval')!r} is out of "
                             "range; allowed: 1s to 1m, e.g. 5s")
    return {"proxy_metrics_port": metrics_port, "prometheus": PrometheusSettings(
        image=settings.string("image"),
        port=settings.integer("port", minimum=1, maximum=65535),
        retention=settings.string("retention", "7d", pattern=RETENTION,
                                  hint="hours, days or weeks, e.g. 12h, 7d or 2w"),
        scrape_interval_s=interval, delivery_port=_delivery_port(settings))}


def _delivery_port(settings: Fields) -> int | None:
    """prometheus.deliveryPort: where Prometheus scrapes the delivery metrics (None: not served)."""
    if not settings.has("deliveryPort"):
        return None
    port = settings.integer("deliveryPort", minimum=1, maximum=65535)
    if port == settings.integer("port", minimum=1, maximum=65535):
        raise settings.error("deliveryPort", f"is Prometheus's own port {port}; give the delivery "
                             "metrics another port, e.g. Prometheus's port + 1")
    return port


MIN_BAKE_S, MAX_BAKE_S = 10.0, 24 * 3600.0


def _bake(fields: Fields) -> dict[str, Any]:
    """bakeTime (a duration, 0s: off), bakeMaxErrorRate (a share of 5xx answers to the
    watchdog's probes, 0 to <1) and what real traffic must show (_traffic_bounds)."""
    bake_s = fields.duration("bakeTime", "0s")
    if bake_s and not MIN_BAKE_S <= bake_s <= MAX_BAKE_S:
        raise fields.error("bakeTime", f"{fields.raw('bakeTime')!r} is out of range; write 0s (off) "
                           f"or a duration from 10s to 1440m, e.g. 5m")
    for key in ("bakeMaxErrorRate", "bakeMinSuccessRate", "bakeMaxP99", "bakeWindow"):
        if fields.has(key) and not bake_s:
            raise fields.error(key, "is set but bakeTime is off, so nothing watches the release; "
                               f"set bakeTime (e.g. 5m) or remove {key}")
    rate = fields.number("bakeMaxErrorRate", 0.05, minimum=0.0, below=1.0,
                         hint="write the share of 5xx answers that rolls back, from 0 to below 1, "
                              "e.g. 0.05 for 5%")
    return {"bake_s": bake_s, "bake_max_error_rate": rate, **_traffic_bounds(fields)}


def _traffic_bounds(fields: Fields) -> dict[str, Any]:
    """bakeMinSuccessRate (0.99), bakeMaxP99 (500ms) over bakeWindow (1m): Flagger's defaults."""
    success, p99_s, window_s = _traffic_limits(fields, "bakeMinSuccessRate", "bakeMaxP99", "bakeWindow")
    return {"bake_min_success_rate": success, "bake_max_p99_s": p99_s, "bake_window_s": window_s}


def _traffic_limits(fields: Fields, success_key: str, p99_key: str,
                    window_key: str) -> tuple[float, float, float]:
    """(minimum success rate, maximum p99 s, window s) under those keys, Flagger's defaults."""
    success = fields.number(success_key, 0.99, minimum=0.5, below=1.0000001,
                            hint="write the share of answers that must not be 5xx, from 0.5 to 1, "
                                 "e.g. 0.99")
    p99_s = fields.duration(p99_key, "500ms")
    if not 0.001 <= p99_s <= 60:
        raise fields.error(p99_key, f"{fields.raw(p99_key)!r} is out of range; write "
                           "1ms to 60s, e.g. 500ms")
    window_s = fields.duration(window_key, "1m")
    if not 10 <= window_s <= 3600:
        raise fields.error(window_key, f"{fields.raw(window_key)!r} is out of range; write "
                           "10s to 60m, e.g. 1m")
    return success, p99_s, window_s


def _preview_gate(fields: Fields) -> Bounds | None:
    """`gate: {previewTraffic: {minSuccessRate, maxP99, window, minRequests}}`: what the preview
    URI's real traffic to a colour must show before a flip to it (model.analysis)."""
    if not fields.has("gate"):
        return None
    gate = fields.nested("gate", ["previewTraffic"])
    if not gate.has("previewTraffic"):
        raise fields.error("gate", "says nothing to check; write gate: {previewTraffic: {}} (99% "
                           "success, p99 500ms over 1m, 20 requests at least) or remove gate")
    traffic = gate.nested("previewTraffic", ["minSuccessRate", "maxP99", "window", "minRequests"])
    success, p99_s, window_s = _traffic_limits(traffic, "minSuccessRate", "maxP99", "window")
    return Bounds(min_success_rate=success, max_p99_s=p99_s, window_s=int(window_s),
                  min_requests=traffic.integer("minRequests", 20, minimum=1, maximum=100000))


def _rollout(fields: Fields) -> Rollout | None:
    """`rollout: {steps: [5, 25, 50], stepTime: 2m}` of a service's stack entry."""
    if not fields.has("rollout"):
        return None
    rollout = fields.nested("rollout", ["steps", "stepTime"])
    steps = rollout.raw("steps", [])
    hint = "a list of increasing percentages from 1 to 99, e.g. [5, 25, 50]"
    if not isinstance(steps, list) or not steps or len(steps) > MAX_STEPS or \
            any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 99 for s in steps):
        raise rollout.error("steps", f"{steps!r} is not allowed; write {hint} (at most {MAX_STEPS})")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise rollout.error("steps", f"{steps!r} does not increase; write {hint}")
    step_s = rollout.duration("stepTime", "2m")
    if not STEP_S[0] <= step_s <= STEP_S[1]:
        raise rollout.error("stepTime", f"{rollout.raw('stepTime')!r} is out of range; write 10s to "
                            "60m, e.g. 2m")
    return Rollout(tuple(steps), step_s)


def _hooks(fields: Fields) -> Hooks:
    """`hooks: {beforeFlip, afterFlip, rollback, timeout}`, `confirm: manual`, `confirmTimeout`
    and `notify` of a service's stack entry (model.hooks)."""
    hooks = fields.nested("hooks", ["beforeFlip", "afterFlip", "rollback", "timeout"], {})
    urls = {name: _webhook(hooks, key) for name, key in
            (("before", "beforeFlip"), ("after", "afterFlip"), ("rollback", "rollback"))}
    timeout_s = hooks.duration("timeout", "10s")
    if not HOOK_TIMEOUT_S[0] <= timeout_s <= HOOK_TIMEOUT_S[1]:
        raise hooks.error("timeout", f"{hooks.raw('timeout')!r} is out of range; write 500ms to 60s, "
                          "e.g. 10s")
    confirm = fields.choice("confirm", ("auto", MANUAL), "auto")
    if fields.has("confirmTimeout") and confirm != MANUAL:
        raise fields.error("confirmTimeout", "is set but confirm is not manual; set confirm: manual "
                           "or remove confirmTimeout")
    confirm_s = fields.duration("confirmTimeout", "15m", LONG_UNITS)
    if not CONFIRM_TIMEOUT_S[0] <= confirm_s <= CONFIRM_TIMEOUT_S[1]:
        raise fields.error("confirmTimeout", f"{fields.raw('confirmTimeout')!r} is out of range; "
                           "write 10s to 1d, e.g. 15m")
    return Hooks(**urls, notify=_webhook(fields, "notify"), timeout_s=timeout_s, confirm=confirm,
                 confirm_timeout_s=confirm_s)


def _webhook(fields: Fields, key: str) -> str | None:
    if not fields.has(key):
        return None
    problem = url_problem(fields.raw(key))
    if problem:
        raise fields.error(key, f"{problem}; write the webhook's URL, e.g. https://hooks.example/flip")
    url: str = fields.raw(key)   # url_problem: a string
    return url


def _services(top: Fields, hosts: dict[str, Host], root: str) -> tuple[ServiceConfig, ...]:
    raw = top.raw("services", {})
    if not isinstance(raw, Mapping):
        raise top.error("services", "must be a mapping of service name to its settings")
    services = []
    for name in raw:
        if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
            raise top.error("services", f"service name {name!r} is not allowed; {NAME_HINT}")
        joinable(top, f"services.{name}", name)
        fields = Fields(top.source, f"bluegreen.services.{name}", raw[name],
                        ["manifest", "live", "blue", "green", "hosts", "replicas", "gateTimeout",
                         "bakeTime", "bakeMaxErrorRate", "bakeMinSuccessRate", "bakeMaxP99", "bakeWindow",
                         "acknowledgeLive", "maxMemory", "split", "rollout", "hooks", "confirm",
                         "confirmTimeout", "notify", "gate"])
        colours = {}
        for colour in COLOURS:
            if fields.has(colour):
                slot = fields.nested(colour, ["version", "env", "image"])
                environment = slot.string_map("env")
                check_variables(slot.source, slot.at("env"), environment)
                colours[colour] = ColourConfig(
                    version=slot.string("version", pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}",
                                        hint="a version such as 1.4.2 (letters, digits, . _ -)"),
                    environment=environment,
                    image=slot.string("image", pattern=r"[^@\s]+@sha256:[0-9a-f]{64}",
                                      hint="a digest reference repository@sha256:<64 hex>")
                    if slot.has("image") else None,
                )
        live = fields.choice("live", COLOURS)
        if live not in colours:
            raise fields.error("live", f"live is {live} but no {live} version is configured; add "
                               f"{live}: {{version: ...}} or make the other colour live")
        service_hosts = fields.raw("hosts", list(hosts))
        if not isinstance(service_hosts, list) or not service_hosts or any(h not in hosts for h in service_hosts):
            raise fields.error("hosts", f"must be a non-empty list of configured hosts: {', '.join(hosts)}")
        manifest = fields.string("manifest", hint="path of the service repo's service.yaml")
        services.append(ServiceConfig(
            name=str(name),
            manifest=os.path.normpath(os.path.join(root, manifest)),
            live=live,
            colours=colours,
            hosts=tuple(service_hosts),
            replicas=fields.integer("replicas", 1, minimum=1, maximum=20),
            gate_timeout_s=fields.integer("gateTimeout", 60, minimum=5, maximum=1800),
            acknowledge_live=fields.string(
                "acknowledgeLive", pattern=r"(blue|green)@[0-9a-f]{8}",
                hint="the value the refusal printed, e.g. green@1a2b3c4d (colour@change)")
            if fields.has("acknowledgeLive") else None,
            max_memory_mb=memory_size(fields, "maxMemory", f"{DEFAULT_MAX_MEMORY_MB}m"),
            split=parse_split(fields, colours),
            rollout=_rollout(fields),
            hooks=_hooks(fields),
            preview_gate=_preview_gate(fields),
            **_bake(fields),
        ))
    return tuple(services)
