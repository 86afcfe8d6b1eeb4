"""Whether every instance of a colour passes its Consul checks: reading them from each instance's
own agent and the catalog, and waiting (bounded) until they do. Plain functions over the project's
Consul client, without Pulumi: the HealthGate resource (health_gate.py) and the flips outside
`pulumi up` (delivery/flip.py) both wait here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping

from bluegreen.components.consul import api as consul_api

POLL_INTERVAL_S = 0.5


@dataclass(frozen=True)
class Unreachable:
    """An instance whose agent did not answer (its host or its link is down)."""

    agent: str
    reason: str


def read_checks(instances: Mapping[str, str], token: str) -> dict[str, list[consul_api.CheckState] | None | Unreachable]:
    """Each instance's checks from its own agent; an agent that does not answer is a finding."""
    found: dict[str, list[consul_api.CheckState] | None | Unreachable] = {}
    for instance, agent in sorted(instances.items()):
        try:
            found[instance] = consul_api.agent_service_checks(agent, instance, token)
        except consul_api.ConsulError as error:
            found[instance] = Unreachable(agent, str(error))
    return found


def read_catalog(instances: Mapping[str, str], service: str, token: str) -> set[str] | Unreachable:
    """The instances passing in the catalog, asked through the first of their agents that answers."""
    unreachable = Unreachable("", "no agent to ask")
    for agent in sorted(set(instances.values())):
        try:
            return consul_api.catalog_passing(agent, service, token)
        except consul_api.ConsulError as error:
            unreachable = Unreachable(agent, str(error))
    return unreachable


def gate_problems(checks: Mapping[str, list[consul_api.CheckState] | None | Unreachable],
                  catalog: set[str] | Unreachable | None = None) -> list[str]:
    """What keeps the gate closed: one line per unregistered or unreachable instance or
    non-passing check, and per instance the catalog does not show passing yet.

    `checks` maps each expected instance to its checks (None when its agent does not know it);
    `catalog` holds the instances passing in the catalog (None: not asked)."""
    problems = []
    if isinstance(catalog, Unreachable):
        problems.append(f"the catalog could not be read through {catalog.agent}: {catalog.reason}"[:400])
        catalog = None
    for instance, found in checks.items():
        if isinstance(found, Unreachable):
            problems.append(f"instance {instance}: its agent {found.agent} does not answer "
                            f"(host or link down?): {found.reason}"[:400])
            continue
        if found is None:
            problems.append(f"instance {instance} is not registered with its Consul agent")
            continue
        if not found:
            problems.append(f"instance {instance} has no health check")
        for check in found:
            if check.status != "passing":
                output = " ".join(check.output.split())[:200] or "no output yet"
                problems.append(f"check '{check.name}' on node {check.node} is {check.status}: {output}")
            elif check.target and f"//{check.target}/" not in check.output:
                # Re-registering a replaced container keeps the old check's status until the
                # check runs again: a pass only counts once it was measured at the new address.
                problems.append(f"check '{check.name}' on node {check.node} has not run against "
                                f"{check.target} yet")
        if catalog is not None and found and instance not in catalog and \
                all(c.status == "passing" for c in found):
            # The proxy renders from the catalog: flipping before it agrees would serve nothing.
            problems.append(f"instance {instance} passes on its agent but not yet in the catalog "
                            "(the proxy's view)")
    return problems


def wait_for_gate(instances: Mapping[str, str], timeout_s: float, label: str, token: str,
                  service: str | None = None) -> float:
    """Polls each instance's agent (and, given the service, the catalog) until no problems remain;
    returns the seconds waited or raises naming the failing checks. `instances` maps instance ID
    -> its agent's URL."""
    start = time.monotonic()
    while True:
        problems = gate_problems(read_checks(instances, token),
                                 read_catalog(instances, service, token) if service else None)
        waited = time.monotonic() - start
        if not problems:
            return waited
        if waited >= timeout_s:
            raise RuntimeError(
                f"health gate {label} did not pass within {timeout_s:.0f}s, so the alias was not "
                f"flipped and traffic stays where it was. Failing: " + "; ".join(problems))
        time.sleep(POLL_INTERVAL_S)
