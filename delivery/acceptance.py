"""Step 6: the manifest's `acceptance.command` in a throwaway container on the integration
environment's build host (where step 1 left the image), never on the deploying machine: the
runner's environment (state passphrase, DOCKER_HOST, keys) and its files stay out of reach. The
container gets only BASE_URL (integration's stable URI as a container reaches the proxy),
EXPECTED_VERSION and SERVICE_NAME, no mount and no capability, and is removed when it ends or
when the step's time is up. Building the `docker` arguments is pure; running them is not."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlparse

from bluegreen.components.model.config import Host
from bluegreen.components.naming import caller_proxy_address, docker_name

from .isolation import docker_cli, tail
from .steps import StepFailed

ACCEPTANCE_TIMEOUT_S = 600
MEMORY = "512m"
PIDS_LIMIT = 256


@dataclass(frozen=True)
class AcceptanceRun:
    """One acceptance container: its name, the image it runs, the command and its variables."""

    name: str
    image: str
    command: tuple[str, ...]
    environment: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if not self.command:
            raise ValueError("an acceptance run needs a command")


def registry_refusal(image: str, registries: list[str], manifest: str, config_file: str) -> str | None:
    """Why the manifest's tester image may not run (its registry is not one the stack allows,
    as the policy pack's service-image-pinned has it), or None. The pack never sees this image:
    `docker run` starts it, not `pulumi up`."""
    from bluegreen.policies.rules.images import registry_allowed, registry_of   # the pack's own test
    registry = registry_of(image.split("@", 1)[0])
    if registry_allowed(registry, registries):
        return None
    allowed = ", ".join(registries) if registries else "the platform registry on 127.0.0.1"
    return (f"{manifest}: acceptance.image: {image} comes from {registry}, which this stack does "
            f"not allow ({allowed}), so it was not run. Push the tester image to the platform "
            "registry and name it there by digest (or leave acceptance.image out: the service's "
            f"own image runs the command); for a registry the site trusts, list it in {config_file}: "
            f"{{\"service-image-pinned\": {{\"registries\": [..., \"{registry}\"]}}}}")


def acceptance_name(service: str) -> str:
    return docker_name("acceptance", service, uuid.uuid4().hex[:8])


def run_arguments(run: AcceptanceRun) -> list[str]:
    """`docker run` for `run`: on the default bridge, where a host's containers reach the proxy
    (its bridge listener), with each variable given by value (`--env NAME` alone would copy the
    CLI's own, the runner's, value in)."""
    return ["run", "--rm", "--name", run.name, "--label", "bluegreen.role=acceptance",
            "--network", "bridge", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            f"--memory={MEMORY}", f"--pids-limit={PIDS_LIMIT}",
            *[f"--env={key}={value}" for key, value in sorted(run.environment.items())],
            run.image, *run.command]


def removal_arguments(run: AcceptanceRun) -> list[str]:
    """Kills and removes the container (the CLI's timeout only ends the client)."""
    return ["rm", "-f", run.name]


def container_url(url: str, host: Host, source: str) -> str:
    """The stable URI `url` (as the deploying machine reaches the proxy) as a container on `host`
    reaches it: over the host's bridge when the proxy runs there or names no host (127.0.0.1)."""
    parsed = urlparse(url)
    address = caller_proxy_address(host.address, host.bridge_address or "", parsed.hostname or "")
    if not address:
        raise StepFailed(f"{source}: bluegreen.hosts.{host.name}.bridgeAddress: is not set, so the "
                         f"acceptance container on {host.name} cannot reach the proxy at {url}; set "
                         "it to the host's address on its Docker bridge (e.g. 172.17.0.1)")
    return parsed._replace(netloc=f"{address}:{parsed.port}" if parsed.port else address).geturl()


def run_acceptance(run: AcceptanceRun, engine: str,
                   timeout_s: float = ACCEPTANCE_TIMEOUT_S) -> tuple[int, str]:
    """Runs it on `engine`; returns (exit code, the output's tail)."""
    try:
        result = docker_cli(*run_arguments(run), timeout=timeout_s, check=False, engine=engine)
    except subprocess.TimeoutExpired:
        docker_cli(*removal_arguments(run), check=False, engine=engine)
        raise StepFailed(f"the acceptance tests did not finish within {timeout_s:.0f}s; "
                         f"container {run.name} was removed") from None
    return result.returncode, tail(result.stdout + "\n" + result.stderr, 8)
