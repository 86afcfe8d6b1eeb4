"""Images: service containers run `<in-house registry>/<name>@sha256:<digest>`, never a moving tag."""

from __future__ import annotations

import re
from typing import Any, Mapping

from pulumi_policy import EnforcementLevel, PolicyConfigSchema, Severity

from .common import (CONTAINER, DIGEST_REFERENCE, REMOTE_IMAGE, ROLE_DEPENDENCY, ROLE_SERVICE,
                     SERVICE, is_unknown, labels_of, parent_type, policy_config_file,
                     resource_policy, role_of)

# Without configured registries, the in-house registry is the platform's: published on the
# loopback address of every host (components/platform/registry.py), which Docker trusts over plain HTTP.
LOOPBACK_REGISTRY = re.compile(r"^(127(\.\d{1,3}){3}|localhost|\[::1\])(:\d{1,5})?$")


def registry_of(repository: str) -> str:
    """The registry host of a repository; Docker Hub when the first part is not a host."""
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def image_problem(image: Any, registries: list[str] | None,
                  config_file: str = "stacks/policy.<stack>.json") -> str | None:
    """Why `image` is not a digest reference from an allowed registry, or None when it is.

    `registries` (host[:port] entries) is the allow-list; empty or None means loopback only;
    `config_file` is where the stack lists them."""
    if is_unknown(image):
        return None  # a new build's digest is known only once pushed; checked again at `up`
    if not isinstance(image, str) or not image:
        return "has no image reference"
    match = DIGEST_REFERENCE.match(image)
    if match is None:
        return (f"runs {image!r}, which is not pinned by digest: a tag can move under a running "
                "colour. Run the reference of a ServiceImage (repository@sha256:<64 hex>, see "
                "components/service/service_image.py), i.e. pass ServiceImage(...).reference to the container")
    registry = registry_of(match["repository"])
    if registry_allowed(registry, registries):
        return None
    if registries:
        return (f"runs an image from {registry}, which is not an in-house registry "
                f"({', '.join(registries)}). Build and push it with ServiceImage to the "
                f"platform registry, or add that registry to {config_file}: "
                f"{{\"service-image-pinned\": {{\"registries\": [..., \"{registry}\"]}}}}")
    return (f"runs an image from {registry}, not from the platform registry (published on "
            f"127.0.0.1). Build and push it with ServiceImage, or list the in-house registry in "
            f"{config_file}, e.g. {{\"service-image-pinned\": "
            "{\"registries\": [\"registry.example:5000\"]}}")


def _registries(config: Mapping[str, Any]) -> list[str]:
    raw = config.get("registries") or []
    return [str(r) for r in raw if isinstance(r, str) and r]


def check_service_image(resource: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    if resource["type"] != CONTAINER or role_of(resource["props"]) != ROLE_SERVICE:
        return []
    problem = image_problem(resource["props"].get("image"), _registries(config),
                            policy_config_file(resource["urn"]))
    return [f"service container {resource['name']} {problem}"] if problem else []


def check_dependency_image(resource: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    if resource["type"] != CONTAINER or role_of(resource["props"]) != ROLE_DEPENDENCY:
        return []
    image = resource["props"].get("image")
    if is_unknown(image) or (isinstance(image, str) and DIGEST_REFERENCE.match(image)):
        return []
    return [f"dependency container {resource['name']} runs {image!r}, a moving tag: the same "
            "deploy can start a different image tomorrow. Pin it in service.yaml as "
            "image: <repository>@sha256:<digest>, or give the dependency a `build:` context so "
            "the platform builds and pins it"]


def registry_allowed(registry: str, registries: list[str] | None) -> bool:
    """One of `registries` or, without any, a loopback registry (the platform's)."""
    return registry in registries if registries else bool(LOOPBACK_REGISTRY.match(registry))


def dependency_image_of(resource: Mapping[str, Any]) -> tuple[str, str] | None:
    """(image, what) for a dependency's container, or for the pull of its image: a direct
    child of a Service (a service's own images are pulled by its ColourSlots and built by its
    ServiceImages). The pull comes first, so the rule must stop it before anything is pulled."""
    props = resource["props"]
    if resource["type"] == CONTAINER and role_of(props) == ROLE_DEPENDENCY:
        alias = labels_of(props).get("bluegreen.dependency") or "<alias>"
        return props.get("image"), f"dependency container {resource['name']} (dependencies.{alias})"
    if resource["type"] == REMOTE_IMAGE and parent_type(resource["urn"]) == SERVICE \
            and not props.get("build"):
        return props.get("name"), f"the pull of dependency image {resource['name']}"
    return None


def check_dependency_registry(resource: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """A dependency's image comes from an allowed registry: a service.yaml's `image:` may name
    anything, and whatever it names is pulled to and runs on the platform's hosts beside the
    service."""
    found = dependency_image_of(resource)
    image, what = found if found else (None, "")
    if is_unknown(image) or not isinstance(image, str) or not image:
        return []
    registry, registries = registry_of(image.split("@", 1)[0]), _registries(config)
    if registry_allowed(registry, registries):
        return []
    allowed = ", ".join(registries) if registries else "the platform registry on 127.0.0.1"
    return [f"{what} runs {image!r} from {registry}, which is not an allowed registry "
            f"({allowed}). In the service's service.yaml, give that dependency a `build:` "
            "context instead of `image:` (the platform builds it and pushes it to its registry); "
            f"or, for a registry the site trusts, list it in {policy_config_file(resource['urn'])}: "
            f"{{\"dependency-image-registry\": {{\"registries\": [..., \"{registry}\"]}}}}"]


REGISTRIES_SCHEMA = PolicyConfigSchema(properties={
    "registries": {
        "type": "array",
        "items": {"type": "string"},
        "description": "In-house registries (host[:port]) service images may come from; "
                       "empty means the platform registry on a loopback address.",
    },
})

POLICIES = [
    resource_policy(
        "service-image-pinned",
        "Service containers run an image pinned by digest (repository@sha256:...) from the "
        "in-house registry, never a moving tag.",
        EnforcementLevel.MANDATORY, check_service_image,
        severity=Severity.HIGH, config_schema=REGISTRIES_SCHEMA),
    resource_policy(
        "dependency-image-pinned",
        "Linked dependency containers (databases, caches) run an image pinned by digest.",
        EnforcementLevel.ADVISORY, check_dependency_image, severity=Severity.MEDIUM),
    resource_policy(
        "dependency-image-registry",
        "Linked dependency containers run images from an allowed registry (the platform's, or "
        "one listed in config `registries`).",
        EnforcementLevel.MANDATORY, check_dependency_registry,
        severity=Severity.HIGH, config_schema=REGISTRIES_SCHEMA),
]
