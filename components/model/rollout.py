"""Progressive rollouts: a flip walked in steps of a split, each judged by the real traffic before
the next (model.analysis), driven by the platform's watchdog so a killed runner never leaves one
halfway. Pure and standard library only (the consul image's watchdog imports it): the record a
flip with a rollout writes instead of moving the alias, and the decision the watchdog takes at each
look. The stack entry's `rollout:` is parsed by model.config.

The record is the bake record (naming.bake_key) in status `rolling`: the watchdog already waits on
those keys. It holds the steps (percent of the stable traffic on the new colour), the current one,
and when it started. At each look, with the current step's traffic verdict:
- a failing verdict aborts: the split goes back to 0% at once, the record ends `aborted`;
- before the step time, it holds;
- after it, a passing verdict advances to the next step, or after the last one flips the alias
  (then the record bakes as any flip's, or ends `baked` without a bake time);
- with no verdict (too little traffic) it holds, and aborts after three step times."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

HOLD, ADVANCE, FLIP, ABORT = "hold", "advance", "flip", "abort"
PASS, FAIL = "pass", "fail"          # model.analysis' verdicts
MAX_STEPS = 10
STEP_S = (10.0, 3600.0)
PATIENCE = 3                          # step times without a verdict before it aborts
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"    # naming.TIME_FORMAT (a unit test holds them equal)


@dataclass(frozen=True)
class Rollout:
    steps: tuple[int, ...]            # percent of the stable traffic on the new colour, increasing
    step_s: float                     # how long each step lasts (at least)


def rolling_record(bake: dict[str, Any], rollout: Rollout, bake_s: float) -> dict[str, Any]:
    """A bake record (naming.bake_record) turned into a rollout's: not flipped yet, step 0 not
    started (the watchdog starts it)."""
    return {**bake, "status": "rolling", "steps": list(rollout.steps), "stepS": rollout.step_s,
            "step": 0, "stepSince": None, "bakeS": bake_s}


def is_rolling_to(record: dict[str, Any] | None, colour: str, version: str) -> bool:
    """Whether `record` is a rollout of `version` to `colour` still under way."""
    return record is not None and record.get("status") == "rolling" and \
        record.get("colour") == colour and record.get("version") == version


def percent(record: dict[str, Any]) -> int:
    """The share of the stable traffic the current step sends to the new colour."""
    return int(record["steps"][record["step"]])


def decide(record: dict[str, Any], outcome: str | None, reason: str, elapsed: float) -> tuple[str, str]:
    """(HOLD, ADVANCE, FLIP or ABORT, why) for a step started `elapsed` seconds ago, given its
    traffic verdict."""
    step, steps = record["step"], record["steps"]
    where = f"step {step + 1} of {len(steps)} ({steps[step]}%)"
    if outcome == FAIL:
        return ABORT, f"{where}: {reason}"
    if elapsed < record["stepS"]:
        return HOLD, ""
    if outcome == PASS:
        return (FLIP if step == len(steps) - 1 else ADVANCE), f"{where} passed: {reason}"
    if elapsed >= PATIENCE * record["stepS"]:
        return ABORT, f"{where}: no verdict after {elapsed:.0f}s ({reason or 'no traffic analysed'})"
    return HOLD, ""


def started(record: dict[str, Any], now: datetime.datetime, step: int = 0) -> dict[str, Any]:
    """The record with `step` started now."""
    return {**record, "step": step, "stepSince": stamp(now)}


def flipped(record: dict[str, Any], now: datetime.datetime) -> dict[str, Any]:
    """The record once the last step passed and the alias moved: baking (or baked without a bake
    time), timed from now."""
    bake_s = float(record.get("bakeS") or 0)
    done = {**record, "since": stamp(now), "rolledOutAt": stamp(now)}
    if not bake_s:
        return {**done, "status": "baked", "endedAt": stamp(now)}
    return {**done, "status": "baking", "until": stamp(now + datetime.timedelta(seconds=bake_s))}


def stamp(moment: datetime.datetime) -> str:
    """A time as bake records write it (naming.TIME_FORMAT, UTC)."""
    return moment.astimezone(datetime.timezone.utc).strftime(TIME_FORMAT)
