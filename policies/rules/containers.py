"""Containers: labelled service containers, no fixed host ports and no added privileges outside
the platform, memory limits and restart policies everywhere."""

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


# Options that give a container more than Docker's default confinement: what a service or a
# dependency never needs, and what would undo the hardening (capabilities, no-new-privileges).
HOST_NAMESPACES = ("pidMode", "ipcMode", "usernsMode")
UNCONFINED = ("seccomp=unconfined", "seccomp:unconfined", "apparmor=unconfined",
              "apparmor:unconfined", "label=disable", "label:disable", "systempaths=unconfined")
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")


def _entries(value: Any) -> list[Mapping[str, Any]]:
    """The known mappings of a list input (none while it is unknown)."""
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def added_privileges(props: Mapping[str, Any]) -> list[str]:
    """What in a container's inputs widens Docker's default confinement."""
    found = ["privileged: true"] if props.get("privileged") is True else []
    capabilities = props.get("capabilities")
    adds = capabilities.get("adds") if isinstance(capabilities, Mapping) else None
    found += [f"capabilities.adds: {adds}"] if isinstance(adds, list) and adds else []
    options = props.get("securityOpts")
    found += [f"security_opts: {o}" for o in (options if isinstance(options, list) else [])
              if isinstance(o, str) and o.replace(" ", "").lower() in UNCONFINED]
    found += [f"{key}: host" for key in HOST_NAMESPACES if props.get(key) == "host"]
    sources = [v.get("hostPath") for v in _entries(props.get("volumes"))]
    sources += [m.get("source") for m in _entries(props.get("mounts"))]
    found += [f"a mount of {s}" for s in sources if isinstance(s, str) and s.rstrip("/") in DOCKER_SOCKETS]
    devices = [d.get("hostPath") for d in _entries(props.get("devices"))]
    return found + [f"device {d}" for d in devices if isinstance(d, str)]


def check_no_added_privileges(resource: Mapping[str, Any], _config: Mapping[str, Any]) -> list[str]:
    """No container outside the platform runs privileged or with more than Docker's default."""
    if resource["type"] != CONTAINER:
        return []
    role = labels_of(resource["props"]).get(ROLE)
    if role in PLATFORM_ROLES:
        return []
    found = added_privileges(resource["props"])
    if not found:
        return []
    return [f"{role or 'unlabelled'} container {resource['name']} sets {', '.join(found)}: a "
            "service or a dependency needs none of that, and with it a compromised process reaches "
            "the host and every colour on it. Remove it from the container's arguments (service "
            "containers are made by ColourSlot with colour_slot.SERVICE_HARDENING, dependencies by "
            "Service._dependency; nothing in service.yaml sets these)"]


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
    resource_policy(
        "container-no-added-privileges",
        "Service and dependency containers are not privileged, add no capability, keep seccomp "
        "and AppArmor, share no host namespace and mount neither the Docker socket nor devices.",
        EnforcementLevel.MANDATORY, check_no_added_privileges, severity=Severity.CRITICAL),
    # Advisory: a colour deployed before the hardening keeps running as it was until its next
    # deploy (nothing replaces what may serve traffic), and this must not stop the update.
    resource_policy(
        "service-container-hardened",
        "Service containers drop every Linux capability and run with no-new-privileges.",
        EnforcementLevel.ADVISORY, check_hardened, severity=Severity.MEDIUM),
]
