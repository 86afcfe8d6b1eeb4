"""Delivery metrics, the four keys of the delivery cycle, for one service in one environment, from
its release history (naming.history_prefix: one entry per release). Pure and standard library
only: the platform's watchdog publishes them (images/consul/watchdog.py), `./bg status` shows them.

- a deployment is a release going live for the first time (`firstLiveAt`; `liveAt` in entries
  written before it existed); a release that goes live again (a rollback to it) is no deployment;
- lead time: from the commit the release was built from (`committedAt`) to its deployment;
- a deployment failed when the watchdog rolled it back (`rolledBackAt`), or when, before the next
  deployment, an earlier release went live again (a rollback or a flip back by hand);
- time to restore: from a failed deployment to the first such roll-back.
Over the last `window_days`: deployments per day, the median lead time, the share of failed
deployments and the median time to restore (None where nothing was measured)."""

from __future__ import annotations

import datetime
import statistics
from dataclasses import dataclass
from typing import Any, Mapping

try:
    from bluegreen.components.naming import parse_time
except ImportError:   # in the watchdog's image, naming.py sits beside this file
    # Found only in the image's layout (mypy checks that too: tests/unit/test_static_checks.py).
    from naming import parse_time  # type: ignore[import-not-found, no-redef]

WINDOW_DAYS = 7
FIELDS = ("deploymentsPerDay", "leadTimeSeconds", "changeFailureRate", "timeToRestoreSeconds")


@dataclass(frozen=True)
class Deployment:
    release: str
    live_at: datetime.datetime
    committed_at: datetime.datetime | None
    restored_at: datetime.datetime | None     # when it was rolled back; None: it was not

    @property
    def lead_time_s(self) -> float | None:
        return None if self.committed_at is None else (self.live_at - self.committed_at).total_seconds()

    @property
    def restore_s(self) -> float | None:
        return None if self.restored_at is None else (self.restored_at - self.live_at).total_seconds()


def _time(entry: Mapping[str, Any], name: str) -> datetime.datetime | None:
    value = entry.get(name)
    try:
        return parse_time(value) if isinstance(value, str) else None
    except ValueError:
        return None


def first_live(entry: Mapping[str, Any]) -> datetime.datetime | None:
    """When a release went live for the first time (None: never)."""
    return _time(entry, "firstLiveAt") or _time(entry, "liveAt")


def deployments(history: Mapping[str, Mapping[str, Any]]) -> list[Deployment]:
    """Every release that went live, oldest first, with when it was rolled back (if it was)."""
    history = {release: e for release, e in history.items() if isinstance(e, Mapping)}
    firsts = {release: first_live(e) for release, e in history.items()}
    went = sorted((live_at, release) for release, live_at in firsts.items() if live_at)
    result = []
    for position, (live_at, release) in enumerate(went):
        until = went[position + 1][0] if position + 1 < len(went) else None
        result.append(Deployment(release, live_at, _time(history[release], "committedAt"),
                                 _restored(history, release, live_at, until)))
    return result


def _restored(history: Mapping[str, Mapping[str, Any]], release: str, live_at: datetime.datetime,
              until: datetime.datetime | None) -> datetime.datetime | None:
    """The first roll-back of `release`: the watchdog's, or an earlier release live again before
    the next deployment (`until`)."""
    rolled = _time(history[release], "rolledBackAt")
    candidates = [rolled] if rolled and rolled >= live_at else []
    for other, entry in history.items():
        again, first = _time(entry, "liveAt"), first_live(entry)
        if other != release and first and again and first < live_at < again \
                and (until is None or again < until):
            candidates.append(again)
    return min(candidates, default=None)


def delivery_metrics(history: Mapping[str, Mapping[str, Any]], now: datetime.datetime,
                     window_days: int = WINDOW_DAYS) -> dict[str, Any]:
    """The four keys over the last `window_days` (catalogue.json's `delivery`)."""
    if window_days < 1:
        raise ValueError(f"the delivery metrics' window must be a day at least, got {window_days}")
    since = now - datetime.timedelta(days=window_days)
    recent = [d for d in deployments(history) if since < d.live_at <= now]
    failed = [d for d in recent if d.restored_at is not None]
    leads = [d.lead_time_s for d in recent if d.lead_time_s is not None]
    return {
        "deploymentsPerDay": round(len(recent) / window_days, 3),
        "leadTimeSeconds": _median(leads),
        "changeFailureRate": round(len(failed) / len(recent), 3) if recent else None,
        "timeToRestoreSeconds": _median([d.restore_s for d in failed if d.restore_s is not None]),
        "deployments": len(recent), "failures": len(failed), "windowDays": window_days,
    }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


METRICS = {  # field -> (Prometheus name, help)
    "deploymentsPerDay": ("bluegreen_deployments_per_day",
                          "Releases that went live for the first time, per day over the window."),
    "leadTimeSeconds": ("bluegreen_lead_time_seconds",
                        "Median time from a release's commit to its going live."),
    "changeFailureRate": ("bluegreen_change_failure_rate",
                          "Share of deployments rolled back before the next one."),
    "timeToRestoreSeconds": ("bluegreen_time_to_restore_seconds",
                             "Median time from a failed deployment to its roll-back."),
}


def exposition(figures: Mapping[tuple[str, str], Mapping[str, Any]]) -> str:
    """Prometheus's text format of every (environment, service)'s figures; a figure that was not
    measured (None) has no sample."""
    lines = []
    for field, (name, text) in METRICS.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
        lines += [f'{name}{{environment="{env}",service="{service}"}} {values[field]:g}'
                  for (env, service), values in sorted(figures.items())
                  if values.get(field) is not None]
    return "\n".join(lines) + "\n"


def duration_words(seconds: float | None) -> str:
    """A duration as people read it: 42 s, 3 min 20 s, 5 h 2 min, 2 d 3 h; '-' when unmeasured."""
    if seconds is None:
        return "-"
    sign, whole = "-" if seconds < 0 else "", abs(round(seconds))
    for unit, size, small, small_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60),
                                          ("min", 60, "s", 1)):
        if whole >= size:
            rest = (whole % size) // small_size
            return f"{sign}{whole // size} {unit}" + (f" {rest} {small}" if rest else "")
    return f"{sign}{whole} s"


def summary(figures: Mapping[str, Any]) -> str:
    """The four keys in one line (`./bg status`)."""
    rate = figures.get("changeFailureRate")
    return (f"{figures.get('deploymentsPerDay', 0):g} deployments/day, lead time "
            f"{duration_words(figures.get('leadTimeSeconds'))}, change failure rate "
            f"{'-' if rate is None else f'{rate:.0%}'}, time to restore "
            f"{duration_words(figures.get('timeToRestoreSeconds'))} (last "
            f"{figures.get('windowDays', WINDOW_DAYS)} days: {figures.get('deployments', 0)} "
            f"deployments, {figures.get('failures', 0)} failed)")
