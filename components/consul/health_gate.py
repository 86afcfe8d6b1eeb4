"""HealthGate: waits during `pulumi up` until every instance of a colour passes its Consul checks.

The alias of a colour takes its value from this gate's output, so an alias write can only happen
after the gate of the same environment and colour passed; on timeout the update fails naming the
failing checks, and the alias (and so the traffic) stays where it was.

The offline colour's gate never fails the update (a broken preview must not block a rollback), but
when its instances were just deployed it waits, up to the same timeout, until they pass and the
proxy serves them on the preview URI, so that URI answers as soon as the deploy returns."""

from __future__ import annotations

import time
from typing import Any, Mapping

import pulumi
from pulumi import dynamic

from bluegreen.components.consul.checks import gate_problems, read_checks, wait_for_gate
from bluegreen.components.consul.legacy import with_legacy_type
from bluegreen.components.consul.route_proof import wait_for_route
from bluegreen.components.naming import HEALTH_GATE_TYPE

PREVIEW_POLL_INTERVAL_S = 0.05


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
