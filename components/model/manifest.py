"""The service manifest (`service.yaml`), the only file a service team writes for the platform.

Nothing Pulumi-specific lives in it. Parsing is pure: `load_manifest(path)` returns typed,
validated objects or raises ConfigError naming the file, the field and what is allowed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from bluegreen.components.model.validation import ConfigError, Fields
from bluegreen.components.naming import joined_name_problem, reserved_variables

NAME_PATTERN = r"[a-z][a-z0-9-]{0,30}[a-z0-9]"
NAME_HINT = "lower-case letters, digits and '-', 2-32 characters, starting with a letter"


@dataclass(frozen=True)
class BuildSpec:
    """How to build an image: a context directory (absolute) and a Dockerfile inside it."""

    context: str
    dockerfile: str = "Dockerfile"


@dataclass(frozen=True)
class HealthCheck:
    """The HTTP check Consul runs against every instance."""

    path: str = "/health"
    interval_s: float = 2.0
    timeout_s: float = 1.0


@dataclass(frozen=True)
class Dependency:
    """A linked container (e.g. a database) reached by the service as `<alias>:<port>`."""

    alias: str
    port: int
    image: str | None = None
    build: BuildSpec | None = None
    environment: dict[str, str] = field(default_factory=dict)
    volume: str | None = None
    memory_mb: int = 256


@dataclass(frozen=True)
class TestSpec:
    """The command that tests the image in isolation (run in a throwaway container)."""

    command: tuple[str, ...]


@dataclass(frozen=True)
class AcceptanceSpec:
    """The service's automated tests against a deployed environment: run in a throwaway container
    of `image` (default: the service's own image, just built), with BASE_URL set to the
    environment's stable URI as that container reaches it."""

    command: tuple[str, ...]
    image: str | None = None       # repository@sha256:..., a tester image of the team's own


@dataclass(frozen=True)
class Manifest:
    """A validated service manifest."""

    path: str
    name: str
    description: str
    build: BuildSpec
    port: int
    health: HealthCheck
    dependencies: tuple[Dependency, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    route: str = ""
    config: dict[str, str] = field(default_factory=dict)
    test: TestSpec | None = None
    memory_mb: int = 128
    acceptance: AcceptanceSpec | None = None
    calls: tuple[str, ...] = ()

    @property
    def directory(self) -> str:
        return os.path.dirname(self.path)


def load_manifest(path: str, setting: tuple[str, str] | None = None) -> Manifest:
    """Reads and validates a service.yaml file. `setting` is (stack file, key) of the stack
    setting that points at it: a missing file is that setting's error."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        if setting:
            raise ConfigError(*setting, f"{path} does not exist. Manifest paths are relative to "
                              "the project folder (the one with Pulumi.yaml), not to the stack "
                              "file: set it to the service repo's service.yaml, e.g. "
                              "services/vizconfig/service.yaml, or ../vizconfig/service.yaml for "
                              "a repo checked out beside this one") from None
        raise ConfigError(path, "(file)", "not found; point the stack's manifest setting at the "
                          "service repo's service.yaml") from None
    except yaml.YAMLError as error:
        raise ConfigError(path, "(file)", f"is not valid YAML: {error}") from None
    return parse_manifest(data, path)


def parse_manifest(data: object, path: str) -> Manifest:
    """Validates manifest data that was read from `path` (used for messages and relative paths)."""
    top = Fields(path, "", data, ["name", "description", "build", "port", "health", "dependencies",
                                  "env", "route", "config", "test", "memory", "acceptance",
                                  "calls"])
    base = os.path.dirname(os.path.abspath(path))
    name = joinable(top, "name", top.string("name", pattern=NAME_PATTERN, hint=NAME_HINT))
    health = top.nested("health", ["path", "interval", "timeout"])
    check = HealthCheck(
        path=health.string("path", "/health", pattern=r"/[A-Za-z0-9._~%/?=&+-]*",
                           hint="an absolute URL path such as /health (letters, digits and "
                                "/ . _ ~ % ? = & + -)"),
        interval_s=health.duration("interval", "2s"),
        timeout_s=health.duration("timeout", "1s"),
    )
    if check.timeout_s > check.interval_s:
        raise health.error("timeout", "must not be longer than health.interval")
    dependencies = _dependencies(top, base)
    environment = top.string_map("env")
    clash = sorted({d.alias for d in dependencies} & {name})
    if clash:
        raise top.error("dependencies", f"alias {clash[0]!r} equals the service name; rename it")
    calls = _calls(top, name)
    check_variables(top.source, top.at("env"), environment, calls)
    test = TestSpec(_command(top, "test")) if top.has("test") else None
    acceptance = _acceptance(top)
    return Manifest(
        path=os.path.abspath(path),
        name=name,
        description=top.string("description", hint="one line saying what the service does"),
        build=_build(top, "build", base, default={"context": "."}),
        port=top.integer("port", minimum=1, maximum=65535),
        health=check,
        dependencies=dependencies,
        environment=environment,
        route=top.string("route", name, pattern=NAME_PATTERN, hint=NAME_HINT),
        config=top.string_map("config"),
        test=test,
        memory_mb=memory_size(top, "memory", "128m"),
        acceptance=acceptance,
        calls=calls,
    )


def joinable(fields: Fields, key: str, name: str) -> str:
    """`name` (a service or environment name at `key`), refused where the proxy could not tell it
    from a join of two names."""
    problem = joined_name_problem(name)
    if problem:
        raise fields.error(key, problem)
    return name


def check_variables(source: str, field: str, environment: dict[str, str],
                    calls: tuple[str, ...] = ()) -> None:
    """Refuses a variable the platform sets in the service's containers (`field` is where
    `environment` was written)."""
    reserved = reserved_variables(calls)
    taken = sorted(set(environment) & set(reserved))
    if taken:
        raise ConfigError(source, f"{field}.{taken[0]}", f"is reserved ({reserved[taken[0]]} in "
                          "every container of the service); remove it, or give your variable "
                          "another name")


def _calls(top: Fields, name: str) -> tuple[str, ...]:
    """`calls: [service, ...]`: the services of the same environment this one calls through the
    proxy, by name; sorted, each once."""
    calls = top.raw("calls", [])
    if not isinstance(calls, list) or not all(isinstance(c, str) for c in calls):
        raise top.error("calls", "must be a list of service names, e.g. calls: [vizconfig]")
    for callee in calls:
        if not re.fullmatch(NAME_PATTERN, callee):
            raise top.error("calls", f"{callee!r} is not a service name ({NAME_HINT})")
        joinable(top, "calls", callee)
    if name in calls:
        raise top.error("calls", f"a service does not call itself through the proxy; remove {name!r}")
    if len(set(calls)) != len(calls):
        raise top.error("calls", "names a service twice; list each callee once")
    return tuple(sorted(calls))


def _command(top: Fields, key: str) -> tuple[str, ...]:
    """`<key>: {command: ...}`."""
    return _command_field(top.nested(key, ["command"]))


def _command_field(fields: Fields) -> tuple[str, ...]:
    """`command`: a list of strings, or a string run by /bin/sh -c."""
    command = fields.required("command")
    if isinstance(command, str):
        command = ["/bin/sh", "-c", command]
    if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
        raise fields.error("command", "must be a string or a non-empty list of strings")
    return tuple(command)


def _acceptance(top: Fields) -> AcceptanceSpec | None:
    """`acceptance: {command: ..., image: ...}`; the image by digest, as every image the platform
    runs: a moving tag would test something other than what the report names."""
    if not top.has("acceptance"):
        return None
    fields = top.nested("acceptance", ["command", "image"])
    image = fields.string("image", pattern=r"[^@\s]+@sha256:[0-9a-f]{64}",
                          hint="a digest reference repository@sha256:<64 hex>; leave it out to "
                               "run the command in the service's own image") \
        if fields.has("image") else None
    return AcceptanceSpec(_command_field(fields), image)


# Build paths: the parsers of paths below would choke on a NUL.
BUILD_PATH = {"pattern": r"[^\x00-\x1f\x7f]+",
              "hint": "a path relative to the manifest's folder, without control characters"}


def _build(parent: Fields, key: str, base: str, default: dict[str, Any] | None = None) -> BuildSpec:
    spec = parent.nested(key, ["context", "dockerfile"], default)
    context = os.path.normpath(os.path.join(base, spec.string("context", ".", **BUILD_PATH)))
    _inside(spec, "context", context, base)
    if not os.path.isdir(context):
        raise spec.error("context", f"directory {context} does not exist; paths are relative to "
                         "the manifest's folder")
    dockerfile = spec.string("dockerfile", "Dockerfile", **BUILD_PATH)
    _inside(spec, "dockerfile", os.path.join(context, dockerfile), base)
    if not os.path.isfile(os.path.join(context, dockerfile)):
        raise spec.error("dockerfile", f"{dockerfile} not found in {context}")
    return BuildSpec(context=context, dockerfile=dockerfile)


def _inside(spec: Fields, key: str, path: str, base: str) -> None:
    """Refuses a build path that resolves (symlinks followed) outside the service repo's folder:
    the build would put the deploying machine's files (state, keys) into an image."""
    resolved, folder = os.path.realpath(path), os.path.realpath(base)
    if os.path.commonpath([resolved, folder]) != folder:
        raise spec.error(key, f"{spec.raw(key)!r} resolves to {resolved}, outside the service "
                         f"repo's folder {folder}; the build context and Dockerfile must be inside "
                         "it: write a path relative to the manifest's folder (e.g. . or app), "
                         "with no symlink that leads out")


def _dependencies(top: Fields, base: str) -> tuple[Dependency, ...]:
    raw = top.raw("dependencies", {})
    if not isinstance(raw, dict):
        raise top.error("dependencies", "must be a mapping of alias to dependency, e.g. db: {image: ..., port: 6379}")
    result = []
    for alias in raw:
        if not isinstance(alias, str) or not re.fullmatch(NAME_PATTERN, alias):
            raise top.error("dependencies", f"alias {alias!r} is not allowed; {NAME_HINT}")
        dep = Fields(top.source, f"dependencies.{alias}", raw[alias],
                     ["image", "build", "port", "env", "volume", "memory"])
        if dep.has("image") == dep.has("build"):
            raise dep.error("image", "give exactly one of image (a reference) or build (a context)")
        volume = dep.raw("volume")
        if volume is not None and (not isinstance(volume, str) or not volume.startswith("/")):
            raise dep.error("volume", "must be an absolute path inside the container, e.g. /var/lib/data")
        result.append(Dependency(
            alias=alias,
            port=dep.integer("port", minimum=1, maximum=65535),
            image=dep.string("image") if dep.has("image") else None,
            build=_build(dep, "build", base) if dep.has("build") else None,
            environment=dep.string_map("env"),
            volume=volume,
            memory_mb=memory_size(dep, "memory", "256m"),
        ))
    return tuple(result)


def memory_size(fields: Fields, key: str, default: str) -> int:
    """A memory size like 128m or 1g at `key`, in megabytes."""
    text = fields.string(key, default, pattern=r"[0-9]+[mg]", hint="a size such as 128m or 1g")
    number = int(text[:-1])
    megabytes = number * 1024 if text.endswith("g") else number
    if megabytes < 16:
        raise fields.error(key, "must be at least 16m")
    return megabytes
