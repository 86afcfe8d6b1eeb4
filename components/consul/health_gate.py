"""HealthGate: waits during `pulumi up` until every instance of a colour passes its Consul checks.

The alias of a colour takes its value from this gate's output, so an alias write can only happen
after the gate of the same environment and colour passed; on timeout the update fails naming the
failing checks, and the alias (and so the traffic) stays where it was.

The offline colour's gate never fails the update (a broken preview must not block a rollback), but
when its instances were just deployed it waits, up to the same timeout, until they pass and the
proxy serves them on the preview URI, so that URI answers as soon as the deploy returns."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

import pulumi
from pulumi import dynamic

from components.consul import api as consul_api
from components.consul.legacy import with_legacy_type
from components.consul.route_proof import wait_for_route
from components.naming import HEALTH_GATE_TYPE

POLL_INTERVAL_S = 0.5
PREVIEW_POLL_INTERVAL_S = 0.05


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


def _label(props: Mapping[str, Any]) -> str:
    return f"{props['environment']}/{props['service']}/{props['colour']}"


def wait_for_preview(props: Mapping[str, Any]) -> dict[str, Any]:
    """The offline gate's outputs after waiting (bounded) for its instances to pass and for the
    proxy to serve them on the preview URI; a failure is reported, never raised."""
    start = time.monotonic()
    timeout_s = float(props["timeout_s"])
    try:
        wait_for_gate(props["instances"], timeout_s, _label(props), props["token"], props["service"])
        wait_for_route(props["preview_url"], props["preview_route"], props["colour"],
                       max(1.0, timeout_s - (time.monotonic() - start)),
                       interval_s=PREVIEW_POLL_INTERVAL_S)
        problems = []
    except RuntimeError as error:
        problems = gate_problems(read_checks(props["instances"], props["token"])) or [str(error)]
    return {**props, "waited_s": round(time.monotonic() - start, 2), "passing": not problems,
            "problems": problems}


class _HealthGateProvider(dynamic.ResourceProvider):
    def _wait(self, props: dict[str, Any], deployed: bool) -> dict[str, Any]:
        if not props["blocking"]:
            # The offline colour only reports: a broken preview must not block a rollback. It
            # waits only for instances just deployed, never for a colour a flip made offline.
            if deployed and props.get("preview_url"):
                return wait_for_preview(props)
            problems = gate_problems(read_checks(props["instances"], props["token"]))
            return {**props, "waited_s": 0.0, "passing": not problems, "problems": problems}
        waited = wait_for_gate(props["instances"], float(props["timeout_s"]), _label(props),
                               props["token"], props["service"])
        return {**props, "waited_s": round(waited, 2), "passing": True, "problems": []}

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        outs = self._wait(props, deployed=True)
        return dynamic.CreateResult(id_=f"{props['environment']}-{props['service']}-{props['colour']}",
                                    outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # The token only reads, and where the preview is awaited gates nothing: a new one alone
        # does not re-run the gate (an update brings it).
        keys = set(news) - {"waited_s", "passing", "problems", "token", "preview_url"}
        return dynamic.DiffResult(changes=any(olds.get(k) != news.get(k) for k in keys))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(outs=self._wait(news, deployed=olds.get("revision") != news.get("revision")))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        pass


class HealthGate(dynamic.Resource, module=HEALTH_GATE_TYPE[0], name=HEALTH_GATE_TYPE[1]):
    """Passes once every instance of `service` in that environment and colour passes its checks.

    `instances` maps instance IDs to their agents' URLs; `revision` is anything whose change must
    re-run the gate (registrations, image, version). A `blocking` gate (the live colour's) waits up
    to `timeout_s` and fails the update; a non-blocking one records `passing` and `problems`, after
    waiting (as long, at most) for a new deploy to answer on `preview_url` under `preview_route`.
    `token` (a secret) reads the instances' health."""

    colour: pulumi.Output[str]
    environment: pulumi.Output[str]
    passing: pulumi.Output[bool]
    problems: pulumi.Output[list]
    waited_s: pulumi.Output[float]

    def __init__(self, name: str, *, service: str, environment: str, colour: str,
                 instances: pulumi.Input[dict], timeout_s: int, blocking: bool,
                 revision: pulumi.Input[dict], preview_url: pulumi.Input[str] | None = None,
                 preview_route: str | None = None, token: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(_HealthGateProvider(), name, {
            "service": service, "environment": environment, "colour": colour,
            "instances": instances, "timeout_s": timeout_s, "blocking": blocking,
            "revision": revision, "preview_url": preview_url, "preview_route": preview_route,
            "token": pulumi.Output.secret(token), "waited_s": None, "passing": None,
            "problems": None,
        }, pulumi.ResourceOptions.merge(with_legacy_type(opts), pulumi.ResourceOptions(
            additional_secret_outputs=["token"])))
