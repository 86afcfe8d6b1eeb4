"""Moving aliases outside `pulumi up`, safely: every target colour's checks first, then one Consul
transaction with a check-and-set per alias, so either every alias moves or none does, and none
overwrites a flip made meanwhile; each service's bake record is written in the same transaction,
and its split ends there.
Each move's audit record goes in that transaction too: the trail holds a flip exactly when it
happened. Used by `rollback` (one service) and `promote` (several)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from bluegreen.components.consul import api as consul_api
from bluegreen.components.consul import hooks
from bluegreen.components.consul.checks import wait_for_gate
from bluegreen.components.model.audit import Operator, audit_record
from bluegreen.components.model.bake import flip_record
from bluegreen.components.model.config import ServiceConfig, StackConfig
from bluegreen.components.model.hooks import FLIP, ROLLBACK, flip_payload
from bluegreen.components.model.release import release_version, went_live
from bluegreen.components.model.split import split_value
from bluegreen.components.naming import alias_key, bake_key, history_prefix, split_key

from . import audit
from .preview_gate import check_preview

# How long a flip waits for the target colour's checks before giving up (it moves nothing then):
# they normally pass already, since that colour kept running.
GATE_S = 10


class FlipRefused(Exception):
    """Nothing was changed; the message says why and what to do."""


class FlipVetoed(FlipRefused):
    """A hook or the approval gate kept the flip from happening (model.hooks); nothing changed."""


@dataclass(frozen=True)
class Move:
    config: StackConfig
    settings: ServiceConfig
    colour: str                    # the colour that goes live
    expected: str                  # the colour the alias must say now
    token: str = field(default="", repr=False)   # the deployer's Consul token
    previous_version: str | None = None          # what `expected` runs (Consul's slot record)
    release: str | None = None                   # the release id `colour` runs (its history key)
    digest: str | None = None                    # the image reference `colour` runs, if known

    @property
    def key(self) -> str:
        return alias_key(self.config.environment, self.settings.name)

    def bake(self, now: datetime.datetime) -> str | None:
        """The bake record this move writes with the alias (None: no bake time, no record)."""
        previous = self.settings.colours.get(self.expected)
        return flip_record(self.settings, self.colour, self.expected,
                           self.previous_version or (previous.version if previous else None), now)

    def audited(self, who: Operator, reason: str, now: datetime.datetime) -> tuple[str, str]:
        """The audit trail's record of this move (key, value)."""
        version = self.settings.colours[self.colour].version if self.colour in self.settings.colours else None
        record = audit_record(event="flip", environment=self.config.environment,
                              service=self.settings.name, operator=who, now=now,
                              before=self.expected, after=self.colour,
                              version=release_version(self.release) if self.release else version,
                              release=self.release, reason=reason)
        return audit.entry(record, now)

    def payload(self, event: str, actor: str) -> dict:
        """What the service's hooks and notifications hear of this move (model.hooks)."""
        version = self.settings.colours[self.colour].version if self.colour in self.settings.colours else None
        return flip_payload(event=event, service=self.settings.name,
                            environment=self.config.environment, before=self.expected,
                            after=self.colour, version=release_version(self.release)
                            if self.release else version, digest=self.digest, actor=actor,
                            stack=self.config.stack)

    @property
    def consul(self) -> str:
        return self.config.service_host(self.settings).consul


def check_colour(move: Move) -> float:
    """Waits (up to GATE_S) until every instance of the target colour passes its checks."""
    config, settings = move.config, move.settings
    instances = config.colour_instances(settings, move.colour)
    try:
        return wait_for_gate(instances, GATE_S, f"{config.environment}/{settings.name}/{move.colour}",
                             move.token, settings.name)
    except RuntimeError as error:
        raise FlipRefused(str(error)) from None


def flip_together(moves: list[Move], who: Operator | None = None, reason: str = "",
                  event: str = FLIP, say=print) -> None:
    """Checks every target colour (and its preview traffic, if asked) and asks each service's hooks (model.hooks: a veto or a held
    flip that times out raises FlipRefused), then writes every alias in one check-and-set
    transaction (with an audit record per move when `who` is given), then tells the hooks and
    prunes the trail."""
    for move in moves:
        check_colour(move)
        _previewed(move, event == ROLLBACK, say)
    actor = who.actor if who is not None else "unknown"
    for move in moves:
        _asked(move, move.payload(event, actor), say)
    consuls = {move.consul for move in moves}
    if len(consuls) != 1:
        raise FlipRefused(f"the services' aliases are reached through different Consul agents "
                          f"({', '.join(sorted(consuls))}); flip them from one environment")
    consul = consuls.pop()
    token = moves[0].token
    writes, bakes = {}, {}
    now = datetime.datetime.now(datetime.timezone.utc)
    for move in moves:
        current, index = consul_api.kv_get_indexed(consul, move.key, token)
        if current != move.expected:
            raise FlipRefused(f"the alias {move.key} says {current}, not {move.expected}: someone "
                              f"flipped it meanwhile; nothing was changed")
        writes[move.key] = (move.colour, index)
        # The bake record goes with the flip it describes; a flip without bake time ends any other.
        bakes[bake_key(move.config.environment, move.settings.name)] = move.bake(now)
        # A flip ends a split (its cohorts stay): no share of the new live colour's traffic
        # goes back to the colour it left.
        bakes[split_key(move.config.environment, move.settings.name)] = \
            split_value(move.settings.split.with_percent(0), move.colour)
        # So does the history: the release that goes live says when.
        history = history_prefix(move.config.environment, move.settings.name) + \
            (move.release or move.settings.colours[move.colour].version)
        entry = went_live(consul_api.kv_get(consul, history, token), now)
        if entry:
            bakes[history] = entry
        if who is not None:
            bakes.update([move.audited(who, reason, now)])
    if not consul_api.kv_cas_many(consul, writes, token, bakes):
        raise FlipRefused("an alias changed while flipping; nothing was changed")
    for move in moves:
        hooks.after_flip(move.settings.hooks, move.payload(event, actor), say)
    for move in moves if who is not None else ():
        _pruned(move, token, now)


def _previewed(move: Move, rollback: bool, say) -> None:
    """The target colour's preview traffic, when its service asks for it (gate.previewTraffic)."""
    refusal, judged = check_preview(move.config, move.settings, move.colour, rollback)
    if judged:
        say(judged)
    if refusal:
        raise FlipRefused(f"{refusal}; nothing was changed")


def _asked(move: Move, payload: dict, say) -> None:
    """The before-flip hook and the approval gate of a move (nothing to ask: returns at once)."""
    if not move.settings.hooks.gated:
        return
    try:
        hooks.before_flip(move.settings.hooks, payload, move.consul, move.token, say)
    except hooks.FlipVetoed as error:
        raise FlipVetoed(f"{error}; nothing was changed") from None


def _pruned(move: Move, token: str, now: datetime.datetime) -> None:
    """The trail past its retention goes; a failure to prune leaves it for the next write."""
    try:
        audit.prune(move.consul, token, move.config.environment, move.settings.name, now,
                    move.config.audit_retention_s)
    except consul_api.ConsulError:
        pass
