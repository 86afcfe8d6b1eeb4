"""ColourSlot: one colour (blue or green) of a service in an environment: its containers on every
target host, each registered with its host's Consul agent, and the health gate over all of them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import TypedDict
from urllib.parse import urlparse

import pulumi
import pulumi_docker as docker

from bluegreen.components.consul.health_gate import HealthGate
from bluegreen.components.consul.registration import AgentRegistration
from bluegreen.components.model.config import Host
from bluegreen.components.model.release import RuntimeSpec
from bluegreen.components.naming import (
    COLOURS, SERVICE_TOKEN_FILE, call_environment, caller_proxy_address, config_prefix, docker_name,
    instance_id, proxy_route, registration_payload
)
from bluegreen.components.platform.docker_host import labels



@dataclass(frozen=True)
class ColourSlotArgs:
    stack: str
    environment: str
    service: str
    spec: RuntimeSpec                      # the release's port, health check, memory, env
    colour: str
    version: str
    image: pulumi.Input[str]               # repository@sha256:..., from ServiceImage.reference
    hosts: tuple[Host, ...]
    providers: dict[str, docker.Provider]
    # host name -> the service's private network there; a host without one: the default bridge
    networks: dict[str, pulumi.Input[str]]
    live: bool
    agents: dict[str, pulumi.Input[str]]   # host name -> its Consul agent's URL
    consul_token: pulumi.Input[str]        # the deployer's (registrations, gate): a secret
    # The service's own token for its containers (a secret); None for a colour deployed before
    # ACLs were on, kept as it runs until its next deploy (see tokenless_kept).
    service_token: pulumi.Input[str] | None
    replicas: int = 1
    gate_timeout_s: int = 60
    environment_overrides: dict[str, str] = field(default_factory=dict)
    # Secret environment (bluegreen:secrets): an Output kept secret in state and previews.
    secret_environment: pulumi.Input[dict] | None = None
    # The health path under the service's preview URI at the proxy: a new deploy to the offline
    # colour waits until it answers there.
    preview_url: pulumi.Input[str] | None = None
    # The services it calls (service -> route) and the proxy's port they are reached on.
    calls: dict[str, str] = field(default_factory=dict)
    proxy_port: pulumi.Input[int] | None = None
    # The proxy's own host name or address (its URL's): callers on other hosts reach it there.
    proxy_address: pulumi.Input[str] | None = None
    # The alias names this colour and nothing plain about it changes: its containers keep the
    # environment they run with, so a new secret value reaches the offline colour first.
    frozen: bool = False
    # Every capability dropped and no-new-privileges (SERVICE_HARDENING); False only for a colour
    # deployed before that, kept as it runs until its next deploy (see tokenless_kept).
    hardened: bool = True

    def __post_init__(self):
        if self.colour not in COLOURS:
            raise ValueError(f"colour must be one of {COLOURS}, got {self.colour!r}")
        if not self.hosts:
            raise ValueError("a colour slot needs at least one host")
        for host in self.hosts:
            if not all(host.name in m for m in (self.providers, self.agents)):
                raise ValueError(f"host {host.name} lacks a Docker provider or Consul agent")
        if self.replicas < 1:
            raise ValueError("replicas must be at least 1")
        if self.calls:
            if self.proxy_port is None:
                raise ValueError(f"service {self.service} calls {sorted(self.calls)} but no proxy port is given")
            bridgeless = [h.name for h in self.hosts if not h.bridge_address]
            if bridgeless:
                raise ValueError(f"service {self.service} calls {sorted(self.calls)}, so host(s) "
                                 f"{bridgeless} need a bridgeAddress to reach the proxy")


def agent_environment(host: Host, environment: str, service: str,
                      token: pulumi.Input[str] | None) -> tuple[list[str], list[docker.ContainerUploadArgs]]:
    """Where a container reads its service configuration: its host's agent over the bridge, with
    the service's own token in a file (so the environment stays plain for the policy pack, and
    `docker inspect` shows no token). Returns (environment entries, files to upload)."""
    if not host.bridge_address:
        return [], []
    port = urlparse(host.consul).port or 8500
    plain = [f"CONSUL_HTTP_ADDR=http://{host.bridge_address}:{port}",
             f"SERVICE_CONFIG_PREFIX={config_prefix(environment, service)}"]
    if token is None:
        return plain, []
    return ([*plain, f"CONSUL_HTTP_TOKEN_FILE={SERVICE_TOKEN_FILE}"],
            # Readable by the service's own user, whichever its image runs as.
            [docker.ContainerUploadArgs(file=SERVICE_TOKEN_FILE, content=pulumi.Output.secret(token),
                                        permissions="0444")])


class Hardening(TypedDict, total=False):
    """The docker.Container arguments that harden a service container."""
    capabilities: docker.ContainerCapabilitiesArgs
    security_opts: list[str]


# What a service container may not do: it keeps no capability (it needs none to serve HTTP on its
# port as any user: Docker lets unprivileged processes bind low ports in a container), and nothing
# it runs gains privileges (setuid binaries, file capabilities).
SERVICE_HARDENING = Hardening(capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
                              security_opts=["no-new-privileges:true"])


def tokenless_kept(args: ColourSlotArgs, recorded_shape: str | None) -> ColourSlotArgs:
    """`args` as the colour runs when it was deployed before ACLs were on (its recorded shape is
    the tokenless one) or before its containers were hardened: adding the token file or the
    hardening would replace containers that may serve traffic. Its next deploy brings both."""
    for earlier in (dataclasses.replace(args, service_token=None, hardened=False),
                    dataclasses.replace(args, hardened=False)):
        if recorded_shape and recorded_shape == shape_of(earlier):
            return earlier
    return args


# A container's NAME=value entries: known now, or an Output when a platform stack gives a part.
Env = list[str] | pulumi.Output[list[str]]


def calls_environment(host: Host, environment: str, calls: dict[str, str],
                      proxy_port: pulumi.Input[int] | None,
                      proxy_address: pulumi.Input[str] | None = None) -> Env:
    """Each callee's stable URL at the proxy as containers on `host` reach it (nothing without
    calls); an Output when the port or address comes from a platform stack."""
    if not calls:
        return []

    def entries(port, address) -> list[str]:
        return call_environment(caller_proxy_address(host.address, host.bridge_address or "",
                                                     address or ""),
                                int(port), environment, calls)

    if isinstance(proxy_port, int) and (proxy_address is None or isinstance(proxy_address, str)):
        return entries(proxy_port, proxy_address)
    return pulumi.Output.all(proxy_port, proxy_address).apply(lambda values: entries(*values))


def with_calls(agent: list[str], calls: Env) -> Env:
    """The agent's entries followed by the callees' (which may be an Output)."""
    if isinstance(calls, list):
        return agent + calls
    return pulumi.Output.from_input(calls).apply(lambda values: agent + list(values))


def container_environment(plain: dict[str, str], extra: Env,
                          secret: pulumi.Input[dict] | None) -> Env:
    """NAME=value entries; with secret values present the whole list is a Pulumi secret (the
    provider could not keep one entry of a list secret anyway)."""
    base = [f"{k}={v}" for k, v in sorted(plain.items())]
    if isinstance(extra, list):
        entries: Env = base + extra
    else:
        entries = pulumi.Output.from_input(extra).apply(lambda values: base + list(values))
    if secret is None:
        return entries
    return pulumi.Output.secret(pulumi.Output.all(entries, secret).apply(
        lambda values: list(values[0]) + [f"{k}={v}" for k, v in sorted((values[1] or {}).items())]))


def published_port(ports: list) -> int:
    """The host port Docker assigned to the container's first published port."""
    first = ports[0]
    return int(first["external"] if isinstance(first, dict) else first.external)


def shape_of(args: ColourSlotArgs) -> str:
    """A hash of everything plain that shapes the colour's containers: when it differs from what
    the colour was deployed with, this update replaces those containers. Secrets are left out, and
    so is the image: the version names one digest, and a built one is not known before the push."""
    return shape_hash(stack=args.stack, version=args.version, spec=args.spec,
                      overrides=args.environment_overrides, hosts=args.hosts,
                      replicas=args.replicas, token=args.service_token is not None,
                      hardened=args.hardened, calls=args.calls,
                      proxy_port=args.proxy_port if isinstance(args.proxy_port, int) else None)


def shape_hash(*, stack: str, version: str, spec: RuntimeSpec, overrides: dict[str, str],
               hosts: tuple[Host, ...], replicas: int, token: bool, calls: dict[str, str],
               proxy_port: int | None, hardened: bool = True) -> str:
    """shape_of from plain values: what the program checks before it registers anything."""
    shape = {
        "version": version,
        "spec": dataclasses.asdict(spec),
        "overrides": overrides,
        "hosts": [[h.name, h.address, h.consul, h.bridge_address or ""] for h in hosts],
        "replicas": replicas,
        "stack": stack,
    }
    if token:
        shape["token"] = True
    if hardened:   # only then: shapes of colours deployed before the hardening stay as they were
        shape["hardened"] = True
    if calls:  # only then: shapes of colours that call nothing stay as they were
        shape["calls"] = [calls, proxy_port]
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


def planned_shape(recorded: str | None, **values) -> str:
    """The shape a colour will have (shape_hash's values without `token` and `hardened`): the
    recorded one when it runs as it was deployed before ACLs or the hardening (see tokenless_kept)."""
    for token in (False, True):
        earlier = shape_hash(token=token, hardened=False, **values)
        if recorded and recorded == earlier:
            return earlier
    return shape_hash(token=True, hardened=True, **values)


class ColourSlot(pulumi.ComponentResource):
    """Containers of one colour; `gate` passes once all of them pass their Consul checks."""

    instances: pulumi.Output[list]
    colour: pulumi.Output[str]

    def __init__(self, name: str, args: ColourSlotArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("bluegreen:service:ColourSlot", name, None, opts)
        self.shape = shape_of(args)
        self.containers: dict[str, docker.Container] = {}
        self.registrations: list[AgentRegistration] = []
        self.agent_of: dict[str, pulumi.Input[str]] = {}
        for host in args.hosts:
            pulled = docker.RemoteImage(
                f"{name}-{host.name}-image", name=args.image, keep_locally=True,
                opts=pulumi.ResourceOptions(parent=self, provider=args.providers[host.name]))
            for index in range(args.replicas):
                instance = instance_id(args.environment, args.service, args.colour, host.name, index)
                container = self._container(f"{name}-{host.name}-{index}", args, host, instance, pulled)
                self.containers[instance] = container
                self.agent_of[instance] = args.agents[host.name]
                self.registrations.append(self._registration(
                    f"{name}-{host.name}-{index}-registration", args, host, instance, container))
        self.instances = pulumi.Output.from_input(list(self.containers))
        self.gate = self._gate(f"{name}-gate", args)
        self.colour = self.gate.colour
        self.register_outputs({"instances": self.instances, "colour": self.colour})

    def _container(self, name: str, args: ColourSlotArgs, host: Host, instance: str,
                   pulled: docker.RemoteImage) -> docker.Container:
        spec = args.spec
        environment = {**spec.environment, **args.environment_overrides,
                       "SERVICE_NAME": args.service, "SERVICE_VERSION": args.version,
                       "SERVICE_COLOUR": args.colour, "SERVICE_ENVIRONMENT": args.environment}
        agent_plain, token_files = agent_environment(host, args.environment, args.service,
                                                     args.service_token)
        return docker.Container(
            name,
            name=docker_name(instance),
            # The digest reference itself, so `docker ps` and policies see the pin.
            image=pulled.name,
            envs=container_environment(
                environment, with_calls(agent_plain, calls_environment(
                    host, args.environment, args.calls, args.proxy_port, args.proxy_address)),
                args.secret_environment),
            uploads=token_files,
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.networks[host.name])]
            if host.name in args.networks else None,
            # Published on the address it is registered at: where the proxy connects.
            ports=[docker.ContainerPortArgs(internal=spec.port, ip=host.address)],
            restart="unless-stopped",
            **(SERVICE_HARDENING if args.hardened else Hardening()),
            memory=spec.memory_mb,
            memory_swap=spec.memory_mb,  # no swap; also what Docker reports back
            labels=labels(stack=args.stack, role="service", service=args.service,
                          environment=args.environment, colour=args.colour,
                          version=args.version, instance=instance,
                          # What the host's registrator needs to re-register a restart.
                          **{"health.path": spec.health_path,
                             "health.interval": str(spec.health_interval_s),
                             "health.timeout": str(spec.health_timeout_s)}),
            opts=pulumi.ResourceOptions(parent=self, provider=args.providers[host.name],
                                        delete_before_replace=True, depends_on=[pulled],
                                        ignore_changes=["envs"] if args.frozen else None))

    def _registration(self, name: str, args: ColourSlotArgs, host: Host, instance: str,
                      container: docker.Container) -> AgentRegistration:
        """The instance at its host's agent, at the port Docker published it on."""
        spec = args.spec
        payload = pulumi.Output.all(container.ports, args.image).apply(
            lambda values: registration_payload(
                instance=instance, service=args.service, environment=args.environment,
                colour=args.colour, address=host.address, port=published_port(values[0]),
                health_path=spec.health_path, interval_s=spec.health_interval_s,
                timeout_s=spec.health_timeout_s, version=args.version,
                image=values[1], host=host.name))
        return AgentRegistration(name, address=args.agents[host.name], payload=payload,
                                 token=args.consul_token, opts=pulumi.ResourceOptions(parent=self))

    def _gate(self, name: str, args: ColourSlotArgs) -> HealthGate:
        return HealthGate(
            name,
            service=args.service,
            environment=args.environment,
            colour=args.colour,
            instances=dict(self.agent_of),
            timeout_s=args.gate_timeout_s,
            blocking=args.live,
            # A new registration (port, image, setting) re-runs the gate; so does a flip, which
            # changes `blocking`.
            revision={"image": args.image, "version": args.version,
                      "registrations": [r.payload for r in self.registrations]},
            preview_url=args.preview_url,
            preview_route=proxy_route(args.environment, args.service, preview=True),
            token=args.consul_token,
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.registrations),
        )
