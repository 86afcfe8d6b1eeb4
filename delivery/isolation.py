"""Step 2: test the image in isolation. The manifest's `test.command` runs in a throwaway container
with no network; then a health probe runs the image with its linked dependencies on a throwaway
network (plain docker CLI: nothing here outlives the step) and polls its health path on 127.0.0.1."""

from __future__ import annotations

import functools
import os
import subprocess
import time
import uuid

import requests

from bluegreen.components.model.manifest import Manifest
from bluegreen.components.naming import docker_name

from .steps import StepFailed

TEST_TIMEOUT_S = 300
PROBE_TIMEOUT_S = 60


def docker_cli(*args: str, timeout: float = 120, check: bool = True,
           engine: str | None = None) -> subprocess.CompletedProcess:
    """The docker CLI against `engine` (a host's docker URL; default: DOCKER_HOST)."""
    env = {**os.environ, "DOCKER_HOST": engine} if engine else None
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise StepFailed(f"docker {' '.join(args[:2])} failed: {result.stderr.strip()[-400:]}")
    return result


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def probe_name(service: str) -> str:
    return docker_name("probe", service, uuid.uuid4().hex[:8])


def run_tests(manifest: Manifest, image: str, timeout_s: float = TEST_TIMEOUT_S,
              engine: str | None = None) -> str:
    """Runs `test.command` in `docker run --rm` (no network) on the build host's engine (where the
    image is); returns the output's tail."""
    docker = functools.partial(docker_cli, engine=engine)
    if manifest.test is None:
        return "no test.command in the manifest: nothing to run"
    name = probe_name(manifest.name) + "-test"
    command = ["run", "--rm", "--name", name, "--network", "none", "--label", "bluegreen.role=probe",
               image, *manifest.test.command]
    try:
        result = docker(*command, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        docker("rm", "-f", name, check=False)
        raise StepFailed(f"the image's tests did not finish within {timeout_s:.0f}s") from None
    output = tail(result.stdout + "\n" + result.stderr)
    if result.returncode != 0:
        raise StepFailed(f"the image's tests failed (exit {result.returncode}): "
                         f"{' '.join(manifest.test.command)}\n{output}")
    return output


def health_probe(manifest: Manifest, image: str, dependencies: dict[str, str], version: str,
                 timeout_s: float = PROBE_TIMEOUT_S, engine: str | None = None) -> str:
    """Runs the image linked to its dependencies and waits for 200 on its health path (published
    on 127.0.0.1 of the build host: this machine, for a local engine)."""
    docker = functools.partial(docker_cli, engine=engine)
    network = probe_name(manifest.name)
    containers: list[str] = []
    try:
        docker("network", "create", "--label", "bluegreen.role=probe", network)
        for dependency in manifest.dependencies:
            name = f"{network}-{dependency.alias}"
            env = [f"--env={k}={v}" for k, v in sorted(dependency.environment.items())]
            docker("run", "-d", "--name", name, "--network", network, "--network-alias",
                   dependency.alias, f"--memory={dependency.memory_mb}m", "--label",
                   "bluegreen.role=probe", *env, dependencies[dependency.alias])
            containers.append(name)
        service = f"{network}-{manifest.name}"
        environment = {**manifest.environment, "SERVICE_NAME": manifest.name, "SERVICE_VERSION": version,
                       "SERVICE_COLOUR": "probe", "SERVICE_ENVIRONMENT": "probe"}
        docker("run", "-d", "--name", service, "--network", network, "-p",
               f"127.0.0.1::{manifest.port}", f"--memory={manifest.memory_mb}m", "--label",
               "bluegreen.role=probe", *[f"--env={k}={v}" for k, v in sorted(environment.items())], image)
        containers.append(service)
        address = docker("port", service, f"{manifest.port}/tcp").stdout.split()[0]
        url = f"http://{address}{manifest.health.path}"
        waited, last = _poll(url, service, timeout_s, max(manifest.health.timeout_s, 1.0), docker)
        if waited is None:
            logs = docker("logs", "--tail", "15", service, check=False)
            raise StepFailed(f"the health probe of {image} never passed within {timeout_s:.0f}s "
                             f"(GET {manifest.health.path}: {last})\n{tail(logs.stdout + logs.stderr)}")
        return f"GET {manifest.health.path} answered 200 after {waited:.1f}s with " \
               f"{', '.join(d.alias for d in manifest.dependencies) or 'no'} linked dependencies"
    finally:
        if containers:
            docker("rm", "-f", "-v", *containers, check=False)
        docker("network", "rm", network, check=False)


def _poll(url: str, container: str, timeout_s: float, request_timeout_s: float, docker):
    start = time.monotonic()
    last = "no answer yet"
    for _ in range(int(timeout_s / 0.25) + 1):
        if time.monotonic() - start > timeout_s:
            break
        try:
            response = requests.get(url, timeout=request_timeout_s)
            if response.status_code == 200:
                return time.monotonic() - start, "200"
            last = f"{response.status_code} {response.text.strip()[:200]}"
        except requests.RequestException as error:
            last = type(error).__name__
        running = docker("inspect", "--format", "{{.State.Running}}", container, check=False)
        if running.stdout.strip() == "false":
            return None, "the container exited"
        time.sleep(0.25)
    return None, last
