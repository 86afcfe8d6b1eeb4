"""Production: both colour slots of every service stay deployed, so a rollback (reverting `live`)
always finds a warm colour, unless the offline colour is explicitly retired in the policy config:

    {"production-keeps-both-colours": {"retired": ["production/vizconfig/green"]}}

passed with `pulumi preview|up --policy-pack policies --policy-pack-config <that file>`.
`environments` (default ["production"]) names the environments the rule applies to.

And, advisory unless the config makes it mandatory (`"enforcementLevel": "mandatory"`), every
flip there goes through a progressive rollout judged by real traffic: the service's catalogue
entry (naming.catalogue_entry, a Consul key every service writes) names its rollout's steps.

    {"production-rollouts-analysed": {"enforcementLevel": "mandatory", "exempt": ["production/x"]}}"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, Sequence

from pulumi_policy import EnforcementLevel, PolicyConfigSchema, Severity

from .common import (ALIAS_KEY, COLOUR_SLOT, COLOURS, CONSUL_KEY, CONTAINER, HEALTH_GATE,
                     SERVICE, ancestors, by_urn, dynamic_kind, known, labels_of, stack_policy)

DEFAULT_ENVIRONMENTS = ("production",)
RETIRED_ENTRY = re.compile(r"^[^/\s]+/[^/\s]+/(blue|green)$")


def service_identity(service: Mapping[str, Any], descendants: Sequence[Mapping[str, Any]],
                     environments: tuple[str, ...]) -> tuple[str, str] | None:
    """(environment, service name) of a Service component, read from what it deployed: its alias
    key, else its gates, else its containers' labels, else its name (`<environment>-<service>`)."""
    for resource in descendants:
        if dynamic_kind(resource) == CONSUL_KEY:
            key = resource["props"].get("key")
            match = ALIAS_KEY.match(key) if isinstance(key, str) else None
            if match:
                return match["environment"], match["service"]
    for resource in descendants:
        props = resource["props"]
        if dynamic_kind(resource) == HEALTH_GATE and known(props.get("environment")) \
                and known(props.get("service")):
            return props["environment"], props["service"]
    for resource in descendants:
        if resource["type"] == CONTAINER:
            labels = labels_of(resource["props"])
            environment, name = labels.get("bluegreen.environment"), labels.get("bluegreen.service")
            if known(environment) and known(name):   # Docker's labels are strings
                return str(environment), str(name)
    for environment in environments:
        if str(service["name"]).startswith(f"{environment}-"):
            return environment, str(service["name"])[len(environment) + 1:]
    return None


def deployed_colours(service: Mapping[str, Any], descendants: Sequence[Mapping[str, Any]]) -> set[str]:
    """Colours with a ColourSlot under the Service (named `<service resource name>-<colour>`)."""
    colours = set()
    for resource in descendants:
        if resource["type"] == COLOUR_SLOT and resource.get("parent") == service["urn"]:
            for colour in COLOURS:
                if str(resource["name"]) == f"{service['name']}-{colour}" or \
                        resource["props"].get("colour") == colour:
                    colours.add(colour)
    return colours


def _settings(config: Mapping[str, Any]) -> tuple[tuple[str, ...], set[str]]:
    environments = tuple(str(e) for e in config.get("environments") or DEFAULT_ENVIRONMENTS)
    retired = {str(r) for r in config.get("retired") or [] if isinstance(r, str)}
    return environments, retired


def check_both_colours(resources: list[dict[str, Any]],
                       config: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    environments, retired = _settings(config)
    index = by_urn(resources)
    children: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        for above in ancestors(resource, index):
            children.setdefault(above, []).append(resource)
    problems: list[tuple[str | None, str]] = []
    for service in resources:
        if service["type"] != SERVICE:
            continue
        descendants = children.get(service["urn"], [])
        identity = service_identity(service, descendants, environments)
        if identity is None or identity[0] not in environments:
            continue
        environment, name = identity
        deployed = deployed_colours(service, descendants)
        for colour in COLOURS:
            entry = f"{environment}/{name}/{colour}"
            if colour in deployed or entry in retired:
                continue
            problems.append((service["urn"], f"{environment}/{name} has no {colour} colour slot, "
                             "so a rollback would find no warm colour to flip back to. Keep "
                             f"`{colour}: {{version: ...}}` under bluegreen:services.{name} in the "
                             "stack config, or retire it on purpose with the policy config "
                             f"{{\"production-keeps-both-colours\": {{\"retired\": [\"{entry}\"]}}}}"))
    return problems


CONFIG_SCHEMA = PolicyConfigSchema(properties={
    "retired": {
        "type": "array",
        "items": {"type": "string", "pattern": RETIRED_ENTRY.pattern},
        "description": "Colour slots retired on purpose, as <environment>/<service>/<colour>.",
    },
    "environments": {
        "type": "array",
        "items": {"type": "string"},
        "description": "Environments that must keep both colours (default: production).",
    },
})

CATALOGUE_KEY = re.compile(r"^bluegreen/catalogue/(?P<environment>[^/]+)/(?P<service>[^/]+)$")


def check_rollouts(resources: list[dict[str, Any]],
                   config: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """Each service of the configured environments declares a rollout (its catalogue entry)."""
    environments, _ = _settings(config)
    exempt = {str(e) for e in config.get("exempt") or []}
    problems: list[tuple[str | None, str]] = []
    for resource in resources:
        key = resource["props"].get("key") if dynamic_kind(resource) == CONSUL_KEY else None
        match = CATALOGUE_KEY.match(key) if isinstance(key, str) else None
        if not match or match["environment"] not in environments or \
                f"{match['environment']}/{match['service']}" in exempt:
            continue
        value = resource["props"].get("value")
        if not known(value):
            continue
        try:
            rollout = json.loads(value).get("rollout")
        except (ValueError, AttributeError):
            continue
        if not rollout or not rollout.get("steps"):
            name = match["service"]
            problems.append((resource["urn"], f"{match['environment']}/{name} flips all its traffic "
                             "at once; here a flip goes through a rollout judged by real traffic: add "
                             f"rollout: {{steps: [5, 25, 50], stepTime: 2m}} to bluegreen:services.{name}"
                             " (the platform needs Prometheus), or exempt it in this policy's config"))
    return problems


ROLLOUT_SCHEMA = PolicyConfigSchema(properties={
    "environments": {"type": "array", "items": {"type": "string"},
                     "description": "Environments whose flips must roll out (default: production)."},
    "exempt": {"type": "array", "items": {"type": "string"},
               "description": "Services exempt, as <environment>/<service>."},
})

POLICIES = [
    stack_policy(
        "production-keeps-both-colours",
        "In production every service keeps both colour slots deployed, so a rollback finds a warm "
        "colour, unless the offline one is listed as retired in this policy's config.",
        EnforcementLevel.MANDATORY, check_both_colours, severity=Severity.HIGH,
        config_schema=CONFIG_SCHEMA),
    stack_policy(
        "production-rollouts-analysed",
        "In production every flip goes through a progressive rollout, each step judged by the "
        "real traffic in Prometheus (advisory unless this policy's config makes it mandatory).",
        EnforcementLevel.ADVISORY, check_rollouts, severity=Severity.MEDIUM,
        config_schema=ROLLOUT_SCHEMA),
]
