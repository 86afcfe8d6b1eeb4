"""Which of the platform's watchdogs acts: the one whose Consul session holds the leader key
(naming.watchdog_lock_key). Pure and standard library only (the consul image's watchdog imports it).

Each watchdog registers itself with its host's agent as a service whose TCP check the agent runs
against a port the watchdog listens on, with a TTL check its heartbeat passes while its main loop
makes progress, and makes a session tied to both and to its node's serfHealth: the process dying
(its port closes), hanging or frozen (its TTL lapses; a frozen process's port still accepts) or
its host going (the node's gossip fails) invalidates the session, and Consul deletes the key with it. The others block on the key and
acquire it once it is gone. Every write of the holder carries a check-session on the key in its
transaction, so a watchdog that lost the key (and does not know yet) writes nothing."""

from __future__ import annotations

import json
from typing import Any

LEAD, ACQUIRE, STANDBY, NEW_SESSION = "lead", "acquire", "standby", "new-session"
WATCHDOGS = 2                    # a platform's watchdogs: one acts, one stands by
SERVICE = "bluegreen-watchdog"   # each watchdog's registration with its host's agent
CHECK_INTERVAL_S = 1             # how often the agent checks that a watchdog's port answers
PROGRESS_TTL_S = 4               # a watchdog whose heartbeat stops this long loses the key
HEARTBEAT_S = 1                  # how often a watchdog passes its progress check
# Consul's default lock delay (15 s) would keep a freed key from being taken for longer than a
# takeover may last; the check-session guard on every write makes the delay unnecessary.
LOCK_DELAY = "0s"


def check_id(ident: str) -> str:
    return f"{ident}-alive"


def progress_check_id(ident: str) -> str:
    return f"{ident}-progress"


def registration(ident: str, port: int) -> dict[str, Any]:
    """The watchdog's service registration (PUT /v1/agent/service/register): a TCP check on the
    port it listens on and a TTL check its heartbeat passes, both passing from the start (the
    port already answers), so a session can be made at once. A watchdog that never comes back
    leaves the catalogue after a minute."""
    return {"ID": ident, "Name": SERVICE, "Tags": [ident], "Checks": [
        {"CheckID": check_id(ident), "Name": f"{ident} is running", "TCP": f"127.0.0.1:{port}",
         "Interval": f"{CHECK_INTERVAL_S}s", "Timeout": f"{CHECK_INTERVAL_S}s", "Status": "passing",
         "DeregisterCriticalServiceAfter": "1m"},
        {"CheckID": progress_check_id(ident), "Name": f"{ident} makes progress",
         "TTL": f"{PROGRESS_TTL_S}s", "Status": "passing", "DeregisterCriticalServiceAfter": "1m"}]}


def session_body(ident: str) -> dict[str, Any]:
    """The session that holds the key (PUT /v1/session/create on the watchdog's agent): it ends
    with either of the watchdog's checks or its node, and takes the key with it."""
    return {"Name": ident, "NodeChecks": ["serfHealth"],
            "ServiceChecks": [{"ID": check_id(ident)}, {"ID": progress_check_id(ident)}],
            "LockDelay": LOCK_DELAY, "Behavior": "delete"}


def step(own: str | None, holder: str | None) -> str:
    """What a watchdog does on reading the key. own: its session (None: it has no valid one);
    holder: the session holding the key (None: nobody)."""
    if own is None:
        return NEW_SESSION
    if holder is None:
        return ACQUIRE
    return LEAD if holder == own else STANDBY


def holder_record(ident: str, host: str, since: str) -> str:
    """The key's value: which watchdog acts, on which host, since when (naming.format_time)."""
    return json.dumps({"watchdog": ident, "host": host, "since": since}, sort_keys=True)
