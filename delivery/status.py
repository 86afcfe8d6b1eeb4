"""`status`: one service in one stack as Consul has it now: the live colour (the alias), what each
colour runs, the split and cohorts, and the last flip's bake or rollout. Read only."""

from __future__ import annotations

import json
import sys

from components.consul import api as consul_api
from components.consul.records import ServiceRecords, read_service_records
from components.model.live import serving_colour
from components.model.split import describe_record, share
from components.model.validation import ConfigError
from components.naming import COLOURS

from .stacks import EnvStack, consul_address, stack_for_service
from .steps import StepFailed


def status_of(service: str, records: ServiceRecords) -> dict:
    """What `status --json` prints: plain data from Consul's records."""
    live = serving_colour(records.live)
    colour, percent = share(records.split, live)
    return {
        "service": service, "live": live,
        "colours": {c: records.running.get(c) for c in COLOURS if c in records.running},
        "split": {"colour": colour, "percent": percent, "described": describe_record(records.split)},
        "bake": json.loads(records.bake) if records.bake else None,
    }


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
    return lines


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
    status = status_of(service, records)
    print(json.dumps(status, indent=2, sort_keys=True) if as_json else "\n".join(status_lines(status)),
          file=out)
    return 0
