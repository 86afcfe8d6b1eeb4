"""Colours and aliases: colours are blue or green, and an alias (`bluegreen/aliases/<env>/<service>`
-> colour) is written only after the health gate of that colour and environment passed."""

from __future__ import annotations

from typing import Any, Mapping

from pulumi_policy import EnforcementLevel, Severity

from .common import (ALIAS_KEY, COLOURS, CONSUL_KEY, CONTAINER, HEALTH_GATE, REGISTRATION,
                     UNKNOWN, by_urn, dynamic_kind, is_unknown, known, labels_of, resource_policy,
                     stack_policy)

ALLOWED = " or ".join(COLOURS)


def _bad(value: Any) -> bool:
    return known(value) and value not in COLOURS


def check_colour_values(resource: Mapping[str, Any], _config: Mapping[str, Any]) -> list[str]:
    """Colour labels, gate colours, registration colours and alias values are blue or green."""
    props, name = resource["props"], resource["name"]
    if resource["type"] == CONTAINER:
        colour = labels_of(props).get("bluegreen.colour")
        if _bad(colour):
            return [f"container {name} has bluegreen.colour={colour!r}; colours are {ALLOWED}. "
                    "Configure the service's colours as blue:/green: in the stack config"]
        return []
    kind = dynamic_kind(resource)
    if kind == HEALTH_GATE and _bad(props.get("colour")):
        return [f"health gate {name} watches colour {props.get('colour')!r}; colours are {ALLOWED}"]
    if kind == REGISTRATION:
        payload = props.get("payload")
        meta = payload.get("Meta") if isinstance(payload, Mapping) else None
        if isinstance(meta, Mapping) and _bad(meta.get("colour")):
            return [f"registration {name} has Meta.colour={meta.get('colour')!r}; colours are "
                    f"{ALLOWED}. Build the payload with naming.registration_payload"]
    if kind == CONSUL_KEY:
        key, value = props.get("key"), props.get("value")
        if isinstance(key, str) and ALIAS_KEY.match(key) and _bad(value):
            return [f"alias {key} would point at {value!r}; an alias holds {ALLOWED}, the live "
                    "colour. Set `live: blue|green` for the service in the stack config"]
    return []


def _alias_target(resource: Mapping[str, Any]) -> tuple[Any, Any] | None:
    """(environment, service) of an alias ConsulKey, or None for other keys."""
    key = resource["props"].get("key")
    if isinstance(key, str):
        match = ALIAS_KEY.match(key)
        return (match["environment"], match["service"]) if match else None
    if is_unknown(key) and str(resource["name"]).endswith("-alias-key"):
        return (UNKNOWN, UNKNOWN)  # key not known yet: any gate's environment/service matches
    return None


def check_alias_gated(resources: list[dict[str, Any]],
                      _config: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    index = by_urn(resources)
    problems: list[tuple[str | None, str]] = []
    for alias in resources:
        if dynamic_kind(alias) != CONSUL_KEY:
            continue
        target = _alias_target(alias)
        if target is None:
            continue
        environment, service = target
        value = alias["props"].get("value")
        label = alias["props"].get("key") if known(alias["props"].get("key")) else alias["name"]
        depends_on = set(alias.get("dependencies") or [])
        depends_on.update((alias.get("property_dependencies") or {}).get("value") or [])
        gates = [index[u] for u in sorted(depends_on) if u in index
                 and dynamic_kind(index[u]) == HEALTH_GATE]
        if not gates:
            problems.append((alias["urn"], f"alias {label} is written without depending on a "
                             "health gate, so traffic could flip to a colour that never passed its "
                             "checks. Write aliases through the Alias component "
                             "(components/consul/alias.py): its value is the gate's colour output and it "
                             "depends_on the gate"))
            continue

        def matches(gate: Mapping[str, Any]) -> bool:
            props = gate["props"]
            pairs = [(props.get("environment"), environment), (props.get("service"), service),
                     (props.get("colour"), value)]
            return all(not known(found) or not known(wanted) or found == wanted
                       for found, wanted in pairs)

        matching = [g for g in gates if matches(g)]
        if not matching:
            seen = ", ".join(f"{g['props'].get('environment')}/{g['props'].get('service')}/"
                             f"{g['props'].get('colour')}" for g in gates)
            wanted = f"{environment}/{service}/{value if known(value) else '<live colour>'}"
            problems.append((alias["urn"], f"alias {label} -> {value if known(value) else '?'} "
                             f"depends on the gate(s) {seen} but not on the gate {wanted}: the "
                             "flip would not wait for the colour it points at. Pass the live "
                             "colour's ColourSlot.gate to Alias (Service does: "
                             "gate=self.slots[settings.live].gate)"))
        elif all(g["props"].get("blocking") is False for g in matching):
            problems.append((alias["urn"], f"alias {label} depends on the gate "
                             f"{matching[0]['name']}, but that gate does not block (it only "
                             "reports, as the offline colour's does), so the flip would not wait "
                             "for passing checks. The live colour's gate must block: "
                             "ColourSlot(live=True) creates HealthGate(blocking=True)"))
    return problems


POLICIES = [
    resource_policy(
        "colour-values",
        f"Colours (container labels, health gates, registrations, alias values) are only {ALLOWED}.",
        EnforcementLevel.MANDATORY, check_colour_values, severity=Severity.HIGH),
    stack_policy(
        "alias-depends-on-gate",
        "Every alias write (bluegreen/aliases/<env>/<service>) depends on a blocking health gate "
        "of the same environment, service and colour.",
        EnforcementLevel.MANDATORY, check_alias_gated, severity=Severity.CRITICAL),
]
