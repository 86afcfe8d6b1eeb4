"""`rollback`: bring back an earlier release of a service in one stack.

Without --to it goes back to the last release that was live before the current one (the release
history in Consul KV). When the other colour still runs that release, only the alias moves: its
instances' checks are read from Consul, the alias is written with a check-and-set (so it never
overwrites a flip made meanwhile), and the proxy serves the old release within a second; then
`live:` is recorded in stacks/Pulumi.<stack>.yaml and `pulumi up` brings state and outputs in line.
Otherwise (or with --to a release neither colour runs) the release is deployed by its digest to
the offline colour, without a build, gated, and flipped by `pulumi up`. When the alias points at
the release's colour already (the bake watchdog rolled back), only `live:` is recorded.

With git the alias-only case is `git revert <the flip commit>` + `pulumi up --stack <stack>`."""

from __future__ import annotations

import os
import sys
import time

from components.consul import api as consul_api
from components.consul.records import read_service_records
from components.model.bake import watchdog_reason
from components.model.release import rollback_target
from components.model.validation import ConfigError
from components.naming import alias_key, offline_colour

from . import REPO
from .flip import FlipRefused, Move, flip_together
from .stacks import EnvStack, stack_for_service
from .steps import StepFailed


class RollbackRefused(Exception):
    """Nothing was changed; the message says why and what to do."""


def run_rollback(service: str, stack_name: str, to: str | None = None, out=None) -> int:
    out = out or sys.stdout
    start = time.monotonic()
    log = os.path.join(REPO, "reports", f"rollback-{service}-{stack_name.rsplit('/', 1)[-1]}.log")

    def say(message: str) -> None:
        print(f"[{time.monotonic() - start:5.2f}s] {message}", file=out, flush=True)

    try:
        stack = EnvStack(stack_for_service(stack_name, service), log)
        config = stack.config()
        settings = stack.service(service)
        if settings is None:
            raise RollbackRefused(f"stack {stack.name} does not deploy {service}")
        consul = config.hosts[settings.hosts[0]].consul
        records = read_service_records(consul, config.environment, service, stack.deployer_token())
        live, other = settings.live, offline_colour(settings.live)
        live_version = settings.colours[live].version
        target = _target(records, service, live_version, to)
    except (StepFailed, ConfigError, RollbackRefused, consul_api.ConsulError) as error:
        print(f"rollback: {error}", file=out)
        return 2
    version, reference = target["version"], target["reference"]
    say(f"{service} on {stack.name}: live is {live} ({live_version}); rolling back to {version} "
        f"({reference.rsplit('@', 1)[-1][:19]})")
    other_runs_it = (other in settings.colours and settings.colours[other].version == version
                     and records.slots.get(other) == version)
    try:
        if other_runs_it and records.live == other:
            # The bake watchdog (or an operator) moved the alias back already: accept that.
            say(f"alias {alias_key(config.environment, service)} points at {other} already"
                f"{watchdog_reason(records.bake, other)}; no alias move")
            stack.set_service(service, {"live": other})
            say(f"recorded live: {other} in stacks/Pulumi.{stack.name}.yaml; pulumi up to converge")
        elif other_runs_it:
            flip_together([Move(config, settings, colour=other, expected=live,
                                token=stack.deployer_token())])
            say(f"alias {alias_key(config.environment, service)}: {live} -> {other}; the proxy serves "
                f"{version} now")
            stack.set_service(service, {"live": other})
            say(f"recorded live: {other} in stacks/Pulumi.{stack.name}.yaml (with git the same is "
                f"`git revert <the flip commit>`); pulumi up to converge")
        else:
            say(f"{other} runs {settings.colours[other].version if other in settings.colours else 'nothing'}: "
                f"deploying {version} by digest to {other} (no build), gating it, then flipping")
            stack.set_service(service, {f"{other}.version": version, f"{other}.image": reference,
                                        "live": other})
        stack.up(f"rollback {service} to {version}")
    except (StepFailed, RollbackRefused, FlipRefused, consul_api.ConsulError) as error:
        print(f"rollback FAILED: {error}\nstacks/Pulumi.{stack.name}.yaml and the alias say what "
              f"serves now; `./bg pulumi up --stack {stack.name} --yes` brings state in line "
              f"(log: {os.path.relpath(log)})", file=out)
        return 1
    touched = {op: n for op, n in stack.last_changes.items() if op != "same" and n}
    say(f"done: {version} is live on {other}; resource changes: "
        f"{', '.join(f'{n} {op}' for op, n in sorted(touched.items())) or 'none'} "
        f"(containers: {stack.container_changes or 'none changed'})")
    return 0


def _target(records, service: str, live_version: str, to: str | None) -> dict:
    if to is None:
        target = rollback_target(records.history, live_version)
        if target is None:
            raise RollbackRefused(f"nothing to roll back to: no release of {service} other than "
                                  f"{live_version} was ever live here (./bg releases {service} lists them)")
        return target
    if to == live_version:
        raise RollbackRefused(f"{service} {to} is live already")
    if to in records.history:
        return records.history[to]
    if to in records.releases:
        return {"version": to, "reference": records.releases[to].reference}
    known = ", ".join(sorted(set(records.history) | set(records.releases))) or "none"
    raise RollbackRefused(f"{service} has no release {to}; released versions: {known}")
