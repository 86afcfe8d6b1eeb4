#!/usr/bin/env python3
"""Keeps Consul registrations in step with Docker on one host (the seed's "registrator").

Pulumi registers every service container when it deploys it. A container that Docker restarts
later (a crash, `docker start`, a daemon restart) gets a new dynamic host port, which Pulumi does
not see until its next refresh. This watcher listens to the host's Docker events and, when a
container the platform made starts (its name and role say so, see naming.platform_instance: an
image's own `bluegreen.instance` label counts for nothing), re-registers that instance with its
agent at the new port, keeping the ID, tags, metadata and check the deploy gave it.

Environment: CONSUL_HTTP_ADDR (the host's agent), CONSUL_HTTP_TOKEN_FILE (a file holding this
registrator's ACL token), ADVERTISE_ADDRESS (what registrations carry), DOCKER_SOCKET (default
/var/run/docker.sock). Docker through its Python SDK (docker), Consul through the platform's client
(components.consul.api).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import docker
import docker.errors

from bluegreen.components.consul import api
from bluegreen.components.naming import platform_instance, registration_payload

ADVERTISE = os.environ.get("ADVERTISE_ADDRESS", "127.0.0.1")
DOCKER_SOCKET = os.environ.get("DOCKER_SOCKET", "/var/run/docker.sock")
AGENT = api.LocalAgent.from_environment()
DOCKER_TIMEOUT_S = 10
# Only a narrowing of the events to read: whether a container counts is platform_instance's to say.
EVENTS = {"type": "container", "event": "start", "label": "bluegreen.instance"}


class Host:
    """The host's Docker engine, connected on first use (the SDK asks the engine its API version)."""
    client: docker.DockerClient | None = None

    @classmethod
    def docker(cls) -> docker.DockerClient:
        if cls.client is None:
            cls.client = docker.DockerClient(base_url=f"unix://{DOCKER_SOCKET}", timeout=DOCKER_TIMEOUT_S)
        return cls.client


def inspect(container_id: str) -> dict[str, Any] | None:
    """`docker inspect` of a container (None: gone already)."""
    try:
        return Host.docker().containers.get(container_id).attrs
    except docker.errors.NotFound:
        return None


def registered(instance: str) -> dict[str, Any] | None:
    """The instance as the host's agent has it (None: not registered there)."""
    return api.agent_service(AGENT.address, instance, AGENT.token)


def register(payload: dict[str, Any]) -> None:
    api.agent_register(AGENT.address, payload, AGENT.token)


def published_port(container: dict[str, Any]) -> int | None:
    for bindings in (container["NetworkSettings"].get("Ports") or {}).values():
        for binding in bindings or []:
            if binding.get("HostPort"):
                return int(binding["HostPort"])
    return None


def sync(container_id: str) -> None:
    container = inspect(container_id)
    if not container or not container["State"].get("Running"):
        return
    labels = container["Config"].get("Labels") or {}
    instance = platform_instance(container.get("Name", ""), labels)
    port = published_port(container)
    if not instance or port is None:
        return
    current = registered(instance)
    if current is None:
        return  # not deployed (or already removed) by the platform: nothing to keep in step
    if current.get("Port") == port:
        return
    meta = current.get("Meta") or {}
    register(registration_payload(
        instance=instance, service=current["Service"], environment=meta.get("environment", ""),
        colour=meta.get("colour", ""), address=ADVERTISE, port=port,
        health_path=labels.get("bluegreen.health.path", "/health"),
        interval_s=float(labels.get("bluegreen.health.interval", "2")),
        timeout_s=float(labels.get("bluegreen.health.timeout", "1")),
        version=meta.get("version", ""), image=meta.get("image", ""), host=meta.get("host", "")))
    print(f"registrator: {instance} moved from port {current.get('Port')} to {port}", flush=True)


def watch() -> None:
    engine = Host.docker()
    events = engine.events(decode=True, filters=EVENTS)   # opened first: no start falls between
    try:
        # Catch up on anything that started while nobody was watching.
        for container in engine.containers.list(filters={"label": "bluegreen.instance"}):
            sync(str(container.id))
        for event in events:
            try:
                sync(event["id"])
            except Exception as error:  # noqa: BLE001 - one bad event must not stop the watch
                print(f"registrator: {event.get('id', '?')[:12]}: {error}", file=sys.stderr, flush=True)
    finally:
        events.close()
    raise ConnectionError("Docker closed the event stream")


def main() -> None:
    print(f"registrator: watching {DOCKER_SOCKET}, agent {AGENT.address}", flush=True)
    while True:
        try:
            watch()
        except Exception as error:  # noqa: BLE001 - reconnect after agent or Docker restarts
            print(f"registrator: {error}; retrying in 2s", file=sys.stderr, flush=True)
            Host.client = None
            time.sleep(2)


if __name__ == "__main__":
    main()
