"""Builders for resources as the policy pack sees them, and runners that call the real validate
functions of the policies with the SDK's own argument objects (no engine involved)."""

from __future__ import annotations

import copy
from typing import Any

from pulumi_policy import (PolicyCustomTimeouts, PolicyResource, PolicyResourceOptions,
                           ResourceValidationArgs, StackValidationArgs)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from bluegreen.policies.rules import ALL_POLICIES

DIGEST = "sha256:" + "0123456789abcdef" * 4
IMAGE = f"127.0.0.1:15000/vizconfig@{DIGEST}"
UNKNOWN = UNKNOWN_STRING_VALUE  # how the engine sends a value it does not know yet
STACK = "urn:pulumi:production::bluegreen::"
CONTAINER = "docker:index/container:Container"
from bluegreen.policies.rules.common import CONSUL_KEY_TYPE, HEALTH_GATE_TYPE, REGISTRATION_TYPE


def policy(name: str):
    return next(p for p in ALL_POLICIES if p.name == name)


def urn(type_path: str, name: str) -> str:
    return f"{STACK}{type_path}::{name}"


def labels(**values: str) -> list[dict[str, str]]:
    return [{"label": f"bluegreen.{k}", "value": v} for k, v in sorted(values.items())]


def service_container(name: str = "production-vizconfig-blue-local-0", *, environment="production",
                      service="vizconfig", colour="blue", host="local", index=0,
                      parent: str | None = None, **overrides: Any) -> dict[str, Any]:
    instance = f"{environment}-{service}-{colour}-{host}-{index}"
    props = {
        "name": f"bluegreen-{instance}",
        "image": IMAGE,
        "envs": [f"SERVICE_NAME={service}", f"SERVICE_COLOUR={colour}", "DB_ADDRESS=db:6379"],
        "ports": [{"internal": 8000, "ip": "127.0.0.1"}],
        "restart": "unless-stopped",
        "memory": 96,
        "capabilities": {"drops": ["ALL"]},
        "securityOpts": ["no-new-privileges:true"],
        "labels": labels(stack="production", role="service", service=service,
                         environment=environment, colour=colour, version="1.0.0",
                         instance=instance),
    }
    props.update(overrides)
    return resource(CONTAINER, name, props, type_path="bluegreen:service:Service$"
                    "bluegreen:service:ColourSlot$docker:index/container:Container", parent=parent)


def platform_container(role: str, name: str = "local-platform-registry-container",
                       **overrides: Any) -> dict[str, Any]:
    props = {"image": "sha256:" + "f" * 64, "restart": "unless-stopped", "memory": 256,
             "ports": [{"internal": 5000, "external": 15000, "ip": "127.0.0.1"}],
             "labels": labels(stack="local", role=role)}
    props.update(overrides)
    return resource(CONTAINER, name, props)


def dependency_container(name: str = "production-vizconfig-db-local", **overrides: Any):
    props = {"image": f"127.0.0.1:15000/vizconfig-db@{DIGEST}", "restart": "unless-stopped",
             "memory": 128, "envs": [],
             "labels": labels(stack="production", role="dependency", service="vizconfig",
                              environment="production", dependency="db")}
    props.update(overrides)
    return resource(CONTAINER, name, props)


def registration_payload(instance: str = "production-vizconfig-blue-local-0", *,
                         service="vizconfig", environment="production", colour="blue",
                         port=32768, health="/health") -> dict[str, Any]:
    return {
        "ID": instance, "Name": service, "Tags": [environment, colour],
        "Address": "127.0.0.1", "Port": port,
        "Meta": {"environment": environment, "colour": colour, "version": "1.0.0",
                 "image": IMAGE, "host": "local"},
        "Check": {"CheckID": f"{instance}-http", "Name": f"HTTP GET {health} on {instance}",
                  "HTTP": f"http://127.0.0.1:{port}{health}", "Interval": "1000ms",
                  "Timeout": "1000ms", "DeregisterCriticalServiceAfter": "10m"},
    }


def registration(name: str = "production-vizconfig-blue-local-0-registration", payload=None,
                 parent: str | None = None, **kwargs: Any) -> dict[str, Any]:
    payload = registration_payload(**kwargs) if payload is None else payload
    return resource(REGISTRATION_TYPE, name, {"address": "http://127.0.0.1:18500", "payload": payload},
                    parent=parent)


def gate(name: str = "production-vizconfig-blue-gate", *, environment="production",
         service="vizconfig", colour="blue", blocking=True, parent: str | None = None):
    instance = f"{environment}-{service}-{colour}-local-0"
    return resource(HEALTH_GATE_TYPE, name, {
        "service": service, "environment": environment, "colour": colour,
        "instances": {instance: "http://127.0.0.1:18500"}, "timeout_s": 60, "blocking": blocking,
        "revision": {"image": IMAGE, "version": "1.0.0"}, "waited_s": 0.5, "passing": True,
        "problems": []}, parent=parent)


def consul_key(name: str, key: str, value: Any, *, dependencies=(), value_dependencies=None,
               parent: str | None = None) -> dict[str, Any]:
    r = resource(CONSUL_KEY_TYPE, name, {"address": "http://127.0.0.1:18500", "key": key, "value": value},
                 parent=parent)
    r["dependencies"] = list(dependencies)
    r["property_dependencies"] = {"value": list(dependencies if value_dependencies is None
                                                else value_dependencies)}
    return r


def component(type_: str, name: str, parent: str | None = None, props=None) -> dict[str, Any]:
    return resource(type_, name, props or {}, parent=parent)


def resource(type_: str, name: str, props: dict[str, Any], *, type_path: str | None = None,
             parent: str | None = None) -> dict[str, Any]:
    return {"type": type_, "name": name, "urn": urn(type_path or type_, name),
            "props": props, "parent": parent, "dependencies": [], "property_dependencies": {}}


def production_service(service: str = "vizconfig", colours=("blue", "green"), live="blue",
                       environment: str = "production") -> list[dict[str, Any]]:
    """What Service deploys, as a stack policy sees it: components, containers, registrations,
    gates and the alias key depending on the live gate."""
    svc = component("bluegreen:service:Service", f"{environment}-{service}")
    resources = [svc]
    gates = {}
    for colour in colours:
        slot = component("bluegreen:service:ColourSlot", f"{svc['name']}-{colour}",
                         parent=svc["urn"])
        box = service_container(f"{slot['name']}-local-0", environment=environment,
                                service=service, colour=colour, parent=slot["urn"])
        reg = registration(f"{box['name']}-registration", parent=slot["urn"],
                           instance=f"{environment}-{service}-{colour}-local-0",
                           service=service, environment=environment, colour=colour)
        reg["dependencies"] = [box["urn"]]
        gates[colour] = gate(f"{slot['name']}-gate", environment=environment, service=service,
                             colour=colour, blocking=colour == live, parent=slot["urn"])
        gates[colour]["dependencies"] = [reg["urn"]]
        resources += [slot, box, reg, gates[colour]]
    alias = component("bluegreen:service:Alias", f"{svc['name']}-alias", parent=svc["urn"])
    key = consul_key(f"{alias['name']}-key", f"bluegreen/aliases/{environment}/{service}", live,
                     dependencies=[gates[live]["urn"]] if live in gates else [],
                     parent=alias["urn"])
    route = consul_key(f"{svc['name']}-route", f"bluegreen/routes/{environment}/{service}",
                       service, parent=svc["urn"])
    return resources + [alias, key, route]


# --- running the real validate functions -------------------------------------------------------
def _opts(parent: str | None = None) -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], parent)


def run_resource_policy(name: str, res: dict[str, Any], config: dict | None = None) -> list[str]:
    """Violations reported by the policy's validate for one resource, as the SDK calls it
    (props behind the SDK's unknown-checking proxy)."""
    reported: list[str] = []

    def report_violation(message: str, urn_: str | None = None) -> None:
        assert urn_ is None
        reported.append(message)

    args = ResourceValidationArgs(res["type"], unknown_checking_proxy(copy.deepcopy(res["props"])),
                                  res["urn"], res["name"], _opts(res.get("parent")), None, config)
    policy(name).validate(args, report_violation)
    return reported


def policy_resources(resources: list[dict[str, Any]]) -> list[PolicyResource]:
    """PolicyResources linked like the SDK links them (parent, dependencies by object)."""
    made = {r["urn"]: PolicyResource(r["type"], unknown_checking_proxy(copy.deepcopy(r["props"])),
                                     r["urn"], r["name"], _opts(r.get("parent")), None, None, [], {})
            for r in resources}
    for r in resources:
        target = made[r["urn"]]
        target.parent = made.get(r.get("parent") or "")
        target.dependencies = [made[u] for u in r.get("dependencies", []) if u in made]
        target.property_dependencies = {k: [made[u] for u in v if u in made]
                                        for k, v in r.get("property_dependencies", {}).items()}
    return list(made.values())


def run_stack_policy(name: str, resources: list[dict[str, Any]],
                     config: dict | None = None) -> list[tuple[str | None, str]]:
    reported: list[tuple[str | None, str]] = []

    def report_violation(message: str, urn_: str | None = None) -> None:
        reported.append((urn_, message))

    policy(name).validate(StackValidationArgs(policy_resources(resources), config), report_violation)
    return reported


def find(resources: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(r for r in resources if r["name"] == name)
