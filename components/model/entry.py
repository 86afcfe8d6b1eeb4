"""What a stack's service entry and the manifest it deploys must agree on. The stack program and
the pipeline both check it here, before anything deploys."""

from __future__ import annotations

import os
from typing import Mapping

from bluegreen.components.model.config import DEFAULT_MAX_MEMORY_MB, ServiceConfig
from bluegreen.components.model.manifest import Manifest, check_variables
from bluegreen.components.model.validation import ConfigError


def check_entry(source: str, settings: ServiceConfig, manifest: Manifest) -> None:
    """A service's identity is its stack entry (`source` is the stack file): the manifest must be
    the file the entry names, and name the entry's service. A colour's env overrides none of the
    callees' URLs (the platform's other variables are refused where the entry is parsed), and
    no container of the manifest asks for more memory than the entry allows."""
    _check_identity(source, settings, manifest)
    _check_memory(source, settings, manifest)
    for colour, slot in sorted(settings.colours.items()):
        check_variables(source, f"bluegreen.services.{settings.name}.{colour}.env",
                        slot.environment, manifest.calls)


def _check_identity(source: str, settings: ServiceConfig, manifest: Manifest) -> None:
    field = f"bluegreen.services.{settings.name}"
    if manifest.name != settings.name:
        raise ConfigError(source, field, f"{manifest.path} names the service {manifest.name!r}; "
                          f"a service's identity is its stack entry: use that name as the key, "
                          f"or name the service {settings.name!r} in the manifest")
    if not same_file(manifest.path, settings.manifest):
        raise ConfigError(source, f"{field}.manifest", f"{settings.name} is deployed from "
                          f"{settings.manifest}, not from {manifest.path} (which names it too); a "
                          f"service's identity is its stack entry: deliver the repo the entry "
                          f"names, or change the entry's manifest in a reviewed change")


def _check_memory(source: str, settings: ServiceConfig, manifest: Manifest) -> None:
    asked = [("memory", manifest.memory_mb)] + [(f"dependencies.{d.alias}.memory", d.memory_mb)
                                                for d in manifest.dependencies]
    for field, megabytes in asked:
        if megabytes > settings.max_memory_mb:
            raise ConfigError(manifest.path, field, f"{megabytes}m is more than the "
                              f"{settings.max_memory_mb}m {source} allows a container of "
                              f"{settings.name}; ask for less, or raise bluegreen.services."
                              f"{settings.name}.maxMemory there (default {DEFAULT_MAX_MEMORY_MB}m)")


def same_file(first: str, second: str) -> bool:
    return os.path.realpath(first) == os.path.realpath(second)


def check_routes(source: str, manifests: Mapping[str, Manifest]) -> None:
    """No two services that `source` deploys share a route: nginx would refuse the whole routes
    file, for every service of every environment."""
    taken: dict[str, Manifest] = {}
    for _, manifest in sorted(manifests.items()):
        first = taken.setdefault(manifest.route, manifest)
        if first is not manifest:
            raise ConfigError(manifest.path, "route", f"{manifest.route!r} is the route of "
                              f"{first.name} ({first.path}) too, and {source} deploys both; routes "
                              f"are unique per environment: give {manifest.name} a route of its own")
