"""The HTTP side of model.hooks, called where a flip happens (the Alias resource's write and
delivery.flip's transaction): ask the before-flip hook, hold a `confirm: manual` flip until
`./bg approve` writes its approval in Consul KV (naming.approval_key), and tell the after-flip or
rollback hook and the notification webhook once it landed. A veto or a held flip that times out
raises FlipVetoed before anything is written; telling never raises."""

from __future__ import annotations

import datetime
import json
import time
from typing import Callable

import requests

from bluegreen.components.consul import api as consul_api
from bluegreen.components.model.hooks import (
    MANUAL, NOTIFY_TIMEOUT_S, ROLLBACK, VETOED, Answer, Hooks, answer, approve_command, approves,
    describe, notification, veto_message, waiting_record
)
from bluegreen.components.naming import approval_key, format_time

Say = Callable[[str], None]
POLL_S = 10.0      # one blocking read of the approval key waits at most this


class FlipVetoed(RuntimeError):
    """A hook or the approval gate kept a flip from happening; nothing was written."""


def ask(url: str, payload: dict, timeout_s: float) -> Answer:
    """The before-flip hook's decision (model.hooks.answer) on this payload."""
    try:
        response = requests.post(url, json=payload, timeout=timeout_s)
    except requests.Timeout:
        return answer(None, "", f"no answer within {timeout_s:g}s")
    except requests.RequestException as error:
        return answer(None, "", f"no answer: {type(error).__name__}")
    return answer(response.status_code, response.text)


def tell(url: str | None, body: dict, say: Say) -> None:
    """POSTs `body` to `url` (if any) within a few seconds; a failure is said, never raised."""
    if not url:
        return
    try:
        response = requests.post(url, json=body, timeout=NOTIFY_TIMEOUT_S)
        if response.status_code >= 300:
            say(f"hooks: {url} answered {response.status_code} (ignored)")
    except requests.RequestException as error:
        say(f"hooks: {url} was not told ({type(error).__name__}; ignored)")


def before_flip(hooks: Hooks, payload: dict, consul: str, token: str, say: Say) -> None:
    """Returns when the flip may go; raises FlipVetoed (after notifying) when it may not."""
    approved = False
    if hooks.before:
        got = ask(hooks.before, payload, hooks.timeout_s)
        if not got.allowed:
            _vetoed(hooks, payload, veto_message(payload, "the beforeFlip hook", got.reason),
                    f"beforeFlip {got.reason}", say)
        approved = got.approved
        say(f"hooks: beforeFlip {got.reason}{' and approved' if approved else ''}: the flip may go")
    if hooks.confirm == MANUAL and not approved:
        wait_for_approval(hooks, payload, consul, token, say)


def _vetoed(hooks: Hooks, payload: dict, message: str, reason: str, say: Say) -> None:
    """Notifies the veto, then raises it."""
    tell(hooks.notify, notification({**payload, "event": VETOED}, reason), say)
    raise FlipVetoed(message)


def wait_for_approval(hooks: Hooks, payload: dict, consul: str, token: str, say: Say) -> None:
    """Writes what the flip would do under the approval key and waits (up to confirmTimeout)
    until `./bg approve` marks it approved; the key goes either way."""
    key = approval_key(payload["environment"], payload["service"])
    now = datetime.datetime.now(datetime.timezone.utc)
    consul_api.kv_put(consul, key, json.dumps(waiting_record(payload, format_time(now))), token)
    told = f"waits for approval (up to {hooks.confirm_timeout_s:g}s): run {approve_command(payload)}"
    say(f"confirm: the flip of {describe(payload)} {told}")
    tell(hooks.notify, {"text": f"bluegreen: flip held: {describe(payload)} {told}"}, say)
    try:
        by = _approved_by(key, payload, consul, token, time.monotonic() + hooks.confirm_timeout_s)
    finally:
        consul_api.kv_delete(consul, key, token)
    if by is None:
        _vetoed(hooks, payload, f"no approval of the flip of {payload['service']} in "
                f"{payload['environment']} {payload['from']} -> {payload['to']} came within "
                f"{hooks.confirm_timeout_s:g}s (confirm: manual); traffic stays on {payload['from']}; "
                f"to flip, run the command again and {approve_command(payload)} while it waits",
                "no approval", say)
    say(f"confirm: approved by {by}")


def _approved_by(key: str, payload: dict, consul: str, token: str, deadline: float) -> str | None:
    """Who approved the flip, or None when the deadline passed first (blocking reads)."""
    index = 0
    while True:
        entry, index = consul_api.kv_entry(consul, key, token, index,
                                           wait_s=min(POLL_S, max(0.0, deadline - time.monotonic())))
        record = _record(entry.value) if entry else None
        if approves(record, payload):
            return str(record.get("approvedBy"))
        if time.monotonic() >= deadline:
            return None


def _record(value: str) -> dict | None:
    try:
        record = json.loads(value)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def after_flip(hooks: Hooks, payload: dict, say: Say) -> None:
    """Tells the afterFlip (or rollback) hook and the notification webhook; never raises."""
    tell(hooks.rollback if payload["event"] == ROLLBACK else hooks.after, payload, say)
    tell(hooks.notify, notification(payload), say)
