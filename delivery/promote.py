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

from components.consul import api as consul_api
from components.consul.records import read_service_records
from components.model.live import serving_colour
from components.model.validation import ConfigError
from components.naming import offline_colour

from . import REPO
from .flip import FlipRefused, Move, flip_together
from .stacks import EnvStack, stack_for_service
from .steps import StepFailed


def stack_of(stack: str, service: str) -> str:
    """The stack deploying `service`: the service stack of `stack` that deploys it, else `stack`."""
    return stack_for_service(stack, service)


def runs_as_configured(records, colour: str, version: str, environment: dict[str, str]) -> bool:
    """Whether Consul records `colour` running `version` with these `env` overrides."""
    ran = records.configs.get(colour)
    return records.slots.get(colour) == version and (ran is None or ran.get("env") == environment)


def plan(stack: str, services: list[str]) -> tuple[list[Move], dict[str, EnvStack], list[str]]:
    """The moves, the stacks they touch, and one line per service saying what it will do."""
    moves, stacks, lines = [], {}, []
    for service in services:
        name = stack_of(stack, service)
        env = stacks.setdefault(name, EnvStack(name, os.path.join(REPO, "reports", f"promote-{stack}.log")))
        config, settings = env.config(), env.service(service)
        if settings is None:
            raise StepFailed(f"stack {name} does not deploy {service}")
        records = read_service_records(config.hosts[settings.hosts[0]].consul, config.environment,
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
    return moves, stacks, lines


def run_promote(stack: str, services: list[str], dry_run: bool = False, out=None) -> int:
    out = out or sys.stdout
    start = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - start:5.2f}s] {message}", file=out, flush=True)

    if len(set(services)) != len(services) or not services:
        print("promote: name each service once", file=out)
        return 2
    try:
        moves, stacks, lines = plan(stack, services)
    except (StepFailed, ConfigError, consul_api.ConsulError) as error:
        print(f"promote: {error}", file=out)
        return 2
    say(f"release of {len(moves)} service(s) in {moves[0].config.environment}:")
    for line in lines:
        say(f"  {line}")
    if dry_run:
        say("dry run: nothing was changed")
        return 0
    try:
        flip_together(moves)
    except (FlipRefused, consul_api.ConsulError) as error:
        print(f"promote REFUSED: {error}\nno alias moved", file=out)
        return 1
    say("every alias moved in one transaction; the proxy serves the new colours")
    failed = []
    for name, env in stacks.items():
        for move in moves:
            if stack_of(stack, move.settings.name) == name:
                env.set_service(move.settings.name, {"live": move.colour})
        try:
            env.up(f"promote {' '.join(services)}")
            say(f"stacks/Pulumi.{name}.yaml records the new live colours; pulumi up converged")
        except StepFailed as error:
            failed.append(f"{name}: {error}")
    if failed:
        print("promote: the aliases moved, but converging failed for " + "; ".join(failed)
              + "\nrun `./bg pulumi up --stack <stack> --yes` for each", file=out)
        return 1
    return 0
