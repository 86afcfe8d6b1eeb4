"""HealthGate: waits during `pulumi up` until every instance of a colour passes its Consul checks.

The alias of a colour takes its value from this gate's output, so an alias write can only happen
after the gate of the same environment and colour passed; on timeout the update fails naming the
failing checks, and the alias (and so the traffic) stays where it was."""

from __future__ import annotations

import time
from typing import Any, Iterable

import pulumi
from pulumi import dynamic

from . import consul_api

POLL_INTERVAL_S = 0.5


def gate_problems(checks: Iterable[consul_api.CheckState], instances: Iterable[str]) -> list[str]:
    """What keeps the gate closed: one line per missing instance or non-passing check."""
    by_instance: dict[str, list[consul_api.CheckState]] = {}
    for check in checks:
        by_instance.setdefault(check.service_id, []).append(check)
    problems = []
    for instance in instances:
        found = by_instance.get(instance)
        if not found:
            problems.append(f"instance {instance} is not registered with Consul")
            continue
        for check in found:
            if check.status != "passing":
                output = " ".join(check.output.split())[:200] or "no output yet"
                problems.append(f"check '{check.name}' on node {check.node} is {check.status}: {output}")
    return problems


def wait_for_gate(address: str, service: str, instances: list[str], timeout_s: float,
                  label: str) -> float:
    """Polls until no problems remain; returns the seconds waited or raises with the problems."""
    start = time.monotonic()
    while True:
        problems = gate_problems(consul_api.health_checks(address, service), instances)
        waited = time.monotonic() - start
        if not problems:
            return waited
        if waited >= timeout_s:
            raise RuntimeError(
                f"health gate {label} did not pass within {timeout_s:.0f}s, so the alias was not "
                f"flipped and traffic stays where it was. Failing: " + "; ".join(problems))
        time.sleep(POLL_INTERVAL_S)


class _HealthGateProvider(dynamic.ResourceProvider):
    def _wait(self, props: dict[str, Any]) -> dict[str, Any]:
        label = f"{props['environment']}/{props['service']}/{props['colour']}"
        waited = wait_for_gate(props["address"], props["service"], list(props["instances"]),
                               float(props["timeout_s"]), label)
        return {**props, "waited_s": round(waited, 2)}

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        outs = self._wait(props)
        return dynamic.CreateResult(id_=f"{props['environment']}-{props['service']}-{props['colour']}",
                                    outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        keys = set(news) - {"waited_s"}
        return dynamic.DiffResult(changes=any(olds.get(k) != news.get(k) for k in keys))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(outs=self._wait(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        pass


class HealthGate(dynamic.Resource):
    """Passes once all `instances` of `service` tagged with environment and colour are passing.

    `revision` is anything whose change must re-run the gate (digest, version, live flag)."""

    colour: pulumi.Output[str]
    environment: pulumi.Output[str]
    waited_s: pulumi.Output[float]

    def __init__(self, name: str, *, address: pulumi.Input[str], service: str, environment: str,
                 colour: str, instances: pulumi.Input[list], timeout_s: int,
                 revision: pulumi.Input[dict], opts: pulumi.ResourceOptions | None = None):
        super().__init__(_HealthGateProvider(), name, {
            "address": address, "service": service, "environment": environment,
            "colour": colour, "instances": instances, "timeout_s": timeout_s,
            "revision": revision, "waited_s": None,
        }, opts)
