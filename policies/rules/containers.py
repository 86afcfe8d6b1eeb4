"""Containers: labelled service containers, no fixed host ports outside the platform, memory
limits and restart policies everywhere."""

from __future__ import annotations

from typing import Any, Mapping

from pulumi_policy import EnforcementLevel, Severity

from .common import (CONTAINER, PLATFORM_ROLES, ROLE, ROLE_SERVICE, SERVICE_LABELS, is_unknown,
                     known, labels_of, resource_policy, show)

RESTART_POLICIES = ("always", "unless-stopped", "on-failure")


def check_service_labels(resource: Mapping[str, Any], _config: Mapping[str, Any]) -> list[str]:
    """Service containers carry the labels the other rules (and cleanup) rely on."""
    if resource["type"] != CONTAINER:
        return []
    labels = labels_of(resource["props"])
    if labels.get(ROLE) != ROLE_SERVICE:
        return []
    name = resource["name"]
    missing = [label for label in SERVICE_LABELS
               if not is_unknown(labels.get(label)) and not labels.get(label)]
    if missing:
        return [f"service container {name} lacks the label(s) {', '.join(missing)}; create service "
                "containers through ColourSlot (components/service/colour_slot.py), which labels them with "
                "docker_host.labels(role='service', service=..., environment=..., colour=..., "
                "instance=...)"]
    values = [labels[label] for label in SERVICE_LABELS]
    if any(is_unknown(v) for v in values):
        return []
    service, environment, colour, instance = values
    prefix = f"{environment}-{service}-{colour}-"
    if not str(instance).startswith(prefix):
        return [f"service container {name} has bluegreen.instance={instance!r}, which does not "
                f"start with {prefix!r} (environment-service-colour-host-index, as "
                "naming.instance_id makes it); its Consul registration and health gate would "
                "not find it. Use naming.instance_id for the label"]
    return []


def check_host_ports(resource: Mapping[str, Any], _config: Mapping[str, Any]) -> list[str]:
    """Only platform containers publish fixed host ports or use the host network."""
    if resource["type"] != CONTAINER:
        return []
    props = resource["props"]
    role = labels_of(props).get(ROLE)
    if role in PLATFORM_ROLES:
        return []
    what = f"{role or 'unlabelled'} container {resource['name']}"
    problems = []
    if props.get("networkMode") == "host":
        problems.append(f"{what} uses the host network, which binds its ports on the host and "
                        "collides with the other colour. Drop network_mode and attach it to the "
                        "service's private network; only the platform runs on the host network")
    ports = props.get("ports")
    for port in ports if isinstance(ports, list) else []:
        external = port.get("external") if isinstance(port, Mapping) else None
        if not known(external) or external == 0:
            continue
        problems.append(f"{what} publishes internal port {show(port.get('internal'))} on fixed "
                        f"host port {show(external)}, so blue and green (and a replacement) "
                        "cannot run side by side. Leave `external` unset: Docker picks a free "
                        "port and the Consul registration advertises it; only the platform "
                        "publishes known ports")
    return problems


def check_memory(resource: Mapping[str, Any], _config: Mapping[str, Any]) -> list[str]:
    if resource["type"] != CONTAINER:
        return []
    memory = resource["props"].get("memory")
    if is_unknown(memory) or (isinstance(memory, (int, float)) and not isinstance(memory, bool)
                              and memory > 0):
        return []
    return [f"container {resource['name']} has no memory limit, so one leaking instance can starve "
            "every colour on the host. Set `memory` (MB): `memory:` in service.yaml for services "
            "and dependencies, or memory= on platform containers"]


def check_restart(resource: Mapping[str, Any], _config: Mapping[str, Any]) -> list[str]:
    if resource["type"] != CONTAINER:
        return []
    restart = resource["props"].get("restart")
    if is_unknown(restart) or restart in RESTART_POLICIES:
        return []
    shown = "none" if restart in (None, "") else repr(restart)
    return [f"container {resource['name']} has restart policy {shown}, so it stays down after a "
            "crash or a Docker restart and its colour is no longer warm. Set "
            f"restart=\"unless-stopped\" (or one of {', '.join(RESTART_POLICIES)})"]


def check_hardened(resource: Mapping[str, Any], _config: Mapping[str, Any]) -> list[str]:
    """Service containers drop every capability and run with no-new-privileges."""
    if resource["type"] != CONTAINER or labels_of(resource["props"]).get(ROLE) != ROLE_SERVICE:
        return []
    props = resource["props"]
    capabilities, options = props.get("capabilities"), props.get("securityOpts")
    if is_unknown(capabilities) or is_unknown(options):
        return []
    drops = capabilities.get("drops") if isinstance(capabilities, Mapping) else None
    if drops == ["ALL"] and isinstance(options, list) and "no-new-privileges:true" in options:
        return []
    return [f"service container {resource['name']} keeps Linux capabilities or may gain "
            "privileges; run it with capabilities {drops: [ALL]} and security_opts "
            "[no-new-privileges:true] (colour_slot.SERVICE_HARDENING). A colour deployed before "
            "that gets them with its next deploy"]


POLICIES = [
    resource_policy(
        "service-container-labels",
        "Service containers carry bluegreen.service, .environment, .colour and .instance labels, "
        "the instance being environment-service-colour-host-index.",
        EnforcementLevel.MANDATORY, check_service_labels, severity=Severity.HIGH),
    resource_policy(
        "no-fixed-host-ports",
        "Service and dependency containers publish no fixed host port and do not use the host "
        "network; only the platform (Consul, registry, proxy) publishes known ports.",
        EnforcementLevel.MANDATORY, check_host_ports, severity=Severity.HIGH),
    resource_policy(
        "container-memory-limit",
        "Every container has a memory limit.",
        EnforcementLevel.MANDATORY, check_memory, severity=Severity.MEDIUM),
    resource_policy(
        "container-restart-policy",
        "Every container has a restart policy (unless-stopped, always or on-failure).",
        EnforcementLevel.MANDATORY, check_restart, severity=Severity.MEDIUM),
    # Advisory: a colour deployed before the hardening keeps running as it was until its next
    # deploy (nothing replaces what may serve traffic), and this must not stop the update.
    resource_policy(
        "service-container-hardened",
        "Service containers drop every Linux capability and run with no-new-privileges.",
        EnforcementLevel.ADVISORY, check_hardened, severity=Severity.MEDIUM),
]
