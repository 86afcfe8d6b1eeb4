"""`status`: one service in one stack as Consul has it now: the live colour (the alias), what each
colour runs, the split and cohorts, the last flip's bake or rollout, the delivery metrics (from the
release history, model.scoreboard), and each colour's requests and 5xx share over the last hour as
sparklines (from Prometheus, where the platform runs it). Read only."""

from __future__ import annotations

import datetime
import json
import math
import sys

import requests

from bluegreen.components.consul import api as consul_api
from bluegreen.components.consul.records import ServiceRecords, read_service_records
from bluegreen.components.model.analysis import chart_queries, range_series
from bluegreen.components.model.live import serving_colour
from bluegreen.components.model.scoreboard import delivery_metrics, summary
from bluegreen.components.model.split import describe_record, share
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import COLOURS, watchdog_lock_key

from .stacks import EnvStack, consul_address, platform_outputs, stack_for_service
from .steps import StepFailed


HOUR_S, STEP_S = 3600, 120     # the sparklines: the last hour in 30 steps
BARS = "▁▂▃▄▅▆▇█"


def status_of(service: str, records: ServiceRecords, now: datetime.datetime | None = None,
              traffic: dict | None = None, watchdog: str | None = None) -> dict:
    """What `status --json` prints: plain data from Consul's records (and Prometheus's `traffic`:
    colour -> {requests, errors} per step, or {"unavailable": why}; `watchdog`: the leader key's
    value, which watchdog acts)."""
    live = serving_colour(records.live)
    colour, percent = share(records.split, live)
    return {
        "service": service, "live": live,
        "colours": {c: records.running.get(c) for c in COLOURS if c in records.running},
        "split": {"colour": colour, "percent": percent, "described": describe_record(records.split)},
        "bake": json.loads(records.bake) if records.bake else None,
        "delivery": delivery_metrics(records.history, now or datetime.datetime.now(datetime.timezone.utc)),
        "traffic": traffic,
        "watchdog": watchdog_holder(watchdog),
    }


def watchdog_holder(value: str | None) -> dict | None:
    """{watchdog, host, since} of the acting watchdog (None: none acts, or unreadable)."""
    try:
        holder = json.loads(value or "")
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def sparkline(values: list[float], top: float | None = None) -> str:
    """One bar per value, scaled to `top` (default the largest); a step without data is a space."""
    top = top or max((v for v in values if not math.isnan(v)), default=0) or 1
    return "".join(" " if math.isnan(v) else BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1) + 0.5))]
                   for v in values)


def traffic_lines(traffic: dict | None) -> list[str]:
    """Each colour's requests/s and 5xx share over the last hour, as sparklines."""
    if not traffic:
        return []
    if "unavailable" in traffic:
        return [f"  traffic: {traffic['unavailable']}"]
    lines = [f"  traffic, last hour ({STEP_S // 60} min a bar): requests/s | 5xx share"]
    for colour in COLOURS:
        series = traffic.get(colour)
        if series:
            rates, errors = series["requests"], series["errors"]
            last = next((v for v in reversed(rates) if not math.isnan(v)), 0.0)
            worst = max((v for v in errors if not math.isnan(v)), default=0.0)
            lines.append(f"    {colour:<5} {sparkline(rates)} now {last:.1f}/s | {sparkline(errors, 1)} "
                         f"max {worst:.0%}")
    return lines


def status_lines(status: dict) -> list[str]:
    """The same for a terminal."""
    live = status["live"]
    lines = [f"{status['service']}: live {live or 'none (never flipped)'}"]
    for colour, release in status["colours"].items():
        role = "live" if colour == live else "offline"
        lines.append(f"  {colour:<5} {release}  ({role})")
    lines.append(f"  split: {status['split']['described']}")
    bake = status["bake"]
    if bake:
        step = ""
        if bake.get("status") == "rolling" and bake.get("stepSince"):
            step = f", step {bake['step'] + 1} of {len(bake['steps'])} ({bake['steps'][bake['step']]}%)"
        lines.append(f"  last flip: {bake.get('previous')} -> {bake.get('colour')} "
                     f"{bake.get('version')}: {bake.get('status')}{step}"
                     + (f" ({bake['reason']})" if bake.get("reason") else "")
                     + (f", judged by {bake['judgedBy']}" if bake.get("judgedBy") else ""))
    watchdog = status.get("watchdog")
    if watchdog:
        lines.append(f"  watchdog: {watchdog.get('watchdog')} on {watchdog.get('host')} acts "
                     f"since {watchdog.get('since')}")
    if status.get("delivery"):
        lines.append(f"  delivery: {summary(status['delivery'])}")
    return lines + traffic_lines(status.get("traffic"))


def read_traffic(prometheus: str | None, environment: str, service: str,
                 now: datetime.datetime) -> dict:
    """colour -> {requests, errors} over the last hour from Prometheus (or why there is none)."""
    if not prometheus:
        return {"unavailable": "the platform runs no Prometheus"}
    end = now.timestamp()
    window: dict[str, str | float] = {"start": end - HOUR_S, "end": end, "step": STEP_S}
    try:
        answers = [requests.get(f"{prometheus}/api/v1/query_range", timeout=5,
                                params={"query": query, **window}).json()
                   for query in chart_queries(environment, service)]
        rates, errors = (range_series(answer) for answer in answers)
    except (requests.RequestException, ValueError) as error:
        return {"unavailable": f"Prometheus at {prometheus} did not answer ({error})"}
    start = end - HOUR_S
    return {colour: {"requests": _steps(rates.get(colour, []), start),
                     "errors": _steps(errors.get(colour, []), start)}
            for colour in COLOURS if colour in rates}


def _steps(points: list[tuple[float, float]], start: float) -> list[float]:
    """One value per step of the last hour, NaN where Prometheus had none."""
    values = [math.nan] * (HOUR_S // STEP_S + 1)
    for at, value in points:
        index = round((at - start) / STEP_S)
        if 0 <= index < len(values):
            values[index] = value
    return values


def run_status(service: str, stack_name: str, as_json: bool = False, out=None) -> int:
    out = out or sys.stdout
    try:
        stack = EnvStack(stack_for_service(stack_name, service))
        config = stack.config()
        if stack.service(service) is None:
            raise StepFailed(f"stack {stack.name} does not deploy {service}")
        records = read_service_records(consul_address(config, service), config.environment,
                                       service, stack.deployer_token())
    except (StepFailed, ConfigError, consul_api.ConsulError) as error:
        print(f"status: {error}", file=out)
        return 2
    now = datetime.datetime.now(datetime.timezone.utc)
    watchdog = consul_api.kv_get(consul_address(config, service), watchdog_lock_key(),
                                 stack.deployer_token())
    status = status_of(service, records, now, read_traffic(_prometheus(config), config.environment,
                                                            service, now), watchdog)
    print(json.dumps(status, indent=2, sort_keys=True) if as_json else "\n".join(status_lines(status)),
          file=out)
    return 0


def _prometheus(config) -> str | None:
    """The platform's Prometheus URL (None: it runs none, or its stack has no outputs yet)."""
    try:
        return platform_outputs(config).get("prometheus")
    except StepFailed:
        return None
