"""`remove`: a service out of one stack, and what `pulumi up` deliberately leaves behind.

1. The stack file drops the service's entry and its secrets; `pulumi up` deletes both colours'
   containers, the dependencies' containers, data volumes and network on every host, the
   registrations, the alias (the proxy stops serving its URIs), its config, route and catalogue
   entries; then its release history in this environment. Other services and environments are
   untouched.
2. Its images on the stack's hosts are removed (the stacks keep what they pull, since one image
   serves both colours and every environment on a host): only once no other stack deploys it,
   and an image a container still uses is left (Docker refuses).
3. With --purge-releases, once no stack deploys it: its repositories in the registry (then the
   registry's garbage collection) and its release records in Consul (each environment's
   deployer deletes its own history: a history left elsewhere is named).

Refused while another environment of the platform still runs the service (its alias names a
colour), unless --force (then the images and
releases stay). --dry-run says what would go and changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

from bluegreen.components.consul import api as consul_api
from bluegreen.components.model.config import StackConfig, read_stack_file
from bluegreen.components.model.manifest import load_manifest
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import alias_root, docker_name, history_prefix, history_root, release_prefix

from . import REPO
from .stacks import EnvStack, platform_outputs, platform_owner, short_name, stack_for_service
from .steps import StepFailed

REGISTRY_ROOT = "/var/lib/docker-registry/docker/registry/v2/repositories"
REGISTRY_CONFIG = "/etc/docker/registry/config.yml"


@dataclass(frozen=True)
class RemovePlan:
    service: str
    stack: str
    others: tuple[str, ...]          # other environments of the platform that run the service
    repositories: tuple[str, ...]    # registry/<service>, registry/<service>-<alias> (built deps)
    hosts: tuple[str, ...]           # the engines it ran on (docker URLs)
    has_secrets: bool

    @property
    def last(self) -> bool:
        """No other stack deploys it: its images and releases may go."""
        return not self.others


def environments_running(service: str, consul: str, token: str) -> list[str]:
    """The environments of this platform whose alias for `service` names a colour."""
    return sorted({key.split("/")[2] for key in consul_api.kv_keys(consul, alias_root(), token)
                   if key.count("/") == 3 and key.split("/")[3] == service})


def plan_remove(service: str, stack: EnvStack, registry: str) -> RemovePlan:
    config: StackConfig = stack.config()
    consul = config.service_host(service).consul
    settings = stack.service(service)
    if settings is None:
        raise StepFailed(f"stack {stack.name} does not deploy {service}")
    manifest = load_manifest(settings.manifest)
    built = [d.alias for d in manifest.dependencies if d.build]
    secrets = (read_stack_file(REPO, stack.name).get("secrets") or {})
    return RemovePlan(
        service=service, stack=stack.name,
        others=tuple(e for e in environments_running(service, consul, stack.deployer_token())
                     if e != config.environment),
        repositories=tuple(f"{registry}/{name}" for name in (service, *(f"{service}-{a}" for a in built))),
        hosts=tuple(sorted({config.hosts[h].docker for h in settings.hosts})),
        has_secrets=isinstance(secrets, dict) and service in secrets)


def image_names(inspected: list[dict], repositories: tuple[str, ...]) -> list[str]:
    """The names (digest references first, then tags) that `docker image inspect` gives images
    of these repositories; names other registries give the same image are left alone."""
    names = []
    for image in inspected:
        for name in [*(image.get("RepoDigests") or []), *(image.get("RepoTags") or [])]:
            if any(name.startswith((f"{repository}@", f"{repository}:")) for repository in repositories):
                names.append(name)
    return names


def remove_images(plan: RemovePlan, say) -> None:
    for host in plan.hosts:
        ids = set()
        for repository in plan.repositories:
            ids.update(docker(host, "image", "ls", "-q", repository).split())
        if not ids:
            continue
        names = image_names(json.loads(docker(host, "image", "inspect", *sorted(ids))), plan.repositories)
        result = subprocess.run(["docker", "-H", host, "image", "rm", *names], capture_output=True, text=True)
        kept = [line for line in result.stderr.splitlines() if line.strip()]
        say(f"{host}: {len(names)} image name(s) removed" + (f"; kept: {'; '.join(kept)[:300]}" if kept else ""))


def remove_history(service: str, config: StackConfig, token: str, say) -> None:
    """This environment's release history of the service (its deployer writes no other's)."""
    consul_api.kv_delete(config.service_host().consul, history_prefix(config.environment, service),
                         token, recurse=True)
    say(f"Consul: the history of {service} in {config.environment} deleted")


def purge_releases(plan: RemovePlan, config: StackConfig, token: str, say) -> None:
    """The registry's repositories (then its garbage collection) and the release records of the
    service in Consul; names the environments whose history of it is still there."""
    owner_config = EnvStack(platform_owner(config)).config()
    platform = owner_config.platform
    if platform is None:
        raise StepFailed(f"stack {config.stack} neither owns a platform nor references one")
    registry_host = owner_config.hosts[platform.host].docker
    container = docker_name(owner_config.stack, "registry")
    folders = " ".join(r.rsplit("/", 1)[1] for r in plan.repositories)
    docker(registry_host, "exec", container, "sh", "-c",
           f"cd {REGISTRY_ROOT} && rm -rf {folders} && docker-registry garbage-collect {REGISTRY_CONFIG}")
    say(f"registry {container}: repositories {folders} deleted, garbage collected")
    consul = config.service_host().consul
    consul_api.kv_delete(consul, release_prefix(plan.service), token, recurse=True)
    say(f"Consul: {release_prefix(plan.service)} deleted")
    left = sorted({key.split("/")[2] for key in consul_api.kv_keys(consul, history_root(), token)
                   if key.count("/") >= 3 and key.split("/")[3] == plan.service})
    if left:
        say(f"the history of {plan.service} in {', '.join(left)} stays (only that environment's "
            f"deployer token may delete it): `consul kv delete -recurse "
            f"{history_prefix(left[0], plan.service)}` with it")


def docker(host: str, *args: str) -> str:
    result = subprocess.run(["docker", "-H", host, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise StepFailed(f"docker {' '.join(args[:2])} on {host} failed: {result.stderr.strip()[:300]}")
    return result.stdout


def run_remove(service: str, stack_name: str, purge: bool = False, dry_run: bool = False,
               force: bool = False, out=None) -> int:
    out = out or sys.stdout
    start = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - start:5.2f}s] {message}", file=out, flush=True)

    try:
        stack = EnvStack(stack_for_service(stack_name, service),
                         os.path.join(REPO, "reports", f"remove-{service}-{short_name(stack_name)}.log"))
        config = stack.config()
        plan = plan_remove(service, stack, platform_outputs(config)["registry"])
        refusal = why_not(plan, purge, force)
    except (StepFailed, ConfigError, consul_api.ConsulError) as error:
        print(f"remove: {error}", file=out)
        return 2
    if refusal:
        print(f"remove REFUSED: {refusal}; nothing was changed", file=out)
        return 2
    for line in describe(plan, purge):
        say(line)
    if dry_run:
        say("dry run: nothing was changed")
        return 0
    try:
        token = stack.deployer_token()
        stack.remove_service(service, secrets=plan.has_secrets)
        stack.up(f"remove {service}")
        say(f"stacks/Pulumi.{stack.name}.yaml no longer deploys {service}; pulumi up removed it")
        remove_history(service, config, token, say)
        if plan.last:
            remove_images(plan, say)
        if purge:
            purge_releases(plan, config, token, say)
    except (StepFailed, consul_api.ConsulError) as error:
        print(f"remove FAILED: {error}", file=out)
        return 1
    return 0


def why_not(plan: RemovePlan, purge: bool, force: bool) -> str | None:
    if plan.others and purge:
        return (f"{plan.service} still runs in {', '.join(plan.others)}; its releases are shared: "
                f"remove it there first, or leave out --purge-releases")
    if plan.others and not force:
        return (f"{plan.service} still runs in {', '.join(plan.others)}; --force removes it from "
                f"{plan.stack} alone (its images and releases stay)")
    return None


def describe(plan: RemovePlan, purge: bool) -> list[str]:
    lines = [f"removing {plan.service} from {plan.stack}: both colours, its dependencies and their "
             f"data volumes, network, registrations, alias, config, route, catalogue entry and "
             f"history"
             + (", and its secrets" if plan.has_secrets else "")]
    if plan.last:
        lines.append(f"then its images ({', '.join(plan.repositories)}) on {', '.join(plan.hosts)}")
    else:
        lines.append(f"its images stay: it still runs in {', '.join(plan.others)}")
    if purge:
        lines.append("then its registry repositories and release records (--purge-releases)")
    return lines
