"""Bake time: after a flip, the platform's watchdog watches the new colour for `bakeTime` and flips
the alias back on a breach. Pure decisions of the deploying side; the record is naming.bake_record
(the watchdog reads it from naming.bake_key), and the watchdog is images/consul/watchdog.py."""

from __future__ import annotations

import datetime
import json

from components.model.config import ServiceConfig
from components.model.release import suggest_next
from components.model.validation import ConfigError
from components.naming import COLOURS, bake_key, bake_record


def flips(live_before: str | None, live: str) -> bool:
    """Whether an update moves the alias from one colour to the other (a first deployment has no
    colour to go back to, so it is not a flip)."""
    return live_before in COLOURS and live_before != live


def flip_record(settings: ServiceConfig, colour: str, previous: str, previous_version: str | None,
                now: datetime.datetime) -> str | None:
    """The bake record a flip of `settings`' alias from `previous` to `colour` writes, as JSON, or
    None when the service has no bake time. Shared by `pulumi up` and the flips outside it."""
    if not settings.bake_s:
        return None
    return json.dumps(bake_record(
        colour=colour, previous=previous, version=settings.colours[colour].version,
        previous_version=previous_version, since=now, bake_s=settings.bake_s,
        max_error_rate=settings.bake_max_error_rate,
        traffic={"minSuccessRate": settings.bake_min_success_rate,
                 "maxP99S": settings.bake_max_p99_s, "windowS": settings.bake_window_s}),
        sort_keys=True)


def disagreement(stack_file: str, environment: str, settings: ServiceConfig,
                 live_before: str | None, bake: str | None) -> ConfigError | None:
    """The error when the watchdog rolled back the release the stack still wants live: the
    update would flip it live again without anyone deciding so."""
    if not bake or not flips(live_before, settings.live):
        return None
    record = json.loads(bake)
    colour = settings.live
    if record.get("status") != "rolled-back" or record.get("colour") != colour \
            or record.get("version") != settings.colours[colour].version:
        return None
    name, version = settings.name, record["version"]
    return ConfigError(
        stack_file, f"bluegreen.services.{name}.live",
        f"{colour} ({name} {version}) was rolled back to {record.get('previous')} by the bake "
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
