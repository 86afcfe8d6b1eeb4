"""The deploy lock of a service in an environment: what its holder records and what a second
comer is told. Pure; the lock itself is a Consul session holding naming.lock_key."""

from __future__ import annotations

import datetime
import json
from typing import Any, Callable

from bluegreen.components.model.audit import Operator
from bluegreen.components.naming import format_time, parse_time

# Consul's shortest session TTL; it invalidates an unrenewed session between one and two TTLs.
LOCK_TTL_S = 10
RENEW_EVERY_S = LOCK_TTL_S / 3
WAIT_STEP_S = 5.0       # the longest blocking query of a waiting command (below the HTTP timeout)


def holder_record(operator: Operator, now: datetime.datetime, pid: int, host: str) -> str:
    """The lock key's value: who holds it, for what, since when, and which process."""
    return json.dumps({"actor": operator.actor, "command": operator.command,
                       "since": format_time(now), "pid": pid, "host": host}, sort_keys=True)


def parse_holder(value: str | None) -> dict[str, Any]:
    try:
        holder = json.loads(value or "")
    except ValueError:
        holder = None
    return holder if isinstance(holder, dict) else {}


def ago(seconds: float) -> str:
    """12s, 3m 04s, 2h 05m: how long a lock has been held."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds // 60 % 60:02d}m"


def holder_text(holder: dict[str, Any], now: datetime.datetime) -> str:
    """`root@ci (./bg rollback vizconfig --stack production) since 2024-05-01T12:00:00Z (12s ago,
    process 4242 on ci)`."""
    if not holder:
        return "a holder that recorded nothing readable"
    since, facts = holder.get("since", ""), []
    try:
        facts.append(f"{ago((now - parse_time(since)).total_seconds())} ago")
    except ValueError:
        pass
    facts.append(f"process {holder.get('pid', '?')} on {holder.get('host', '?')}")
    return (f"{holder.get('actor', '?')} ({holder.get('command', '?')}) since {since or '?'} "
            f"({', '.join(facts)})")


def held_message(service: str, stack: str, environment: str, holder: dict[str, Any],
                 now: datetime.datetime, waited_s: float = 0.0) -> str:
    """What a command that finds the lock taken says; nothing was changed."""
    waited = f" after waiting {ago(waited_s)}" if waited_s >= 1 else ""
    return (f"the deploy lock of {service} in {environment} is held{waited} by "
            f"{holder_text(holder, now)}; nothing was changed. Wait for it with --lock-wait 10m, "
            f"or, if that holder is gone, ./bg lock release {service} --stack {stack}")


def status_line(service: str, environment: str, holder: dict[str, Any] | None, now: datetime.datetime) -> str:
    """`./bg lock status`: one line per service."""
    if holder is None:
        return f"{service} in {environment}: free"
    return f"{service} in {environment}: held by {holder_text(holder, now)}"


def abandoned(holder: dict[str, Any], host: str, alive: Callable[[int], bool]) -> bool:
    """Whether the holder was a process on this machine that is gone (kill -9, a crash): its
    lock may be taken at once instead of waiting for its session to time out. A holder on
    another machine is never judged: its process may be running there."""
    pid = holder.get("pid")
    return holder.get("host") == host and isinstance(pid, int) and pid > 0 and not alive(pid)
