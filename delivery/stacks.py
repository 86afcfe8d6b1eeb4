"""The project's stacks through the Automation API: typed config in (the same parser the program
uses), path-wise config changes out (`stack.set_config(..., path=True)` writes
stacks/Pulumi.<stack>.yaml), `up` with its log, outputs, and what Consul says is live."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import yaml

from bluegreen.components.consul import api as consul_api
from bluegreen.components.model.config import (
    OBJECT_KEYS, STRING_KEYS, ServiceConfig, StackConfig, parse_stack_config, read_stack_file,
    stack_deploying, stack_file, stack_values
)
from bluegreen.components.naming import COLOURS, alias_key
from bluegreen.components.model.credentials import deployer_token

from . import REPO, recovery
from .steps import StepFailed

if TYPE_CHECKING:   # the SDK itself loads when first used (automation())
    from pulumi.automation import EngineEvent

NAMESPACE = "bluegreen"
# The project's policy pack: every `pulumi up` the delivery commands start runs it, so its
# mandatory rules hold there as in the workflow (./bg up and ./bg pulumi up add it too).
POLICY_PACK = os.path.join(REPO, "policies")


def policy_config_file(stack: str) -> str:
    """Where `stack`'s own policy config lives, relative to the repo."""
    return os.path.join("stacks", f"policy.{short_name(stack)}.json")


def policy_configs(stack: str) -> list[str] | None:
    """The pack's config for `stack`, stacks/policy.<stack>.json, when it has one (what its
    registries are: a platform whose registry is not on loopback lists it there)."""
    path = os.path.join(REPO, policy_config_file(stack))
    return [path] if os.path.exists(path) else None


def allowed_registries(stack: str, rule: str) -> list[str]:
    """The registries (host[:port]) the pack's `rule` allows on `stack`, from its policy config;
    none listed means the platform's registry on a loopback address only."""
    for path in policy_configs(stack) or []:
        with open(path, encoding="utf-8") as handle:
            settings = json.load(handle).get(rule)
        if isinstance(settings, Mapping):
            return [str(r) for r in settings.get("registries") or [] if r]
    return []


def automation():
    """Pulumi's Automation API, imported when a command first changes a stack: an alias-only
    rollback moves the alias before it needs it, and the SDK takes a fifth of a second to load."""
    from pulumi import automation as auto
    return auto
CONTAINER = "docker:index/container:Container"


def short_name(stack: str) -> str:
    """`organization/bluegreen/prod` -> `prod`: stacks of this project live in one backend."""
    return stack.rsplit("/", 1)[-1]


def decode_values(raw: dict[str, str]) -> dict:
    """`bluegreen:*` config values (strings, objects as JSON) -> the program's typed inputs."""
    values = {}
    for key, value in raw.items():
        namespace, _, name = key.partition(":")
        if namespace != NAMESPACE or name not in (*STRING_KEYS, *OBJECT_KEYS):
            continue
        values[name] = json.loads(value) if name in OBJECT_KEYS and isinstance(value, str) else value
    return values


def error_summary(text: str, limit: int = 900) -> str:
    """The lines of a failed `pulumi` run that say what went wrong (not the whole transcript)."""
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line in lines:
            continue
        if re.search(r"\berror:|did not pass|invalid configuration|Exception:|Error:", line) \
                and not re.fullmatch(r"error: (update|preview) failed", line):
            lines.append(line)
    summary = " | ".join(lines) if lines else " ".join(text.split())[-limit:]
    return summary[:limit]


def classify(ops: set[str]) -> str:
    """One word per resource for the ops an update or preview reports for it."""
    if ops & {"replace", "create-replacement", "delete-replaced"}:
        return "replaced"
    for op, word in (("create", "created"), ("delete", "deleted"), ("update", "updated")):
        if op in ops:
            return word
    return "unchanged"


def container_changes(events) -> str:
    """`1 replaced, 2 created` over the containers an update touched (from its engine events)."""
    ops: dict[str, set[str]] = {}
    for event in events:
        metadata = getattr(getattr(event, "resource_pre_event", None), "metadata", None)
        if metadata is not None and metadata.type == CONTAINER:
            ops.setdefault(metadata.urn, set()).add(getattr(metadata.op, "value", str(metadata.op)))
    counts: dict[str, int] = {}
    for word in map(classify, ops.values()):
        if word != "unchanged":
            counts[word] = counts.get(word, 0) + 1
    return ", ".join(f"{n} {word}" for word, n in sorted(counts.items()))


@dataclass
class ColourState:
    """A service's colours in one stack: what config says and what the alias in Consul says."""

    live: str | None
    alias: str | None
    colours: dict[str, dict | None]     # colour -> its version and image (None: not configured)

    def as_dict(self) -> dict:
        return {"live": self.live, "alias": self.alias, **self.colours}


class EnvStack:
    """A stack of this project (its config file under stacks/)."""

    def __init__(self, name: str, log_path: str | None = None):
        self.name = short_name(name)
        path = os.path.join(REPO, "stacks", f"Pulumi.{self.name}.yaml")
        if not os.path.exists(path):
            raise StepFailed(f"stack {self.name} has no config file {os.path.relpath(path, REPO)}")
        self.path = path
        self._stack = None   # the Automation API stack (see `stack`)
        self.log_path = log_path
        self._values: dict | None = None
        self._deployer_token: str | None = None
        self.last_changes: dict[str, int] = {}
        self.container_changes: str = ""

    @property
    def stack(self):
        """The Automation API stack, selected on first use (it runs the CLI: a second or so)."""
        if self._stack is None:
            self._stack = automation().create_or_select_stack(stack_name=self.name, work_dir=REPO)
        return self._stack

    # -- config
    def values(self) -> dict:
        """The stack's bluegreen:* config as its program deploys it: read from its file, a service
        stack's with what it inherits from its environment stack (secrets are not among them; a
        change through set_service re-reads it)."""
        if self._values is None:
            with open(self.path, encoding="utf-8") as handle:
                raw = (yaml.safe_load(handle) or {}).get("config") or {}
            self._values = stack_values(self.name, decode_values(raw), REPO)
        return self._values

    def config(self) -> StackConfig:
        return parse_stack_config(self.name, self.values(), REPO)

    def service(self, service: str) -> ServiceConfig | None:
        return next((s for s in self.config().services if s.name == service), None)

    def set_service(self, service: str, settings: Mapping[str, str | int],
                    env: dict[str, dict[str, str]] | None = None) -> None:
        """Sets `bluegreen:services.<service>.<path>` for each path (e.g. `green.version`); `env`
        replaces whole colours' `env` maps (colour -> NAME -> value). A new `live` ends the split
        (split.percent: 0), as the flip it records did in Consul."""
        prefix = f"{NAMESPACE}:services.{service}"
        current = self.service(service)
        if current and settings.get("live", current.live) != current.live and current.split.percent:
            settings = {**settings, "split.percent": 0}
        stale = [f"{prefix}.{colour}.env" for colour in env or {}
                 if current and colour in current.colours and current.colours[colour].environment]
        self._values = None
        if stale:
            self.stack.remove_all_config(stale, path=True)
        values = {f"{prefix}.{path}": str(value) for path, value in settings.items()}
        values.update({f"{prefix}.{colour}.env.{name}": str(value)
                       for colour, names in (env or {}).items() for name, value in names.items()})
        config_value = automation().ConfigValue
        self.stack.set_all_config({key: config_value(value=value) for key, value in values.items()},
                                  path=True)

    def remove_service(self, service: str, secrets: bool = False) -> None:
        """Drops `bluegreen:services.<service>` (and its `bluegreen:secrets` entry) from the file."""
        self._values = None
        keys = [f"{NAMESPACE}:services.{service}"] + ([f"{NAMESPACE}:secrets.{service}"] if secrets else [])
        self.stack.remove_all_config(keys, path=True)

    # -- operations
    def _log(self, label: str):
        if not self.log_path:
            return None
        os.makedirs(os.path.dirname(os.path.abspath(self.log_path)), exist_ok=True)
        handle = open(self.log_path, "a", encoding="utf-8")
        handle.write(f"\n===== {self.name}: {label} {time.strftime('%H:%M:%S')}\n")
        return handle

    def up(self, label: str) -> dict:
        """`pulumi up`; returns the outputs, or raises StepFailed with the lines that matter."""
        handle = self._log(f"up ({label})")
        events: list[EngineEvent] = []
        # A killed earlier run (this command's, or a `pulumi up`'s) must not need hand work.
        try:
            recovery.recover(self.name, REPO, recovery.backend_directory())
        except RuntimeError as error:
            raise StepFailed(f"stack {self.name}: {error}") from None
        try:
            result = self.stack.up(color="never", on_event=events.append, policy_packs=[POLICY_PACK],
                                   policy_pack_configs=policy_configs(self.name),
                                   on_output=(lambda line: handle.write(line + "\n")) if handle else None)
        except automation().CommandError as error:
            raise StepFailed(f"pulumi up of stack {self.name} failed: {error_summary(str(error))}") from None
        finally:
            if handle:
                handle.close()
        self.last_changes = {getattr(op, "value", str(op)): n
                             for op, n in (result.summary.resource_changes or {}).items()}
        self.container_changes = container_changes(events)
        return {key: value.value for key, value in result.outputs.items()}

    def outputs(self) -> dict:
        """The stack's outputs, secrets in plain text: one `pulumi stack output` (the Automation
        API's workspace would first run `pulumi version` and select the stack: half a second
        more on every rollback)."""
        result = subprocess.run(["pulumi", "stack", "output", "--json", "--show-secrets",
                                 "--stack", self.name], cwd=REPO, capture_output=True, text=True)
        if result.returncode != 0:
            raise StepFailed(f"cannot read the outputs of stack {self.name}: "
                             f"{error_summary(result.stderr)}")
        return json.loads(result.stdout or "{}")

    # -- what runs
    def deployer_token(self) -> str:
        """The deployer's Consul token of this stack's environment, from the platform stack's
        `credentials` (read once)."""
        if self._deployer_token is None:
            config = self.config()
            try:
                self._deployer_token = deployer_token(platform_outputs(config).get("credentials"),
                                                      config.environment, platform_owner(config))
            except RuntimeError as error:
                raise StepFailed(str(error)) from None
        return self._deployer_token

    def colour_state(self, service: str) -> ColourState:
        config = self.config()
        settings = next((s for s in config.services if s.name == service), None)
        host = config.service_host(settings)
        try:
            alias = consul_api.kv_get(host.consul, alias_key(config.environment, service),
                                      self.deployer_token())
        except (consul_api.ConsulError, RuntimeError, StepFailed):
            alias = None
        colours: dict[str, dict | None] = {}
        if settings:
            for colour in COLOURS:
                slot = settings.colours.get(colour)
                colours[colour] = None if slot is None else {"version": slot.version, "image": slot.image}
        return ColourState(settings.live if settings else None, alias, colours)


def consul_address(config: StackConfig, service: str | None = None) -> str:
    """The agent a command asks about `service`: that of the service's first host (the stack's
    first host when it does not deploy the service yet)."""
    return config.service_host(service).consul


def stack_for_service(stack: str, service: str, root: str = REPO) -> str:
    """The stack that deploys `service` in the environment of `stack`: `stack` itself unless one
    of its service stacks deploys the service (so `--production production` finds
    production.vizconfig)."""
    stack = short_name(stack)
    if not os.path.exists(os.path.join(root, stack_file(stack))):
        return stack
    if read_stack_file(root, stack).get("environmentStack"):
        return stack
    return stack_deploying(stack, service, root) or stack


def platform_owner(config: StackConfig) -> str:
    """The stack that owns the platform a stack uses (itself, or the one it references)."""
    return config.stack if config.platform is not None else short_name(config.platform_stack or "")


def platform_outputs(config: StackConfig) -> dict:
    """registry/proxy/consul/credentials of the platform a stack uses (its own, or the referenced
    stack's); `credentials` holds secrets in plain text: never print or log it."""
    owner = platform_owner(config)
    if not owner:
        raise StepFailed(f"stack {config.stack} neither owns a platform nor references one")
    outputs = EnvStack(owner).outputs()
    if not outputs.get("registry"):
        raise StepFailed(f"the platform stack {owner} has no `registry` output yet: deploy it first "
                         f"(./bg up {owner})")
    return outputs


def relative_to_repo(path: str) -> str:
    """A manifest path as stack config writes it: relative to the project when inside it."""
    path = os.path.abspath(path)
    inside = os.path.commonpath([path, REPO]) == REPO
    return os.path.relpath(path, REPO) if inside else path
