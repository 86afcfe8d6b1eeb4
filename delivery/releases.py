"""`releases`: a service's release history in one stack, newest first, from Consul KV."""

from __future__ import annotations

import sys

from bluegreen.components.consul import api as consul_api
from bluegreen.components.consul.records import read_service_records
from bluegreen.components.model.validation import ConfigError

from .stacks import EnvStack, stack_for_service
from .steps import StepFailed


def release_rows(records) -> list[list[str]]:
    """One row per release (a version, or `version+config` for a configuration of its own):
    digest, deployed, by, last live, colour now."""
    running = {release: colour for colour, release in records.running.items()}
    rows = []
    for version, entry in sorted(records.history.items(),
                                 key=lambda item: item[1].get("deployedAt", ""), reverse=True):
        colour = running.get(version, "")
        marker = " (live)" if colour and colour == records.live else ""
        rows.append([version, entry.get("reference", "").rsplit("@", 1)[-1][:19],
                     entry.get("deployedAt", ""), entry.get("deployedBy", ""),
                     entry.get("liveAt", "never"), colour + marker,
                     entry.get("rolledBackAt", "")])
    return rows


def rollback_notes(records) -> list[str]:
    """One line per release the bake watchdog rolled back: when and why."""
    return [f"{version} was rolled back at {entry['rolledBackAt']}: {entry.get('rollbackReason', '')}"
            for version, entry in sorted(records.history.items()) if entry.get("rolledBackAt")]


def run_releases(service: str, stack_name: str, out=None) -> int:
    out = out or sys.stdout
    try:
        stack = EnvStack(stack_for_service(stack_name, service))
        config = stack.config()
        settings = stack.service(service)
        if settings is None:
            raise StepFailed(f"stack {stack.name} does not deploy {service}")
        records = read_service_records(config.service_host(settings).consul, config.environment,
                                       service, stack.deployer_token())
    except (StepFailed, ConfigError, consul_api.ConsulError) as error:
        print(f"releases: {error}", file=out)
        return 2
    rows = [["RELEASE", "DIGEST", "DEPLOYED", "BY", "LAST LIVE", "COLOUR", "ROLLED BACK"],
            *release_rows(records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=out)
    for note in rollback_notes(records):
        print(note, file=out)
    return 0
