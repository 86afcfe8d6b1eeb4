"""What Consul records about a service before an update: its releases, which release each colour
runs, its release history, the alias, the bake record of its last flip and its split. Read once by the program, before anything deploys."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from bluegreen.components.consul import api as consul_api
from bluegreen.components.model.release import Release
from bluegreen.components.naming import (
    COLOURS, alias_key, bake_key, history_prefix, release_prefix, slot_key, split_key
)


@dataclass(frozen=True)
class ServiceRecords:
    releases: dict[str, Release] = field(default_factory=dict)   # version -> release
    slots: dict[str, str] = field(default_factory=dict)          # colour -> version it runs
    shapes: dict[str, str] = field(default_factory=dict)         # colour -> its containers' shape
    running: dict[str, str] = field(default_factory=dict)        # colour -> the release id it runs
    configs: dict[str, dict] = field(default_factory=dict)       # colour -> the configuration it runs
    dependencies: dict[str, str] = field(default_factory=dict)   # colour -> its dependencies' shape
    history: dict[str, dict] = field(default_factory=dict)       # version -> history entry
    live: str | None = None                                      # the alias's colour
    bake: str | None = None                                      # the bake record (JSON), if any
    split: str | None = None                                     # the split record (JSON), if any


def read_service_records(address: str, environment: str, service: str, token: str) -> ServiceRecords:
    """Reads the records of one service in one environment with the deployer's `token`
    (ConsulError when Consul is down or refuses)."""
    releases = {key.rsplit("/", 1)[1]: Release.from_json(value)
                for key, value in consul_api.kv_tree(address, release_prefix(service), token).items()}
    slots, shapes, running, configs, dependencies = {}, {}, {}, {}, {}
    for colour in COLOURS:
        value = consul_api.kv_get(address, slot_key(environment, service, colour), token)
        if value:
            record = json.loads(value)
            slots[colour] = record["version"]
            shapes[colour] = record.get("shape", "")
            running[colour] = record.get("release", record["version"])
            if "config" in record:
                configs[colour] = record["config"]
            if "dependencies" in record:
                dependencies[colour] = record["dependencies"]
    history = {key.rsplit("/", 1)[1]: json.loads(value) for key, value in
               consul_api.kv_tree(address, history_prefix(environment, service), token).items()}
    live = consul_api.kv_get(address, alias_key(environment, service), token)
    bake = consul_api.kv_get(address, bake_key(environment, service), token)
    split = consul_api.kv_get(address, split_key(environment, service), token)
    return ServiceRecords(releases, slots, shapes, running, configs, dependencies, history,
                          live or None, bake or None, split or None)
