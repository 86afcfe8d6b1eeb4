"""Bake time: after a flip, the platform's watchdog watches the new colour for `bakeTime` and flips
the alias back on a breach. Pure decisions of the deploying side; the record is naming.bake_record
(the watchdog reads it from naming.bake_key), and the watchdog is images/consul/watchdog.py."""

from __future__ import annotations

import datetime
import json
from typing import TYPE_CHECKING, Any, TypeGuard

from bluegreen.components.model.config import ServiceConfig
from bluegreen.components.model.release import suggest_next
from bluegreen.components.model.rollout import is_rolling_to, rolling_record
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import COLOURS, bake_key, bake_outcome, bake_record

if TYPE_CHECKING:   # the records are read by components.consul; this module stays pure
    from bluegreen.components.consul.records import ServiceRecords


def flips(live_before: str | None, live: str) -> TypeGuard[str]:
    """Whether an update moves the alias from one colour to the other (a first deployment has no
    colour to go back to, so it is not a flip)."""
    return live_before in COLOURS and live_before != live


def flip_record(settings: ServiceConfig, colour: str, previous: str, previous_version: str | None,
                now: datetime.datetime) -> str | None:
    """The bake record a flip of `settings`' alias from `previous` to `colour` writes, as JSON, or
    None when the service has no bake time. Shared by `pulumi up` and the flips outside it."""
    if not settings.bake_s:
        return None
    return bake_start(settings, colour, previous, previous_version, now)


def bake_start(settings: ServiceConfig, colour: str, previous: str, previous_version: str | None,
               now: datetime.datetime) -> str:
    """The bake record (JSON) of a flip to `colour` of a service with a bake time."""
    return json.dumps(bake_record(
        colour=colour, previous=previous, version=settings.colours[colour].version,
        previous_version=previous_version, since=now, bake_s=settings.bake_s,
        max_error_rate=settings.bake_max_error_rate, traffic=traffic_bounds(settings)),
        sort_keys=True)


def rollout_start(settings: ServiceConfig, previous: str, previous_version: str | None,
                  now: datetime.datetime) -> str:
    """The record a flip through a rollout writes (JSON): the bake record of the flip to
    `settings.live`, not flipped yet (model.rollout.rolling_record)."""
    rollout = settings.rollout
    if rollout is None:
        raise ValueError(f"service {settings.name} has no rollout: only a flip through one starts it")
    record = bake_record(
        colour=settings.live, previous=previous, version=settings.colours[settings.live].version,
        previous_version=previous_version, since=now, bake_s=settings.bake_s or rollout.step_s,
        max_error_rate=settings.bake_max_error_rate, traffic=traffic_bounds(settings))
    return json.dumps(rolling_record(record, rollout, settings.bake_s), sort_keys=True)


def traffic_bounds(settings: ServiceConfig) -> dict[str, Any]:
    """What a bake or rollout asks of the real traffic (the record's `traffic`)."""
    return {"minSuccessRate": settings.bake_min_success_rate, "maxP99S": settings.bake_max_p99_s,
            "windowS": settings.bake_window_s}


def rolls_out(settings: ServiceConfig, records: ServiceRecords) -> bool:
    """Whether this update starts a rollout: it flips, the service has one, and none of this
    release to that colour is under way already."""
    return settings.rollout is not None and flips(records.live, settings.live) and \
        not rolling(settings, records)


def rolling(settings: ServiceConfig, records: ServiceRecords) -> bool:
    """Whether a rollout of the stack's live colour and version is under way (the watchdog's)."""
    record = json.loads(records.bake) if records.bake else None
    colour = settings.live
    return colour in settings.colours and flips(records.live, colour) and \
        is_rolling_to(record, colour, settings.colours[colour].version)


def rollout_cancelled(settings: ServiceConfig, records: ServiceRecords, now: datetime.datetime) -> str | None:
    """The record (JSON) that ends a rollout under way when the stack asks for the colour that
    serves again (live: back to it): `superseded`, so the watchdog lets it go; else None."""
    record = json.loads(records.bake) if records.bake else None
    if not record or record.get("status") != "rolling" or flips(records.live, settings.live):
        return None
    return json.dumps(bake_outcome(record, "superseded", now, f"the stack asks live: {settings.live} "
                                   "again: the rollout was called off"), sort_keys=True)


def alias_colour(settings: ServiceConfig, records: ServiceRecords) -> str:
    """The colour the alias names after this update: the stack's `live:`, unless the flip goes
    through a rollout (the watchdog moves the alias once its steps passed)."""
    if settings.rollout is not None and flips(records.live, settings.live):
        return records.live
    return settings.live


def disagreement(stack_file: str, environment: str, settings: ServiceConfig,
                 live_before: str | None, bake: str | None) -> ConfigError | None:
    """The error when the watchdog rolled back the release the stack still wants live: the
    update would flip it live again without anyone deciding so."""
    if not bake or not flips(live_before, settings.live):
        return None
    record = json.loads(bake)
    colour = settings.live
    if record.get("status") not in ("rolled-back", "aborted") or record.get("colour") != colour \
            or record.get("version") != settings.colours[colour].version:
        return None
    name, version = settings.name, record["version"]
    what = "was rolled back to" if record["status"] == "rolled-back" else "had its rollout aborted, on"
    return ConfigError(
        stack_file, f"bluegreen.services.{name}.live",
        f"{colour} ({name} {version}) {what} {record.get('previous')} by the bake "
        f"watchdog at {record.get('endedAt', '?')}: {record.get('reason', 'no reason recorded')} "
        f"(Consul KV {bake_key(environment, name)}); this update would flip it live again, so "
        f"nothing was changed. Accept the rollback with live: {record.get('previous')} (`./bg rollback "
        f"{name}` records it), or ship a "
        f"new version to {colour} (e.g. {colour}.version: {suggest_next(version)}) and flip to that; to "
        f"flip to {version} anyway, delete that record first")


def watchdog_reason(bake: str | None, colour: str) -> str:
    """` (the bake watchdog rolled V back at T: why)` when the bake record says the watchdog moved
    the alias to `colour`, else nothing (what `rollback` says when it finds the alias there)."""
    record = json.loads(bake) if bake else {}
    if record.get("status") != "rolled-back" or record.get("previous") != colour:
        return ""
    return (f" (the bake watchdog rolled {record.get('version')} back at {record.get('endedAt', '?')}: "
            f"{record.get('reason', 'no reason recorded')})")
