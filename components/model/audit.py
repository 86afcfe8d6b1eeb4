"""The audit trail: who moved what, when and why. Pure: the records, which of them a retention
time lets go, and how a listing reads; the delivery commands write and read them in Consul KV
(naming.audit_prefix: one key per event, named by its time)."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from bluegreen.components.naming import audit_prefix, audit_stamp, audit_stamp_time, format_time

# flip: an alias moved; rollback and promote: what the command did; failed: a command that
# stopped partway; refused: one that changed nothing (a held lock, a plan that cannot be carried
# out); unlocked: a deploy lock released by hand; vetoed: a flip a hook or the approval gate
# kept from happening (model.hooks); approved: a held flip approved with `./bg approve`.
EVENTS = ("flip", "rollback", "promote", "split", "failed", "refused", "unlocked", "vetoed",
          "approved")


@dataclass(frozen=True)
class Operator:
    """Who runs a command, and the command as typed."""

    actor: str
    command: str


def actor_name(environ: Mapping[str, str], user: str, host: str) -> str:
    """BLUEGREEN_ACTOR when set (a CI job names its pipeline run), else user@host."""
    return environ.get("BLUEGREEN_ACTOR") or f"{user}@{host}"


def audit_record(*, event: str, environment: str, service: str, operator: Operator,
                 now: datetime.datetime, before: str | None = None, after: str | None = None,
                 version: str | None = None, release: str | None = None, reason: str = "") -> dict[str, Any]:
    """One event of the trail; `before` and `after` are the alias's colours around it."""
    if event not in EVENTS:
        raise ValueError(f"audit event must be one of {EVENTS}, got {event!r}")
    return {"event": event, "at": format_time(now), "actor": operator.actor,
            "command": operator.command, "environment": environment, "service": service,
            "from": before, "to": after, "version": version, "release": release or version,
            "reason": reason}


def audit_key(record: dict[str, Any], now: datetime.datetime, suffix: str) -> str:
    """Where a record goes: under its service's prefix, named by `now` (and `suffix`)."""
    return audit_prefix(record["environment"], record["service"]) + audit_stamp(now, suffix)


def expired(keys: Iterable[str], now: datetime.datetime, retention_s: float) -> list[str]:
    """The audit keys older than the retention time (keys that are no audit stamp are kept)."""
    oldest = now - datetime.timedelta(seconds=retention_s)
    return [key for key in keys
            if (moment := audit_stamp_time(key.rsplit("/", 1)[-1])) is not None and moment < oldest]


def since(entries: Mapping[str, str], now: datetime.datetime,
          look_back_s: float | None) -> list[dict[str, Any]]:
    """The records (key -> JSON) of the last `look_back_s` seconds (None: all), oldest first;
    a value that is no JSON object is shown as such rather than dropped."""
    oldest = None if look_back_s is None else now - datetime.timedelta(seconds=look_back_s)
    records = []
    for key in sorted(entries, key=lambda k: k.rsplit("/", 1)[-1]):
        moment = audit_stamp_time(key.rsplit("/", 1)[-1])
        if moment is None or (oldest is not None and moment < oldest):
            continue
        records.append(_parsed(key, entries[key]))
    return records


def _parsed(key: str, value: str) -> dict[str, Any]:
    try:
        record = json.loads(value)
    except ValueError:
        record = None
    if isinstance(record, dict):
        return record
    return {"event": "?", "at": key.rsplit("/", 1)[-1], "reason": f"unreadable record at {key}"}


COLUMNS = ("at", "service", "event", "move", "version", "actor", "command")
HEADINGS = ("TIME (UTC)", "SERVICE", "EVENT", "FROM -> TO", "VERSION", "ACTOR", "COMMAND / REASON")


def _cells(record: dict[str, Any]) -> tuple[str, ...]:
    move = "" if not (record.get("from") or record.get("to")) else \
        f"{record.get('from') or '-'} -> {record.get('to') or '-'}"
    what = record.get("command") or ""
    if record.get("reason"):
        what = f"{what}: {record['reason']}" if what else record["reason"]
    return (record.get("at", ""), record.get("service", ""), record.get("event", ""), move,
            record.get("release") or record.get("version") or "", record.get("actor", ""), what)


def audit_lines(records: list[dict[str, Any]]) -> list[str]:
    """A table of records, one line each, under a heading (the last column is not padded)."""
    rows = [HEADINGS, *map(_cells, records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADINGS) - 1)]
    return ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[-1]]).rstrip()
            for row in rows]
