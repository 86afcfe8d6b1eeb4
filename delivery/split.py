"""`split`: part of a service's stable traffic on its offline colour, sticky per client
(model.split). 0 ends the split; 100 is a flip, through the flip's gate (delivery/flip.py), which
ends the split too.

The split is one record in Consul KV (naming.split_key), written in one transaction that checks
the alias still names the colour read here; a share above 0 is written only once the offline
colour's checks pass. The proxy applies it without a reload. Then the stack file records it
(`split.percent`, or `live:` for a flip) and `pulumi up` converges, so the stack agrees with what
serves. Nothing here touches a container: a split only moves traffic."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from bluegreen.components.consul import api as consul_api
from bluegreen.components.consul.records import ServiceRecords, read_service_records
from bluegreen.components.model.audit import Operator
from bluegreen.components.model.live import serving_colour
from bluegreen.components.model.split import describe, share, split_value
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import alias_key, offline_colour, split_key

from . import REPO, audit
from .flip import FlipRefused, FlipVetoed, Move, check_colour, flip_together
from .lock import LockHeld, service_lock
from .promote import runs_as_configured
from .stacks import EnvStack, consul_address, stack_for_service
from .steps import StepFailed


@dataclass(frozen=True)
class SplitPlan:
    """What `split` does: the move it would make (the offline colour, its release) and the shares."""

    move: Move
    percent: int
    before: int                   # the share the record gives the offline colour now

    @property
    def service(self) -> str:
        return self.move.settings.name

    def line(self, records: ServiceRecords) -> str:
        live, target = self.move.expected, self.move.colour
        return (f"{self.service}: live {live} ({records.running.get(live)}), offline {target} "
                f"({records.running.get(target)}): {self.before}% -> {self.percent}% of the stable "
                f"traffic to {target}" + (" (a flip)" if self.percent == 100 else ""))


def plan_split(stack: EnvStack, service: str, percent: int) -> tuple[SplitPlan, ServiceRecords]:
    """Reads Consul's records; raises StepFailed when the offline colour cannot take traffic."""
    config, settings = stack.config(), stack.service(service)
    if settings is None:
        raise StepFailed(f"stack {stack.name} does not deploy {service}")
    records = read_service_records(consul_address(config, service), config.environment, service,
                                   stack.deployer_token())
    live = serving_colour(records.live)
    if live is None:
        raise StepFailed(f"{service} has never gone live on {stack.name} (its alias names no colour): "
                         f"`pulumi up` the stack first")
    target = offline_colour(live)
    slot = settings.colours.get(target)
    if slot is None or not runs_as_configured(records, target, slot.version, slot.environment):
        raise StepFailed(f"{service}'s offline colour {target} does not run what "
                         f"stacks/Pulumi.{stack.name}.yaml says (it runs "
                         f"{records.running.get(target) or 'nothing'}): deploy a version there "
                         f"and `pulumi up` the stack {stack.name} first")
    move = Move(config, settings, colour=target, expected=live, token=stack.deployer_token(),
                previous_version=records.slots.get(live), release=records.running.get(target))
    return SplitPlan(move, percent, share(records.split, live)[1]), records


def write_share(plan: SplitPlan) -> None:
    """The split record, in one transaction that checks the alias still names the live colour."""
    move = plan.move
    alias, index = consul_api.kv_get_indexed(move.consul, move.key, move.token)
    if alias != move.expected:
        raise FlipRefused(f"the alias {move.key} says {alias}, not {move.expected}: someone flipped "
                          f"it meanwhile; nothing was changed")
    value = split_value(move.settings.split.with_percent(plan.percent), move.expected)
    key = split_key(move.config.environment, plan.service)
    if not consul_api.kv_cas_many(move.consul, {}, move.token, {key: value}, unchanged={move.key: index}):
        raise FlipRefused(f"the alias {move.key} changed while splitting; nothing was changed")


def run_split(service: str, stack_name: str, percent: int, dry_run: bool = False, out=None,
              who: Operator | None = None, lock_wait_s: float = 0.0) -> int:
    """Holds the service's deploy lock (a dry run none) from reading Consul to the end of `pulumi up`."""
    out = out or sys.stdout
    who = who or audit.operator(f"split {service} --stack {stack_name} --percent {percent}")
    log = os.path.join(REPO, "reports", f"split-{service}-{stack_name.rsplit('/', 1)[-1]}.log")
    trail = None
    try:
        stack = EnvStack(stack_for_service(stack_name, service), log)
        trail = audit.Trail.of(stack, service, who, out)
        if dry_run:
            return _split(stack, service, percent, trail, out, dry_run=True)
        with service_lock(stack, service, who, lock_wait_s, out):
            return _split(stack, service, percent, trail, out)
    except (StepFailed, ConfigError, LockHeld, FlipRefused, consul_api.ConsulError) as error:
        print(f"split REFUSED: {error}\nno traffic moved", file=out)
        if trail is not None:
            trail.record("vetoed" if isinstance(error, FlipVetoed) else "refused", service,
                         reason=str(error))
        return 2


def _split(stack: EnvStack, service: str, percent: int, trail: audit.Trail, out,
           dry_run: bool = False) -> int:
    start = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - start:5.2f}s] {message}", file=out, flush=True)

    plan, records = plan_split(stack, service, percent)
    say(plan.line(records))
    if dry_run:
        say("dry run: nothing was changed")
        return 0
    _move_traffic(plan, stack, trail, say)
    try:
        stack.up(f"split {service} {percent}%")
    except StepFailed as error:
        print(f"split: the traffic moved, but converging failed: {error}\nrun `./bg pulumi up "
              f"--stack {stack.name} --yes`", file=out)
        trail.record("failed", service, before=plan.move.expected, after=plan.move.colour,
                     release=plan.move.release, reason=f"converging failed: {error}")
        return 1
    say(f"stacks/Pulumi.{stack.name}.yaml records it; pulumi up converged")
    return 0


def _move_traffic(plan: SplitPlan, stack: EnvStack, trail: audit.Trail, say) -> None:
    """The flip (100%), or the gate (above 0%) and the split record; then the stack file."""
    move = plan.move
    if plan.percent == 100:
        flip_together([move], trail.operator, f"split of {plan.service} to 100%", say=say)
        say(f"alias {alias_key(move.config.environment, plan.service)}: {move.expected} -> "
            f"{move.colour}; the split ended with the flip")
        stack.set_service(plan.service, {"live": move.colour})
        return
    if plan.percent:
        waited = check_colour(move)
        say(f"{move.colour}'s instances pass their checks ({waited:.2f}s)")
    write_share(plan)
    trail.record("split", plan.service, before=move.expected, after=move.colour,
                 release=move.release, version=move.settings.colours[move.colour].version,
                 reason=f"{plan.before}% -> {plan.percent}% of the stable traffic to {move.colour}")
    split = move.settings.split.with_percent(plan.percent)
    say(f"split record written ({describe(split, move.colour)}); the proxy applies it without a reload")
    stack.set_service(plan.service, {"split.percent": plan.percent})
