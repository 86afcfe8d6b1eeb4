"""Analysis of one colour's real traffic over a window, from Prometheus's HTTP API: the success
rate and the p99 latency, judged against bounds as Flagger's request-success-rate and
request-duration checks are (defaults 99% and 500 ms over 1 min). Pure: the caller runs the two
queries (`traffic_queries`) and hands over their JSON answers. Ready for the bake watchdog."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

PASS, FAIL, TOO_LITTLE = "pass", "fail", "too little traffic"


@dataclass(frozen=True)
class Bounds:
    min_success_rate: float = 0.99   # share of answers that are not 5xx
    max_p99_s: float = 0.5
    window_s: int = 60
    min_requests: int = 20           # fewer in the window: no verdict from traffic

    def __post_init__(self) -> None:
        if not 0 < self.min_success_rate <= 1:
            raise ValueError(f"minimum success rate {self.min_success_rate} is not in (0, 1]")
        if not self.max_p99_s > 0 or not self.window_s >= 10 or not self.min_requests >= 1:
            raise ValueError(f"bounds {self} need max_p99_s > 0, window_s >= 10, min_requests >= 1")


@dataclass(frozen=True)
class Verdict:
    outcome: str                     # PASS, FAIL or TOO_LITTLE
    requests: float                  # in the window (Prometheus's increase(), so not whole)
    success_rate: float | None       # None without requests
    p99_s: float | None              # None without requests
    reason: str


def traffic_queries(environment: str, service: str, colour: str, window_s: int,
                    traffic: str = "stable") -> tuple[str, str]:
    """PromQL for a colour's requests by status class, and its p99 latency, over the window."""
    labels = (f'environment="{environment}",service="{service}",colour="{colour}",'
              f'traffic="{traffic}"')
    window = f"[{window_s}s]"
    return (f"sum by (status) (increase(bluegreen_requests_total{{{labels}}}{window}))",
            f"histogram_quantile(0.99, sum by (le) "
            f"(increase(bluegreen_request_duration_seconds_bucket{{{labels}}}{window})))")


def analyse(by_status: Mapping[str, Any], p99: Mapping[str, Any], bounds: Bounds) -> Verdict:
    """The verdict on the answers to `traffic_queries`' two queries (the API's JSON bodies)."""
    counts = {series["metric"].get("status", ""): value for series, value in _vector(by_status)}
    total = sum(counts.values())
    if total < bounds.min_requests:
        return Verdict(TOO_LITTLE, total, _rate(counts, total), None,
                       f"{total:g} requests in {bounds.window_s}s, fewer than the "
                       f"{bounds.min_requests} a verdict needs")
    rate = _success_rate(counts, total)
    latencies = [value for _, value in _vector(p99) if not math.isnan(value)]
    p99_s = latencies[0] if latencies else None
    breaches = []
    if rate < bounds.min_success_rate:
        breaches.append(f"success rate {rate:.2%} below {bounds.min_success_rate:.2%}")
    if p99_s is not None and p99_s > bounds.max_p99_s:
        breaches.append(f"p99 {p99_s * 1000:.0f} ms above {bounds.max_p99_s * 1000:.0f} ms")
    shown = f"{total:g} requests, success {rate:.2%}, p99 " + \
        (f"{p99_s * 1000:.0f} ms" if p99_s is not None else "unknown")
    return Verdict(FAIL if breaches else PASS, total, rate, p99_s,
                   "; ".join(breaches) + f" ({shown})" if breaches else shown)


def _rate(counts: Mapping[str, float], total: float) -> float | None:
    return None if not total else _success_rate(counts, total)


def _success_rate(counts: Mapping[str, float], total: float) -> float:
    """The share of answers that were not 5xx (`total` > 0)."""
    return 1 - counts.get("5xx", 0.0) / total


def _vector(body: Mapping[str, Any]) -> list[tuple[dict[str, Any], float]]:
    """(series, value) pairs of an instant vector answer; errors say what Prometheus said."""
    if not isinstance(body, Mapping) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, Mapping) else body
        raise ValueError(f"Prometheus answered no result ({error!r}); check the query and that "
                         "Prometheus is up (the platform stack's `prometheus` output)")
    data = body.get("data") or {}
    if data.get("resultType") != "vector":
        raise ValueError(f"expected an instant vector from Prometheus, got {data.get('resultType')!r}")
    return [(series, float(series["value"][1])) for series in data.get("result") or []]


def chart_queries(environment: str, service: str) -> tuple[str, str]:
    """PromQL for a service's stable requests per second, and the share of them answered 5xx, per
    colour (what the catalogue page draws; its script writes the same two)."""
    labels = f'environment="{environment}",service="{service}",traffic="stable"'
    requests = f"sum by (colour) (rate(bluegreen_requests_total{{{labels}}}[1m]))"
    # A colour that never answered 5xx has no such series: `or ... * 0` makes its share 0, not absent.
    errors = (f'(sum by (colour) (rate(bluegreen_requests_total{{{labels},status="5xx"}}[1m])) '
              f'or {requests} * 0) / {requests}')
    return requests, errors


def range_series(body: Mapping[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """colour -> its (time, value) pairs, from a range query's JSON answer (a step without samples
    is left out; one without requests is NaN)."""
    if not isinstance(body, Mapping) or body.get("status") != "success":
        raise ValueError(f"Prometheus answered no result ({body.get('error') if isinstance(body, Mapping) else body!r})")
    return {series["metric"].get("colour", ""): [(float(t), float(v)) for t, v in series.get("values") or []]
            for series in (body.get("data") or {}).get("result") or []}



def preview_refusal(service: str, colour: str, verdict: Verdict, rollback: bool = False) -> str | None:
    """Why a flip to `colour` may not go, judged by its preview traffic (`gate.previewTraffic`):
    None when it may. A roll-back is never held: the colour it returns to served before."""
    if rollback or verdict.outcome == PASS:
        return None
    if verdict.outcome == FAIL:
        return f"{service}'s preview traffic on {colour} fails gate.previewTraffic: {verdict.reason}"
    return (f"{service}'s preview traffic on {colour} is too little to judge ({verdict.reason}); send "
            f"requests to its preview URI first, or lower gate.previewTraffic.minRequests")
