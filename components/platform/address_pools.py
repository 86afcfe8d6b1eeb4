"""Network capacity of a Docker host: how many more bridge networks its engine can make from its
default address pools (counting the networks that hold a subnet of them), and which services need
a private network there at all.

Only services with linked dependencies get a private network (the dependency answers as `db`
there); the others run on the engine's default bridge. A network made before that rule is kept,
since removing it would replace the containers that serve traffic."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import service_network

# Docker's own pools when daemon.json sets none: 172.17-31.0.0/16 as /16s, 192.168.0.0/16 as /20s.
BUILTIN_POOLS = tuple({"Base": f"172.{i}.0.0/16", "Size": 16} for i in range(17, 32)) + (
    {"Base": "192.168.0.0/16", "Size": 20},)
POOLS_FIX = ('give the engine larger address pools: in /etc/docker/daemon.json set '
             '"default-address-pools": [{"base": "172.20.0.0/14", "size": 24}] (1024 networks; '
             'pick a range no other network of the host uses) and restart dockerd')


@dataclass(frozen=True)
class EngineNetworks:
    """What one engine says about its networks."""

    pools: tuple[Mapping, ...] | None   # DefaultAddressPools of `docker info`; None: Docker's own
    bridges: frozenset[str]             # names of its bridge networks, the default one included
    # Each bridge network's subnets; without them every bridge network counts against the pools.
    subnets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def capacity(self) -> int:
        return pool_capacity(self.pools or BUILTIN_POOLS)

    @property
    def used(self) -> int:
        """Bridge networks holding a subnet of the pools. The default bridge (`bip`) and networks
        made with a subnet of their own elsewhere take nothing from them."""
        if not self.subnets:
            return len(self.bridges)
        pools = [ipaddress.ip_network(str(p["Base"]), strict=False) for p in self.pools or BUILTIN_POOLS]
        return sum(1 for name in self.bridges
                   if any(in_pools(subnet, pools) for subnet in self.subnets.get(name, ())))

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.used)


def in_pools(subnet: str, pools: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """Whether `subnet` lies within one of the pools (an overlapping subnet takes room too)."""
    network = ipaddress.ip_network(subnet, strict=False)
    return any(network.version == pool.version and network.overlaps(pool) for pool in pools)


def pool_capacity(pools: Iterable[Mapping]) -> int:
    """How many networks the pools hold: each base split into subnets of its size."""
    total = 0
    for pool in pools:
        base = ipaddress.ip_network(str(pool["Base"]), strict=False)
        size = int(pool["Size"])
        if size < base.prefixlen:
            raise ValueError(f"address pool {pool['Base']} cannot be split into /{size} networks")
        total += 2 ** (size - base.prefixlen)
    return total


def private_network_hosts(environment: str, service: str, hosts: Iterable[str],
                          has_dependencies: bool,
                          engines: Mapping[str, EngineNetworks]) -> tuple[str, ...]:
    """The hosts on which a service has its private network: all of its hosts when it links
    dependencies, else only those where one exists already (kept: nothing running is replaced)."""
    name = service_network(environment, service)
    return tuple(h for h in hosts if has_dependencies or name in engines[h].bridges)


def new_networks(wanted: Mapping[str, Iterable[str]],
                 engines: Mapping[str, EngineNetworks]) -> dict[str, int]:
    """Per host, how many of the wanted network names its engine does not have yet."""
    return {host: len(set(names) - engines[host].bridges) for host, names in wanted.items()}


def check_capacity(source: str, needed: Mapping[str, int],
                   engines: Mapping[str, EngineNetworks]) -> None:
    """Refuses an update that needs more new networks on a host than its engine can still make."""
    for host in sorted(needed):
        engine = engines[host]
        if needed[host] > engine.free:
            raise ConfigError(
                source, f"bluegreen.hosts.{host}",
                f"the Docker engine of host {host} can make {engine.free} more network(s) "
                f"({engine.used} of {engine.capacity} in use) but this update needs "
                f"{needed[host]} new one(s); nothing was changed. To fix it, {POOLS_FIX}")


def read_engine_networks(host: str, docker_host: str, source: str) -> EngineNetworks:
    """Asks one engine for its address pools and bridge networks (the docker CLI, as the
    bootstrap and the tests use it)."""
    def docker(*args: str) -> str:
        try:
            result = subprocess.run(["docker", "-H", docker_host, *args], capture_output=True,
                                    text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ConfigError(source, f"bluegreen.hosts.{host}.docker",
                              f"cannot ask the Docker engine at {docker_host}: {error}") from None
        if result.returncode != 0:
            raise ConfigError(source, f"bluegreen.hosts.{host}.docker",
                              f"the Docker engine at {docker_host} does not answer "
                              f"({' '.join(result.stderr.split())[:200]}); start it or fix the address")
        return result.stdout
    pools = json.loads(docker("info", "--format", "{{json .DefaultAddressPools}}").strip() or "null")
    names = docker("network", "ls", "--filter", "driver=bridge", "--format", "{{.Name}}").split()
    subnets = {}
    try:
        listed = docker("network", "inspect", "--format",
                        "{{.Name}} {{range .IPAM.Config}}{{.Subnet}} {{end}}", *names) if names else ""
    except ConfigError:
        listed = ""   # one went away meanwhile: count every bridge network against the pools
    for line in listed.splitlines():
        name, *found = line.split()
        subnets[name] = tuple(found)
    return EngineNetworks(tuple(pools) if pools else None, frozenset(names), subnets)
