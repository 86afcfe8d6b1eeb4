"""`promote`: an environment-wide release. Several services of one environment flip to their
offline colours together, in one Consul transaction, only after every one of those colours passes
its checks: all aliases move or none does. Then `live:` is recorded in each stack file and each
stack's `pulumi up` converges. Promoting the same set again moves them all back (the colours they
left kept running): that is the release's rollback.

A service is looked up in the stack given (an environment stack), or in the service stack of it
that deploys the service (`bluegreen:environmentStack`)."""

from __future__ import annotations

import os
import sys
import time

from bluegreen.components.consul import api as consul_api
from bluegreen.components.consul.records import read_service_records
from bluegreen.components.model.audit import Operator
from bluegreen.components.model.live import serving_colour
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import offline_colour

from . import REPO, audit
from .flip import FlipRefused, FlipVetoed, Move, flip_together
from .lock import LockHeld, holding, service_lock
from .stacks import EnvStack, stack_for_service
from .steps import StepFailed


def stack_of(stack: str, service: str) -> str:
    """The stack deploying `service`: the service stack of `stack` that deploys it, else `stack`."""
    return stack_for_service(stack, service)


def runs_as_configured(records, colour: str, version: str, environment: dict[str, str]) -> bool:
    """Whether Consul records `colour` running `version` with these `env` overrides."""
    ran = records.configs.get(colour)
    return records.slots.get(colour) == version and (ran is None or ran.get("env") == environment)


def stacks_of(stack: str, services: list[str]) -> dict[str, EnvStack]:
    """service -> the stack deploying it (one EnvStack per stack, shared by its services)."""
    stacks: dict[str, EnvStack] = {}
    log = os.path.join(REPO, "reports", f"promote-{stack}.log")
    for service in services:
        name = stack_of(stack, service)
        stacks[service] = next((env for env in stacks.values() if env.name == name), None) or \
            EnvStack(name, log)
    return stacks


def plan(stack: str, services: list[str],
         stacks: dict[str, EnvStack] | None = None) -> tuple[list[Move], dict[str, EnvStack], list[str]]:
    """The moves, the stacks they touch (by name), and one line per service saying what it will do."""
    moves, lines = [], []
    stacks = stacks or stacks_of(stack, services)
    for service in services:
        env = stacks[service]
        name = env.name
        config, settings = env.config(), env.service(service)
        if settings is None:
            raise StepFailed(f"stack {name} does not deploy {service}")
        records = read_service_records(config.service_host(settings).consul, config.environment,
                                       service, env.deployer_token())
        # The alias says what serves, whatever the stack file's live: asks.
        live = serving_colour(records.live)
        if live is None:
            raise StepFailed(f"{service} has never gone live on {name} (its alias names no "
                             f"colour): `pulumi up` the stack {name} first")
        target = offline_colour(live)
        if target not in settings.colours:
            raise StepFailed(f"{service} has no {target} version on {name}: deploy the release to "
                             f"the offline colour first")
        version = settings.colours[target].version
        if not runs_as_configured(records, target, version, settings.colours[target].environment):
            raise StepFailed(f"{service}'s {target} colour does not run what stacks/Pulumi.{name}.yaml "
                             f"says ({version}, env {settings.colours[target].environment}; it runs "
                             f"{records.running.get(target) or 'nothing'}): `pulumi up` the stack "
                             f"{name} first")
        moves.append(Move(config, settings, colour=target, expected=live,
                          token=env.deployer_token(), previous_version=records.slots.get(live),
                          release=records.running.get(target)))
        lines.append(f"{service} ({name}): {live} {records.running.get(live)} "
                     f"-> {target} {records.running.get(target, version)}")
    environments = {move.config.environment for move in moves}
    if len(environments) != 1:
        raise StepFailed(f"a release flips services of one environment; these are in "
                         f"{', '.join(sorted(environments))}")
    return moves, {env.name: env for env in stacks.values()}, lines


def run_promote(stack: str, services: list[str], dry_run: bool = False, out=None,
                who: Operator | None = None, lock_wait_s: float = 0.0) -> int:
    """Holds the deploy lock of every service (a dry run none) from reading Consul's records to
    the end of every stack's `pulumi up`."""
    out = out or sys.stdout
    who = who or audit.operator(f"promote --stack {stack} {' '.join(services)}")
    if len(set(services)) != len(services) or not services:
        print("promote: name each service once", file=out)
        return 2
    stacks = {}
    try:
        stacks = stacks_of(stack, services)
        locks = [] if dry_run else [service_lock(stacks[s], s, who, lock_wait_s, out) for s in services]
        with holding(locks):
            return _promote(stack, services, stacks, dry_run, who, out)
    except LockHeld as error:
        print(f"promote REFUSED: {error}", file=out)
        _refused({error.service: stacks[error.service]}, who, out, str(error))
        return 2
    except (StepFailed, ConfigError, consul_api.ConsulError) as error:
        print(f"promote: {error}", file=out)
        _refused(stacks, who, out, str(error))
        return 2


def _refused(stacks: dict[str, EnvStack], who: Operator, out, reason: str) -> None:
    for service, env in stacks.items():
        trail = audit.trail_or_none(env, service, who, out)
        if trail:
            trail.record("refused", service, reason=reason)


def _promote(stack: str, services: list[str], stacks: dict[str, EnvStack], dry_run: bool,
             who: Operator, out) -> int:
    start = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - start:5.2f}s] {message}", file=out, flush=True)

    moves, by_name, lines = plan(stack, services, stacks)
    say(f"release of {len(moves)} service(s) in {moves[0].config.environment}:")
    for line in lines:
        say(f"  {line}")
    if dry_run:
        say("dry run: nothing was changed")
        return 0
    try:
        flip_together(moves, who, f"release of {' '.join(services)}", say=say)
    except (FlipRefused, consul_api.ConsulError) as error:
        print(f"promote REFUSED: {error}\nno alias moved", file=out)
        _record(moves, stacks, who, out, "vetoed" if isinstance(error, FlipVetoed) else "refused",
                str(error))
        return 1
    say("every alias moved in one transaction; the proxy serves the new colours")
    failed = _converge(stack, services, moves, by_name, say)
    if failed:
        _record(moves, stacks, who, out, "failed", "converging failed: " + "; ".join(failed))
        print("promote: the aliases moved, but converging failed for " + "; ".join(failed)
              + "\nrun `./bg pulumi up --stack <stack> --yes` for each", file=out)
        return 1
    _record(moves, stacks, who, out, "promote", f"released with {' '.join(services)}")
    return 0


def _converge(stack: str, services: list[str], moves: list[Move], by_name: dict[str, EnvStack],
              say) -> list[str]:
    """Each stack file records its new live colours, and each stack's `pulumi up` converges."""
    failed = []
    for name, env in by_name.items():
        for move in moves:
            if stack_of(stack, move.settings.name) == name:
                env.set_service(move.settings.name, {"live": move.colour})
        try:
            env.up(f"promote {' '.join(services)}")
            say(f"stacks/Pulumi.{name}.yaml records the new live colours; pulumi up converged")
        except StepFailed as error:
            failed.append(f"{name}: {error}")
    return failed


def _record(moves: list[Move], stacks: dict[str, EnvStack], who: Operator, out, event: str,
            reason: str) -> None:
    for move in moves:
        trail = audit.trail_or_none(stacks[move.settings.name], move.settings.name, who, out)
        if trail:
            trail.record(event, move.settings.name, before=move.expected, after=move.colour,
                         release=move.release, version=move.settings.colours[move.colour].version,
                         reason=reason)
