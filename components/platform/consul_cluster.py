"""ConsulCluster: Consul server agents (one, or a quorum of three or five) and a client agent on
every other host, joined over encrypted LAN gossip; each on the host network with its data on a
volume, and beside each agent a registrator that re-registers restarted containers at their new ports.

ACLs are on with `default_policy = "deny"`: the servers make the management token on their first
start from `acl.tokens.initial_management` (so no bootstrap call, and a re-run or a restart keeps
it), and this component creates the tokens of the platform's actors (see components.consul.rules).
Secrets reach the agents as a file in their config directory, never in their command or
environment, so `docker inspect` does not show them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

import pulumi
import pulumi_docker as docker

from bluegreen.components.consul import rules
from bluegreen.components.consul.acl_token import AclToken
from bluegreen.components.model.config import Host
from bluegreen.components.naming import PLATFORM_TOKEN_FILE, acl_token_name, docker_name
from bluegreen.components.platform.docker_host import http_healthcheck, labels, local_image, once_up, secret_upload
from bluegreen.components.platform.generated_secret import GeneratedSecret

SECRETS_FILE = "/consul/config/secrets.json"
ACL_SETTINGS = ('acl {\n  enabled = true\n  default_policy = "deny"\n  down_policy = "extend-cache"\n'
                '  enable_key_list_policy = true\n}')


@dataclass(frozen=True)
class ConsulClusterArgs:
    stack: str
    image: str
    datacenter: str
    servers: tuple[Host, ...]
    clients: tuple[Host, ...]
    providers: dict[str, docker.Provider]
    management_token: pulumi.Input[str]    # a secret; becomes acl.tokens.initial_management
    gossip_key: pulumi.Input[str]          # a secret; Consul's `encrypt`
    environments: tuple[str, ...] = ()     # each gets a deployer token of its own

    def __post_init__(self):
        if not self.servers:
            raise ValueError("a Consul cluster needs at least one server")
        hosts = [*self.servers, *self.clients]
        names = [h.name for h in hosts]
        if len(set(names)) != len(names):
            raise ValueError(f"a host appears twice among Consul agents: {names}")
        missing = [n for n in names if n not in self.providers]
        if missing:
            raise ValueError(f"no Docker provider for host(s) {missing}")


def agent_command(host: Host, datacenter: str, servers: tuple[Host, ...]) -> list[str]:
    """consul agent flags for a host: a server when it is one of `servers`, else a client; every
    agent joins the servers (each at its advertised address) and retries until they answer."""
    http_port = urlparse(host.consul).port or 8500
    command = [
        "agent", f"-node={host.name}", f"-datacenter={datacenter}", "-data-dir=/consul/data",
        f"-bind={host.address}", f"-advertise={host.address}",
        # Containers reach their host's agent on the Docker bridge (to read service config).
        "-client=" + " ".join(filter(None, [host.address, host.bridge_address])),
        f"-http-port={http_port}", f"-serf-lan-port={host.consul_serf_port}",
        f"-server-port={host.consul_server_port}", "-dns-port=-1", "-grpc-port=-1",
        "-serf-wan-port=-1", "-log-level=warn",
        # Default-deny ACLs; the tokens and the gossip key are in the secrets file.
        f"-config-file={SECRETS_FILE}", f"-hcl={ACL_SETTINGS}",
        # No phoning home for updates: hosts reach the package registries only.
        "-hcl=disable_update_check = true",
        # Sync check output changes to the catalog at once (default: every 5 minutes).
        '-hcl=check_update_interval = "0s"',
        # Several agents may share one network namespace: no fixed default ports.
        "-hcl=ports { grpc_tls = -1 }",
        # Everything on a host talks to its agent from one address: the proxy's consul-template
        # alone holds a few blocking queries per service, past the default 200 at ~50 services.
        # An RPC in flight to a server whose link was cut waits out rpc_client_timeout (60 s by
        # default), and when anti-entropy sent it, it holds the agent's state lock all that time:
        # the agent's own API (which the health gate reads) stalls (hashicorp/consul#8504).
        '-hcl=limits { http_max_conns_per_client = 8192\n rpc_client_timeout = "5s" }',
    ]
    command += [f"-retry-join={s.address}:{s.consul_serf_port}" for s in servers if s != host]
    if host in servers:
        # A stopped server stays a member (no leave), so the quorum size holds while it is away.
        command += ["-server", f"-bootstrap-expect={len(servers)}", "-ui"]
        if len(servers) > 1:
            # Elect a new leader within seconds of losing one (the default allows 5x longer).
            command += ["-hcl=performance { raft_multiplier = 1 }"]
    else:
        command += ["-hcl=leave_on_terminate = true"]
    return command


def agent_secrets(gossip_key: str, agent_token: str, management_token: str | None = None) -> str:
    """An agent's secrets file: the gossip key, its agent token and, on a server, the initial
    management token (which Consul creates if it does not exist yet, on every start)."""
    tokens = {"agent": agent_token}
    if management_token is not None:
        tokens["initial_management"] = management_token
    return json.dumps({"encrypt": gossip_key, "acl": {"tokens": tokens}}, sort_keys=True)


def docker_socket_path(host: Host) -> str:
    """The engine's socket on the host's filesystem, for the registrator to watch."""
    if host.docker_socket:
        return host.docker_socket
    if host.docker.startswith("unix://"):
        return host.docker.removeprefix("unix://")
    return "/var/run/docker.sock"


class ConsulCluster(pulumi.ComponentResource):
    """The Consul agents of the platform, one per host; outputs the agents' HTTP addresses."""

    agents: pulumi.Output[dict]

    def __init__(self, name: str, args: ConsulClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("bluegreen:platform:ConsulCluster", name, None, opts)
        self.containers: dict[str, docker.Container] = {}
        self.registrators: dict[str, docker.Container] = {}
        self.agent_tokens: dict[str, AclToken] = {}
        hosts = (*args.servers, *args.clients)
        # The agent and the registrator of a host run the same image: read its ID once.
        self.images = {host.name: local_image(args.image, args.providers[host.name], self)
                       for host in hosts}
        # Made before the agents start (their config names their tokens); the tokens come after.
        secret_ids = {host.name: GeneratedSecret(f"{name}-{host.name}-agent-secret", kind="uuid",
                                                 opts=pulumi.ResourceOptions(parent=self)).value
                      for host in hosts}
        for server in args.servers:
            self._agent(name, args, server, secret_ids[server.name], after=[])
        # Tokens are made through a server once all are up; new server containers (`revision`)
        # re-assert them, in case they started on empty data.
        last = args.servers[-1]
        self.acl_address = once_up(self.containers[last.name], last.consul)
        self.acl_revision = pulumi.Output.all(
            *(self.containers[s.name].id for s in args.servers)).apply(",".join)
        for server in args.servers:
            self._agent_token(name, server, args, secret_ids[server.name])
        servers_ready = [*(self.containers[s.name] for s in args.servers),
                         *(self.agent_tokens[s.name] for s in args.servers)]
        for client in args.clients:
            self._agent(name, args, client, secret_ids[client.name], after=servers_ready)
            self._agent_token(name, client, args, secret_ids[client.name])
        for host in hosts:
            self._registrator(name, args, host)
        self.tokens: dict[str, pulumi.Output[str]] = {
            actor: self._token(name, actor, args, actor_rules, description).secret_id
            for actor, actor_rules, description in (
                ("proxy", rules.proxy_rules(), "consul-template in the proxy: reads services and "
                                               "the keys it renders"),
                ("watchdog", rules.watchdog_rules(), "the bake watchdog: reads bakes and checks, "
                                                     "flips an alias back"),
                ("issuer", rules.issuer_rules(), "creates each service's own token"),
                ("delivery", rules.delivery_exporter_rules(), "the delivery metrics exporter: "
                                                              "lists histories, writes the figures"))}
        self.deployer_tokens: dict[str, pulumi.Output[str]] = {
            environment: self._token(name, f"deployer-{environment}", args,
                                     rules.deployer_rules(environment),
                                     f"pulumi up, delivery commands and the pipeline in {environment}: "
                                     "registrations, gates, its aliases, config, routes, records").secret_id
            for environment in args.environments}
        self.agents = pulumi.Output.from_input(
            {h.name: h.consul for h in (*args.servers, *args.clients)})
        self.register_outputs({"agents": self.agents})

    def _agent(self, name: str, args: ConsulClusterArgs, host: Host, secret_id: pulumi.Input[str],
               after: Sequence[pulumi.Resource]) -> None:
        provider = args.providers[host.name]
        role = "server" if host in args.servers else "client"
        management = pulumi.Output.secret(args.management_token) if role == "server" else None
        secrets = pulumi.Output.all(args.gossip_key, secret_id, management).apply(
            lambda v: agent_secrets(v[0], v[1], v[2]))
        data = docker.Volume(f"{name}-{host.name}-data",
                             name=docker_name(args.stack, "consul", host.name),
                             opts=pulumi.ResourceOptions(parent=self, provider=provider))
        self.containers[host.name] = docker.Container(
            f"{name}-{host.name}",
            name=docker_name(args.stack, "consul", host.name),
            image=self.images[host.name],
            command=agent_command(host, args.datacenter, args.servers),
            network_mode="host",
            volumes=[docker.ContainerVolumeArgs(volume_name=data.name, container_path="/consul/data")],
            uploads=[secret_upload(SECRETS_FILE, secrets)],
            restart="unless-stopped",
            memory=256,
            memory_swap=256,  # no swap; also what Docker reports back
            labels=labels(stack=args.stack, role=f"consul-{role}", host=host.name),
            # A leader address (host:port) in the answer means the cluster accepts writes.
            healthcheck=http_healthcheck(f"{host.consul}/v1/status/leader", must_contain=":"),
            wait=True,
            wait_timeout=120,
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=after,
                                        delete_before_replace=True),
        )

    def _registrator(self, name: str, args: ConsulClusterArgs, host: Host) -> None:
        provider = args.providers[host.name]
        token = self._token(name, f"registrator-{host.name}", args, rules.registrator_rules(host.name),
                            f"registrator on {host.name}: re-registers the containers of its host")
        self.registrators[host.name] = docker.Container(
            f"{name}-{host.name}-registrator",
            name=docker_name(args.stack, "registrator", host.name),
            image=self.images[host.name],
            entrypoints=["python3", "-u", "/usr/local/lib/bluegreen/registrator.py"],
            network_mode="host",
            envs=[f"CONSUL_HTTP_ADDR={host.consul}", f"ADVERTISE_ADDRESS={host.address}",
                  f"CONSUL_HTTP_TOKEN_FILE={PLATFORM_TOKEN_FILE}"],
            uploads=[secret_upload(PLATFORM_TOKEN_FILE, token.secret_id)],
            volumes=[docker.ContainerVolumeArgs(host_path=docker_socket_path(host),
                                                container_path="/var/run/docker.sock",
                                                read_only=True)],
            restart="unless-stopped",
            memory=64,
            memory_swap=64,
            labels=labels(stack=args.stack, role="registrator", host=host.name),
            opts=pulumi.ResourceOptions(parent=self, provider=provider,
                                        depends_on=[self.containers[host.name]],
                                        delete_before_replace=True),
        )

    def _agent_token(self, name: str, host: Host, args: ConsulClusterArgs,
                     secret_id: pulumi.Input[str]) -> None:
        self.agent_tokens[host.name] = self._token(
            name, f"agent-{host.name}", args, rules.agent_rules(host.name),
            f"Consul agent on {host.name}", secret_id=secret_id)

    def _token(self, name: str, actor: str, args: ConsulClusterArgs, actor_rules: str,
               description: str, secret_id: pulumi.Input[str] | None = None) -> AclToken:
        return AclToken(f"{name}-{actor}-token", address=self.acl_address,
                        token=args.management_token, token_name=acl_token_name(actor),
                        rules=actor_rules, description=description, secret_id=secret_id,
                        revision=self.acl_revision, opts=pulumi.ResourceOptions(parent=self))
