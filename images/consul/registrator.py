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
/var/run/docker.sock). Standard library only.
"""

import http.client
import json
import os
import socket
import sys
import time
import urllib.parse
import urllib.request

from consul_http import CONSUL, consul
from naming import platform_instance, registration_payload

ADVERTISE = os.environ.get("ADVERTISE_ADDRESS", "127.0.0.1")
DOCKER_SOCKET = os.environ.get("DOCKER_SOCKET", "/var/run/docker.sock")


class DockerConnection(http.client.HTTPConnection):
    def __init__(self, timeout=None):
        super().__init__("docker", timeout=timeout)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(DOCKER_SOCKET)


def docker_get(path: str):
    connection = DockerConnection(timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return json.loads(body) if response.status == 200 else None


def agent(method: str, path: str, body=None):
    """The agent's JSON answer (None: no such service, or no body)."""
    _, _, answer = consul(method, path, None if body is None else json.dumps(body).encode())
    return answer


def published_port(container: dict) -> int | None:
    for bindings in (container["NetworkSettings"].get("Ports") or {}).values():
        for binding in bindings or []:
            if binding.get("HostPort"):
                return int(binding["HostPort"])
    return None


def sync(container_id: str) -> None:
    container = docker_get(f"/containers/{container_id}/json")
    if not container or not container["State"].get("Running"):
        return
    labels = container["Config"].get("Labels") or {}
    instance = platform_instance(container.get("Name", ""), labels)
    port = published_port(container)
    if not instance or port is None:
        return
    current = agent("GET", f"/v1/agent/service/{urllib.parse.quote(instance)}")
    if current is None:
        return  # not deployed (or already removed) by the platform: nothing to keep in step
    if current.get("Port") == port:
        return
    meta = current.get("Meta") or {}
    payload = registration_payload(
        instance=instance, service=current["Service"], environment=meta.get("environment", ""),
        colour=meta.get("colour", ""), address=ADVERTISE, port=port,
        health_path=labels.get("bluegreen.health.path", "/health"),
        interval_s=float(labels.get("bluegreen.health.interval", "2")),
        timeout_s=float(labels.get("bluegreen.health.timeout", "1")),
        version=meta.get("version", ""), image=meta.get("image", ""), host=meta.get("host", ""))
    agent("PUT", "/v1/agent/service/register", payload)
    print(f"registrator: {instance} moved from port {current.get('Port')} to {port}", flush=True)


def watch() -> None:
    filters = urllib.parse.quote(json.dumps(
        {"type": ["container"], "event": ["start"], "label": ["bluegreen.instance"]}))
    connection = DockerConnection(timeout=None)
    connection.request("GET", f"/events?filters={filters}")
    response = connection.getresponse()
    # Catch up on anything that started while nobody was watching.
    for container in docker_get('/containers/json?filters={"label":["bluegreen.instance"]}') or []:
        sync(container["Id"])
    buffer = b""
    while True:
        chunk = response.read1(65536) if hasattr(response, "read1") else response.read(1)
        if not chunk:
            raise ConnectionError("Docker closed the event stream")
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                event = json.loads(line)
                try:
                    sync(event["id"])
                except Exception as error:  # noqa: BLE001 - one bad event must not stop the watch
                    print(f"registrator: {event.get('id', '?')[:12]}: {error}", file=sys.stderr, flush=True)


def main() -> None:
    print(f"registrator: watching {DOCKER_SOCKET}, agent {CONSUL}", flush=True)
    while True:
        try:
            watch()
        except Exception as error:  # noqa: BLE001 - reconnect after agent or Docker restarts
            print(f"registrator: {error}; retrying in 2s", file=sys.stderr, flush=True)
            time.sleep(2)


if __name__ == "__main__":
    main()
