"""Hooks, a manual approval gate and notifications around a flip. Pure and standard library only
(the consul image's watchdog imports it): what a service's stack entry asks for, the JSON payload
every hook and notification gets, what a hook's answer (or its silence) decides, the approval
record `./bg approve` writes, and the Slack-compatible message. The HTTP calls and the wait for
an approval are components/consul/hooks.py's.

- `hooks.beforeFlip` is asked before a flip: a 2xx answer lets it go, anything else (another
  status, `{"allow": false}`, no answer within `hooks.timeout`) vetoes it, and traffic stays where
  it is. `{"approve": true}` in a 2xx answer also approves a flip held by `confirm: manual`.
- `hooks.afterFlip` hears of a flip that landed, `hooks.rollback` of a rollback that landed (the
  command's or the watchdog's); `notify` (a Slack-compatible incoming webhook) hears of both, and
  of a veto. None of these can fail or hold a flip: it has happened."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, TypeGuard
from urllib.parse import urlparse

AUTO, MANUAL = "auto", "manual"
FLIP, ROLLBACK, VETOED = "flip", "rollback", "vetoed"
PAYLOAD_FIELDS = ("event", "service", "environment", "from", "to", "version", "digest", "actor",
                  "stack")
HOOK_TIMEOUT_S = (0.5, 60.0)           # bounds of hooks.timeout
CONFIRM_TIMEOUT_S = (10.0, 86400.0)    # bounds of confirmTimeout
NOTIFY_TIMEOUT_S = 3.0                 # a notification or an after-hook gives up after this
APPROVED, WAITING = "approved", "waiting"
BODY_SHOWN = 200                       # characters of a vetoing answer's body in the message


def url_problem(url: object) -> str | None:
    """Why `url` cannot be a webhook (None: it can)."""
    if not isinstance(url, str):
        return f"{url!r} is not a URL"
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return f"{url!r} is not an http(s) URL"
    return None


@dataclass(frozen=True)
class Hooks:
    """A service's hooks in one environment (all optional)."""

    before: str | None = None          # may veto a flip
    after: str | None = None           # hears of a flip
    rollback: str | None = None        # hears of a rollback
    notify: str | None = None          # Slack-compatible: {"text": ...}
    timeout_s: float = 10.0            # how long `before` may take to answer
    confirm: str = AUTO                # MANUAL: a flip waits for `./bg approve` (or `before`)
    confirm_timeout_s: float = 900.0   # how long a held flip waits

    def __post_init__(self) -> None:
        for name in ("before", "after", "rollback", "notify"):
            url = getattr(self, name)
            if url is not None and url_problem(url):
                raise ValueError(f"hook {name}: {url_problem(url)}")
        if self.confirm not in (AUTO, MANUAL):
            raise ValueError(f"confirm must be {AUTO} or {MANUAL}, got {self.confirm!r}")
        if not HOOK_TIMEOUT_S[0] <= self.timeout_s <= HOOK_TIMEOUT_S[1]:
            raise ValueError(f"hook timeout {self.timeout_s}s is out of range {HOOK_TIMEOUT_S}")
        if not CONFIRM_TIMEOUT_S[0] <= self.confirm_timeout_s <= CONFIRM_TIMEOUT_S[1]:
            raise ValueError(f"confirm timeout {self.confirm_timeout_s}s is out of range")

    @property
    def gated(self) -> bool:
        """Whether a flip asks anyone first."""
        return self.before is not None or self.confirm == MANUAL

    def as_record(self) -> dict[str, Any]:
        """As JSON (resource inputs, the bake record); `from_record` reads it back."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> "Hooks":
        return cls(**{k: v for k, v in (record or {}).items() if k in cls.__dataclass_fields__})


NO_HOOKS = Hooks()


def flip_payload(*, event: str, service: str, environment: str, before: str | None, after: str,
                 version: str | None, digest: str | None, actor: str, stack: str = "") -> dict[str, Any]:
    """What every hook and notification of one flip gets."""
    if event not in (FLIP, ROLLBACK, VETOED):
        raise ValueError(f"hook event must be {FLIP}, {ROLLBACK} or {VETOED}, got {event!r}")
    return {"event": event, "service": service, "environment": environment, "from": before,
            "to": after, "version": version, "digest": digest, "actor": actor, "stack": stack}


@dataclass(frozen=True)
class Answer:
    """What a before-flip hook's answer decides."""

    allowed: bool
    approved: bool = False             # also approves a flip held by `confirm: manual`
    reason: str = ""


def answer(status: int | None, body: str, error: str | None = None) -> Answer:
    """The decision from a hook's HTTP status and body, or from `error` (why there was no answer:
    a timeout, a refused connection), which vetoes: a hook that cannot be asked cannot allow."""
    if error is not None or status is None:
        return Answer(False, reason=error or "no answer")
    said = _json_object(body)
    if not 200 <= status < 300:
        return Answer(False, reason=f"answered {status}" + _said(said, body))
    if said.get("allow") is False:
        return Answer(False, reason="answered allow: false" + _said(said, body))
    return Answer(True, approved=said.get("approve") is True, reason=f"answered {status}")


def _json_object(body: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _said(said: dict[str, Any], body: str) -> str:
    text = said.get("reason") if isinstance(said.get("reason"), str) else body.strip()
    return f": {text[:BODY_SHOWN]}" if text else ""


def veto_message(payload: dict[str, Any], who: str, reason: str) -> str:
    """Why a flip did not happen, saying that traffic stays where it is."""
    return (f"{who} vetoed the flip of {payload['service']} in {payload['environment']} "
            f"{payload['from']} -> {payload['to']} ({reason}); traffic stays on {payload['from']}")


def approve_command(payload: dict[str, Any]) -> str:
    stack = payload.get("stack") or "STACK"
    return f"./bg approve {payload['service']} --stack {stack}"


def waiting_record(payload: dict[str, Any], since: str) -> dict[str, Any]:
    """The approval key's value while a flip waits: what it would do."""
    return {**payload, "status": WAITING, "since": since}


def approval_record(waiting: dict[str, Any], actor: str, at: str) -> dict[str, Any]:
    """The approval key's value once someone approves the flip `waiting` describes."""
    return {**waiting, "status": APPROVED, "approvedBy": actor, "approvedAt": at}


def approves(record: dict[str, Any] | None, payload: dict[str, Any]) -> TypeGuard[dict[str, Any]]:
    """Whether `record` approves this flip (the same move of the same version)."""
    return record is not None and record.get("status") == APPROVED and all(
        record.get(key) == payload.get(key) for key in ("service", "environment", "from", "to", "version"))


def describe(payload: dict[str, Any]) -> str:
    """One line: what moved, which version, who."""
    move = f"{payload.get('from') or '-'} -> {payload['to']}"
    version = f" ({payload['version']})" if payload.get("version") else ""
    return f"{payload['service']} in {payload['environment']}: {move}{version} by {payload['actor']}"


WORDS = {FLIP: "flipped", ROLLBACK: "rolled back", VETOED: "flip vetoed"}


def notification(payload: dict[str, Any], reason: str = "") -> dict[str, Any]:
    """A Slack-compatible incoming-webhook message ({"text": ...}) of one event."""
    text = f"bluegreen: {WORDS[payload['event']]}: {describe(payload)}"
    if payload.get("digest"):
        text += f", digest {payload['digest'].rsplit('@', 1)[-1]}"
    return {"text": text + (f" ({reason})" if reason else "")}
