"""What our resources look like to a policy, and the glue between the policy SDK and the rules.

Every rule is a pure function over plain dicts, so it can be tested without an engine:

- a resource rule takes `(resource, config)` and returns a list of messages, where `resource` is
  `{"type", "name", "urn", "props"}` and `props` are the resource's *inputs*;
- a stack rule takes `(resources, config)` and returns a list of `(urn, message)`, where every
  resource is `{"type", "name", "urn", "props", "parent", "dependencies", "property_dependencies"}`,
  `props` are the resource's *outputs* and the last three hold URNs.

In both, a value that is not known yet (during a preview) is the `UNKNOWN` marker, never the SDK's
sentinel string and never an exception: a rule treats it as "cannot tell yet, assume fine", and
checks it again at `pulumi up`, when resource policies see the real inputs before each step.
A value that was a Pulumi secret is a `SecretStr` when `secret_markers.install()` ran (the pack's
`__main__.py` does that), see `is_secret`.

The constants mirror components/naming.py and components/docker_host.py; the policy tests keep
them equal, but the pack stays importable without the project's packages on its path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Iterable

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import (
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
    UnknownValueError,
)

from .secret_markers import SecretStr

# --- the vocabulary of components/naming.py -------------------------------------------------
COLOURS = ("blue", "green")
KV_ROOT = "bluegreen"
ALIAS_KEY = re.compile(rf"^{KV_ROOT}/aliases/(?P<environment>[^/]+)/(?P<service>[^/]+)$")
DIGEST_REFERENCE = re.compile(r"^(?P<repository>[^@\s]+)@sha256:[0-9a-f]{64}$")

# --- resource types ---------------------------------------------------------------------------
CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
SERVICE = "bluegreen:service:Service"
COLOUR_SLOT = "bluegreen:service:ColourSlot"
# Our dynamic resources each have their own type (components/naming.py: *_TYPE).
REGISTRATION_TYPE = "pulumi-python:dynamic/consul:Registration"
CONSUL_KEY_TYPE = "pulumi-python:dynamic/consul:Key"
HEALTH_GATE_TYPE = "pulumi-python:dynamic/consul:HealthGate"

# --- container labels (docker_host.labels: bluegreen.<key>) -----------------------------------
LABEL_PREFIX = "bluegreen."
ROLE = "bluegreen.role"
ROLE_SERVICE = "service"
ROLE_DEPENDENCY = "dependency"
# Only the platform publishes known host ports (and may use the host network).
PLATFORM_ROLES = frozenset({"consul-server", "consul-client", "registrator", "watchdog", "registry",
                            "registry-trust", "proxy", "vrrp", "prometheus", "delivery-exporter"})
SERVICE_LABELS = ("bluegreen.service", "bluegreen.environment", "bluegreen.colour",
                  "bluegreen.instance")

# --- kinds of dynamic resources, selected by type ------------------------------------------------
REGISTRATION = "registration"   # components/consul/registration.py: {address, payload}
CONSUL_KEY = "consul-key"       # components/consul/key.py: {address, key, value}
HEALTH_GATE = "health-gate"     # components/consul/health_gate.py: {service, environment, colour, ...}
DYNAMIC_KINDS = {REGISTRATION_TYPE: REGISTRATION, CONSUL_KEY_TYPE: CONSUL_KEY,
                 HEALTH_GATE_TYPE: HEALTH_GATE}


class _Unknown:
    """A value the engine does not know yet (preview). Compare with `is_unknown`."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = _Unknown()
_SENTINELS = frozenset({UNKNOWN_BOOLEAN_VALUE, UNKNOWN_NUMBER_VALUE, UNKNOWN_STRING_VALUE,
                        UNKNOWN_ARRAY_VALUE, UNKNOWN_ASSET_VALUE, UNKNOWN_ARCHIVE_VALUE,
                        UNKNOWN_OBJECT_VALUE})


def is_unknown(value: Any) -> bool:
    return value is UNKNOWN or (isinstance(value, str) and str(value) in _SENTINELS)


def is_secret(value: Any) -> bool:
    """True for a value that reached the pack as a Pulumi secret (see secret_markers)."""
    return isinstance(value, SecretStr)


def plain(value: Any) -> Any:
    """A deep copy of SDK properties as dicts and lists, with unknowns as UNKNOWN.

    The SDK hands rules proxies that raise UnknownValueError on every unknown they touch; plain
    values let a rule decide what an unknown means for it. Works on plain dicts too (tests)."""
    if isinstance(value, str):
        return UNKNOWN if is_unknown(value) else value
    if isinstance(value, Mapping):
        result = {}
        for key in value:
            try:
                result[key] = plain(value[key])
            except UnknownValueError:
                result[key] = UNKNOWN
        return result
    if isinstance(value, Sequence):
        items = []
        for index in range(len(value)):
            try:
                items.append(plain(value[index]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    return value


# --- reading our resources --------------------------------------------------------------------
def labels_of(props: Mapping[str, Any]) -> dict[str, Any]:
    """Container labels as a dict; pulumi-docker has them as a list of {label, value}."""
    raw = props.get("labels")
    if isinstance(raw, Mapping):
        return {str(k): v for k, v in raw.items()}
    labels: dict[str, Any] = {}
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, Mapping) and isinstance(item.get("label"), str):
                labels[item["label"]] = item.get("value")
    return labels


def role_of(props: Mapping[str, Any]) -> Any:
    return labels_of(props).get(ROLE)


def is_service_container(resource: Mapping[str, Any]) -> bool:
    return resource["type"] == CONTAINER and role_of(resource["props"]) == ROLE_SERVICE


def stack_of(urn: str) -> str:
    """The stack a resource belongs to: urn:pulumi:<stack>::<project>::<types>::<name>."""
    return urn.split(":", 2)[2].split("::", 1)[0] if urn.count(":") >= 2 else ""


def policy_config_file(urn: str) -> str:
    """The stack's own policy config, which ./bg and the delivery commands pass with the pack
    (bootstrap/policy.sh, delivery/stacks.policy_configs)."""
    return f"stacks/policy.{stack_of(urn)}.json"


def parent_type(urn: str) -> str:
    """The type of the resource's parent, from its URN's type chain (`parent$child`)."""
    types = urn.split("::")[2].split("$") if urn.count("::") >= 3 else []
    return types[-2] if len(types) >= 2 else ""


def dynamic_kind(resource: Mapping[str, Any]) -> str | None:
    """REGISTRATION, CONSUL_KEY, HEALTH_GATE or None, by the resource's type."""
    return DYNAMIC_KINDS.get(str(resource.get("type", "")))


def known(value: Any) -> bool:
    return value is not None and not is_unknown(value)


def show(value: Any) -> str:
    """A value for a message; protobuf numbers arrive as floats (8000.0 is shown as 8000)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --- glue to the SDK --------------------------------------------------------------------------
ResourceCheck = Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]]
StackCheck = Callable[[list[dict[str, Any]], Mapping[str, Any]], list[tuple[str | None, str]]]


def resource_view(args: ResourceValidationArgs) -> dict[str, Any]:
    return {"type": args.resource_type, "name": args.name, "urn": args.urn,
            "props": plain(args.props)}


def stack_view(resource: PolicyResource) -> dict[str, Any]:
    return {
        "type": resource.resource_type,
        "name": resource.name,
        "urn": resource.urn,
        "props": plain(resource.props),
        "parent": resource.parent.urn if resource.parent is not None else
        (resource.opts.parent if resource.opts is not None else None),
        "dependencies": [d.urn for d in resource.dependencies or []],
        "property_dependencies": {k: [d.urn for d in v]
                                  for k, v in (resource.property_dependencies or {}).items()},
    }


def config_of(args: Any) -> dict[str, Any]:
    config = args.get_config() if hasattr(args, "get_config") else None
    return plain(dict(config)) if config else {}


def resource_policy(name: str, description: str, enforcement_level: EnforcementLevel,
                    check: ResourceCheck, *, severity: Severity = Severity.HIGH,
                    config_schema: PolicyConfigSchema | None = None) -> ResourceValidationPolicy:
    """A ResourceValidationPolicy that reports every message of `check` for the resource."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in check(resource_view(args), config_of(args)):
            report_violation(message, None)

    validate.check = check  # type: ignore[attr-defined]
    return ResourceValidationPolicy(name=name, description=description, validate=validate,
                                    enforcement_level=enforcement_level, severity=severity,
                                    config_schema=config_schema)


def stack_policy(name: str, description: str, enforcement_level: EnforcementLevel,
                 check: StackCheck, *, severity: Severity = Severity.HIGH,
                 config_schema: PolicyConfigSchema | None = None) -> StackValidationPolicy:
    """A StackValidationPolicy that reports every (urn, message) of `check`."""

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [stack_view(r) for r in args.resources]
        for urn, message in check(resources, config_of(args)):
            report_violation(message, urn)

    validate.check = check  # type: ignore[attr-defined]
    return StackValidationPolicy(name=name, description=description, validate=validate,
                                 enforcement_level=enforcement_level, severity=severity,
                                 config_schema=config_schema)


def by_urn(resources: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {r["urn"]: r for r in resources}


def ancestors(resource: Mapping[str, Any], index: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """URNs of the resource's parents, nearest first."""
    chain, parent, seen = [], resource.get("parent"), set()
    while parent and parent not in seen:
        seen.add(parent)
        chain.append(parent)
        above = index.get(parent)
        parent = above.get("parent") if above else None
    return chain
