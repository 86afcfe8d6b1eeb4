"""ConsulCluster: Consul server agents (one, or a quorum of three or five) and a client agent on
every other host, joined over LAN gossip; each on the host network with its data on a volume, and beside
each agent a registrator that re-registers restarted containers at their new ports."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

import pulumi
import pulumi_docker as docker

from components.model.config import Host
from components.naming import docker_name
from components.platform.docker_host import http_healthcheck, labels, local_image


@dataclass(frozen=True)
class ConsulClusterArgs:
    stack: str
    image: str
    datacenter: str
    servers: tuple[Host, ...]
    clients: tuple[Host, ...]
    providers: dict[str, docker.Provider]

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
        # No phoning home for updates: hosts reach the package registries only.
        "-hcl=disable_update_check = true",
        # Sync check output changes to the catalog at once (default: every 5 minutes).
        '-hcl=check_update_interval = "0s"',
        # Several agents may share one network namespace: no fixed default ports.
        "-hcl=ports { grpc_tls = -1 }",
        # Everything on a host talks to its agent from one address: the proxy's consul-template
        # alone holds a few blocking queries per service, past the default 200 at ~50 services.
        "-hcl=limits { http_max_conns_per_client = 8192 }",
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
        for host in (*args.servers, *args.clients):
            provider = args.providers[host.name]
            role = "server" if host in args.servers else "client"
            image = local_image(args.image, provider, self)
            data = docker.Volume(f"{name}-{host.name}-data",
                                 name=docker_name(args.stack, "consul", host.name),
                                 opts=pulumi.ResourceOptions(parent=self, provider=provider))
            after = [] if role == "server" else [self.containers[s.name] for s in args.servers]
            self.containers[host.name] = docker.Container(
                f"{name}-{host.name}",
                name=docker_name(args.stack, "consul", host.name),
                image=image,
                command=agent_command(host, args.datacenter, args.servers),
                network_mode="host",
                volumes=[docker.ContainerVolumeArgs(volume_name=data.name, container_path="/consul/data")],
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
            self.registrators[host.name] = docker.Container(
                f"{name}-{host.name}-registrator",
                name=docker_name(args.stack, "registrator", host.name),
                image=image,
                entrypoints=["python3", "-u", "/usr/local/lib/bluegreen/registrator.py"],
                network_mode="host",
                envs=[f"CONSUL_HTTP_ADDR={host.consul}", f"ADVERTISE_ADDRESS={host.address}"],
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
        self.agents = pulumi.Output.from_input(
            {h.name: h.consul for h in (*args.servers, *args.clients)})
        self.register_outputs({"agents": self.agents})
