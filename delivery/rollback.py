"""`rollback`: bring back an earlier release of a service in one stack.

Every decision reads the alias in Consul: the colour it names serves, whatever the stack file's
`live:` says, and nothing here touches that colour's containers. The plan (`plan_rollback`, pure):

- the stack file asks for a flip the alias never made (a failed gate or flip, a bake the watchdog
  rolled back) and no --to is given: the failed change is abandoned; the file records what
  serves (`reconcile`), no alias move;
- the offline colour runs the target release already: only the alias moves (`flip`): its
  instances' checks are read from Consul, the alias is written with a check-and-set (so it never
  overwrites a flip made meanwhile), and the proxy serves the old release within a second;
- otherwise the release is deployed by its digest to the offline colour, without a build, with the
  configuration it last ran live with, gated, and flipped by `pulumi up` (`redeploy`).

Then the stack file records the outcome (live colour, version, digest and `env` of the colour that
went live) and `pulumi up` brings state and outputs in line. With git the alias-only case is
`git revert <the flip commit>` + `pulumi up --stack <stack>`."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from bluegreen.components.consul import api as consul_api
from bluegreen.components.consul.records import ServiceRecords, read_service_records
from bluegreen.components.model.audit import Operator
from bluegreen.components.model.bake import watchdog_reason
from bluegreen.components.model.config import ServiceConfig
from bluegreen.components.model.hooks import ROLLBACK
from bluegreen.components.model.live import serving_colour
from bluegreen.components.model.release import release_version, rollback_target
from bluegreen.components.model.split import serving_colours
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import alias_key, offline_colour

from . import REPO, audit
from .flip import FlipRefused, FlipVetoed, Move, flip_together
from .lock import LockHeld, service_lock
from .stacks import EnvStack, consul_address, stack_for_service
from .steps import StepFailed


class RollbackRefused(Exception):
    """Nothing was changed; the message says why and what to do."""


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback does: `action` is reconcile, flip or redeploy (see the module's doc)."""

    action: str
    live: str                     # the colour the alias names now
    colour: str                   # the colour that serves afterwards
    release: str                  # its release id
    reference: str                # its digest reference
    settings: dict[str, str] = field(default_factory=dict)  # stack config paths to set
    env: dict[str, str] | None = None   # the colour's `env` as it last ran live (None: keep)

    @property
    def version(self) -> str:
        return release_version(self.release)


def plan_rollback(settings: ServiceConfig, records: ServiceRecords, to: str | None) -> RollbackPlan:
    """Decides a rollback from Consul's records alone (raises RollbackRefused)."""
    live = serving_colour(records.live)
    if live is None:
        raise RollbackRefused(f"{settings.name} has never gone live here (the alias names no "
                              f"colour): nothing to roll back")
    # A failed or killed change left the file asking for another colour: no --to gives it up;
    # --to naming what serves now (a killed rollback that got as far as its flip) records it.
    if settings.live != live and to in (None, records.running.get(live)):
        return _reconcile(settings, records, live)
    other = offline_colour(live)
    target = _target(records, settings.name, records.running.get(live), to)
    release, reference = target["release"], target["reference"]
    config = target.get("config")
    env = dict(config["env"]) if config else None
    # The digest goes with the version: a pin an earlier (killed) rollback left must not remain.
    paths = {"live": other, f"{other}.version": release_version(release), f"{other}.image": reference}
    if other in settings.colours and records.running.get(other) == release:
        return RollbackPlan("flip", live, other, release, reference, paths, env)
    serving = serving_colours(records.split, live)
    if other in serving:
        raise RollbackRefused(f"{settings.name}'s {other} colour serves clients ({serving[other]}), "
                              f"so {release} cannot be deployed there: end the split first "
                              f"(./bg split {settings.name} --stack <stack> --percent 0), which "
                              f"sends every client back to {live}")
    return RollbackPlan("redeploy", live, other, release, reference, paths, env)


def _reconcile(settings: ServiceConfig, records: ServiceRecords, live: str) -> RollbackPlan:
    """The stack file takes back what serves: the live colour's recorded release and config."""
    release = records.running.get(live) or records.slots.get(live, "")
    if not release:
        raise RollbackRefused(f"the alias of {settings.name} names {live}, but Consul records no "
                              f"release on it; `pulumi up` the stack first")
    config = records.configs.get(live)
    entry = records.history.get(release, {})
    recorded = records.releases.get(release_version(release))
    reference = entry.get("reference") or (recorded.reference if recorded else "")
    paths = {"live": live, f"{live}.version": release_version(release)}
    if reference:
        paths[f"{live}.image"] = reference
    return RollbackPlan("reconcile", live, live, release, reference, paths,
                        dict(config["env"]) if config else None)


def _target(records: ServiceRecords, service: str, live_release: str | None, to: str | None) -> dict:
    if to is None:
        target = rollback_target(records.history, live_release)
        if target is None:
            raise RollbackRefused(f"nothing to roll back to: no release of {service} other than "
                                  f"{live_release} was ever live here (./bg releases {service} lists them)")
        return target
    if to == live_release:
        raise RollbackRefused(f"{service} {to} is live already")
    if to in records.history:
        return {**records.history[to], "release": to}
    if to in records.releases:
        return {"release": to, "reference": records.releases[to].reference}
    known = ", ".join(sorted(set(records.history) | set(records.releases))) or "none"
    raise RollbackRefused(f"{service} has no release {to}; released versions: {known}")


def run_rollback(service: str, stack_name: str, to: str | None = None, out=None,
                 who: Operator | None = None, lock_wait_s: float = 0.0) -> int:
    """Holds the service's deploy lock from reading Consul's records to the end of `pulumi up`."""
    out = out or sys.stdout
    who = who or audit.operator(f"rollback {service} --stack {stack_name}")
    log = os.path.join(REPO, "reports", f"rollback-{service}-{stack_name.rsplit('/', 1)[-1]}.log")
    stack = trail = None
    try:
        stack = EnvStack(stack_for_service(stack_name, service), log)
        _settings(stack, service)
        trail = audit.Trail.of(stack, service, who, out)
        with service_lock(stack, service, who, lock_wait_s, out):
            return _rollback(stack, service, to, trail, out, log)
    except (StepFailed, ConfigError, RollbackRefused, LockHeld, consul_api.ConsulError) as error:
        print(f"rollback{' REFUSED' if isinstance(error, LockHeld) else ''}: {error}", file=out)
        if trail is not None:
            trail.record("refused", service, reason=str(error))
        return 2


def _settings(stack: EnvStack, service: str) -> ServiceConfig:
    settings = stack.service(service)
    if settings is None:
        raise RollbackRefused(f"stack {stack.name} does not deploy {service}")
    return settings


def _rollback(stack: EnvStack, service: str, to: str | None, trail: audit.Trail, out, log: str) -> int:
    start = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - start:5.2f}s] {message}", file=out, flush=True)

    config, settings = stack.config(), _settings(stack, service)
    records = read_service_records(consul_address(config, service), config.environment, service,
                                   stack.deployer_token())
    plan = plan_rollback(settings, records, to)
    try:
        _carry_out(plan, stack, config, settings, records, say, trail.operator)
        stack.up(f"rollback {service} to {plan.release}")
    except FlipVetoed as error:
        trail.record("vetoed", service, before=plan.live, after=plan.colour, version=plan.version,
                     release=plan.release, reason=str(error))
        print(f"rollback VETOED: {error}", file=out)
        return 2
    except (StepFailed, RollbackRefused, FlipRefused, consul_api.ConsulError) as error:
        trail.record("failed", service, before=plan.live, after=plan.colour,
                     version=plan.version, release=plan.release, reason=str(error))
        print(f"rollback FAILED: {error}\n{_told_truth(stack, config, settings)} "
              f"(log: {os.path.relpath(log)})", file=out)
        return 1
    trail.record("rollback", service, before=plan.live, after=plan.colour, version=plan.version,
                 release=plan.release, reason=PLAN_REASONS[plan.action])
    touched = {op: n for op, n in stack.last_changes.items() if op != "same" and n}
    say(f"done: {plan.release} is live on {plan.colour}; resource changes: "
        f"{', '.join(f'{n} {op}' for op, n in sorted(touched.items())) or 'none'} "
        f"(containers: {stack.container_changes or 'none changed'})")
    return 0


PLAN_REASONS = {"flip": "only the alias moved", "reconcile": "the stack file took back what serves",
                "redeploy": "deployed by digest to the offline colour, gated and flipped"}


def _carry_out(plan: RollbackPlan, stack: EnvStack, config, settings: ServiceConfig,
               records: ServiceRecords, say, who: Operator) -> None:
    """The plan's alias move (if any) and its stack file changes, each said as it happens."""
    key = alias_key(config.environment, settings.name)
    name, file = settings.name, f"stacks/Pulumi.{stack.name}.yaml"
    if plan.action == "reconcile":
        say(f"{file} asks live: {settings.live}, but the alias {key} names {plan.live}, which serves "
            f"{plan.release}{watchdog_reason(records.bake, plan.live)}; that change is abandoned, "
            f"no alias move")
    else:
        say(f"{name} on {stack.name}: the alias {key} names {plan.live} "
            f"({records.running.get(plan.live)}); rolling back to {plan.release} "
            f"({plan.reference.rsplit('@', 1)[-1][:19]}) on {plan.colour}")
    if plan.action == "flip":
        flip_together([Move(config, settings, colour=plan.colour, expected=plan.live,
                            token=stack.deployer_token(), previous_version=records.slots.get(plan.live),
                            release=plan.release, digest=plan.reference)],
                     who, f"rollback to {plan.release}", event=ROLLBACK, say=say)
        say(f"alias {key}: {plan.live} -> {plan.colour}; the proxy serves {plan.release} now")
    elif plan.action == "redeploy":
        say(f"{plan.colour} runs {records.running.get(plan.colour, 'nothing')}: deploying "
            f"{plan.release} by digest to {plan.colour} (no build), with the configuration it last "
            f"ran live with, gating it, then flipping")
    stack.set_service(name, plan.settings, env={plan.colour: plan.env} if plan.env is not None else None)
    say(f"recorded live: {plan.colour} ({plan.release}) in {file}; pulumi up to converge")


def _told_truth(stack: EnvStack, config, settings: ServiceConfig) -> str:
    """After a failed rollback: the stack file records the colour the alias names again, and the
    message says which that is."""
    key, file = alias_key(config.environment, settings.name), f"stacks/Pulumi.{stack.name}.yaml"
    try:
        serving = serving_colour(consul_api.kv_get(config.service_host(settings).consul, key,
                                                   stack.deployer_token()))
    except (consul_api.ConsulError, StepFailed):
        serving = None
    if serving is None:
        return (f"the alias {key} could not be read; `./bg rollback {settings.name} --stack "
                f"{stack.name}` records what serves once Consul answers")
    stack.set_service(settings.name, {"live": serving})
    return f"the alias {key} names {serving}, which serves; {file} says live: {serving} again"
