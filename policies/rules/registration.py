"""Registration: every service container is registered with Consul under its instance ID, tagged
[environment, colour], with an HTTP check: what the health gate and consul-template read."""

from __future__ import annotations

from typing import Any, Mapping

from pulumi_policy import EnforcementLevel, Severity

from .common import (REGISTRATION, dynamic_kind, is_service_container, is_unknown, known,
                     labels_of, stack_policy)

FIX_REGISTER = ("Create service containers through ColourSlot (components/service/colour_slot.py), which "
                "registers each one with its host's agent via AgentRegistration and "
                "naming.registration_payload")


def _registrations(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in resources if dynamic_kind(r) == REGISTRATION]


def find_registration(container: Mapping[str, Any],
                      registrations: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The registration of a container: payload.ID == its bluegreen.instance label or, while that
    payload is not known (preview), the one named `<container name>-registration`."""
    instance = labels_of(container["props"]).get("bluegreen.instance")
    for registration in registrations:
        payload = registration["props"].get("payload")
        if isinstance(payload, Mapping) and known(instance) and payload.get("ID") == instance:
            return registration
    expected = f"{container['name']}-registration"
    for registration in registrations:
        if registration["name"] == expected:
            return registration
    return None


def _payload(registration: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The payload when known (a preview of a new container cannot know its port yet)."""
    payload = registration["props"].get("payload")
    return payload if isinstance(payload, Mapping) else None


def check_registered(resources: list[dict[str, Any]],
                     _config: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    registrations = _registrations(resources)
    problems: list[tuple[str | None, str]] = []
    for container in filter(is_service_container, resources):
        labels = labels_of(container["props"])
        instance, name = labels.get("bluegreen.instance"), container["name"]
        registration = find_registration(container, registrations)
        if registration is None:
            problems.append((container["urn"], f"service container {name} (instance {instance}) "
                             "has no Consul registration, so no health check watches it, the gate "
                             f"cannot pass and the proxy never routes to it. {FIX_REGISTER}"))
            continue
        payload = _payload(registration)
        if payload is None:
            continue
        where = f"registration {registration['name']} of service container {name}"
        found_id = payload.get("ID")
        if known(found_id) and known(instance) and found_id != instance:
            problems.append((registration["urn"], f"{where} has ID {found_id!r}, not the container's "
                             f"instance {instance!r}; the gate looks instances up by that ID. "
                             "Register it with ID=naming.instance_id(...), the label's value"))
        service = labels.get("bluegreen.service")
        found_name = payload.get("Name")
        if known(found_name) and known(service) and found_name != service:
            problems.append((registration["urn"], f"{where} registers Consul service {found_name!r}, "
                             f"not {service!r}; register it under the service's name"))
        tags = payload.get("Tags")
        if is_unknown(tags):
            continue
        wanted = [labels.get("bluegreen.environment"), labels.get("bluegreen.colour")]
        tag_list = tags if isinstance(tags, list) else []
        missing = [t for t in wanted if known(t) and t not in tag_list]
        if missing:
            problems.append((registration["urn"], f"{where} has tags {tag_list}, missing "
                             f"{', '.join(map(str, missing))}; consul-template and the gate select "
                             "instances by the tags [environment, colour]. Register with "
                             "Tags=[environment, colour] (naming.registration_payload)"))
    return problems


def _http_checks(payload: Mapping[str, Any]) -> list[Any]:
    checks = []
    if isinstance(payload.get("Check"), Mapping):
        checks.append(payload["Check"])
    if isinstance(payload.get("Checks"), list):
        checks.extend(c for c in payload["Checks"] if isinstance(c, Mapping))
    return [c.get("HTTP") for c in checks]


def check_http_health(resources: list[dict[str, Any]],
                      _config: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    registrations = _registrations(resources)
    problems: list[tuple[str | None, str]] = []
    for container in filter(is_service_container, resources):
        name = container["name"]
        registration = find_registration(container, registrations)
        if registration is None:
            problems.append((container["urn"], f"service container {name} has no Consul "
                             f"registration and so no HTTP health check. {FIX_REGISTER}"))
            continue
        payload = _payload(registration)
        if payload is None or is_unknown(payload.get("Check")) or is_unknown(payload.get("Checks")):
            continue
        urls = _http_checks(payload)
        if any(is_unknown(u) or (isinstance(u, str) and u.startswith(("http://", "https://")))
               for u in urls):
            continue
        problems.append((registration["urn"], f"registration {registration['name']} of service "
                         f"container {name} has no HTTP check, so the health gate would pass an "
                         "instance that does not serve. Register it with Check={HTTP: "
                         "http://<address>:<port><health path>, Interval, Timeout} (the manifest's "
                         "`health:` feeds naming.registration_payload)"))
    return problems


POLICIES = [
    stack_policy(
        "service-registered-with-tags",
        "Every service container is registered with Consul under its bluegreen.instance ID, as "
        "its service, with tags [environment, colour].",
        EnforcementLevel.MANDATORY, check_registered, severity=Severity.HIGH),
    stack_policy(
        "service-http-health-check",
        "Every service container's Consul registration has an HTTP health check.",
        EnforcementLevel.MANDATORY, check_http_health, severity=Severity.HIGH),
]
