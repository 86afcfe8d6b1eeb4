"""`preview`: what a change to the stacks would do, as a short Markdown summary for a PR.

For each affected stack it runs `pulumi preview --diff --json` through the Automation API (with
the policy pack in policies/ when there is one) and condenses the JSON per service: aliases that
flip, images that change (digest per host), containers created, replaced or deleted, and the
policy results. Selecting stacks, summarising and rendering are pure functions of their inputs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import yaml
from pulumi import automation as auto

from bluegreen.components.model.split import describe_record
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import (
    COLOURS, KV_ROOT, bake_prefix, owning_service, slot_image_name, split_root
)

from . import REPO
from .stacks import POLICY_PACK, EnvStack, classify, error_summary, policy_configs
from .steps import StepFailed

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"   # the engine's "known after apply" sentinel
MARKER = "<!-- bluegreen-preview -->"
STACK_FILE = re.compile(r"^stacks/Pulumi\.(?P<name>[^/]+)\.yaml$")
PROGRAM_PATHS = ("Pulumi.yaml", "__main__.py", "requirements.txt", "components/", "policies/")
CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
ALIAS_PREFIX = f"{KV_ROOT}/aliases/"


# -- which stacks --------------------------------------------------------------------------------

def default_base(root: str = REPO) -> str:
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "origin/main"], cwd=root,
                           capture_output=True, text=True)
    return "origin/main" if found.returncode == 0 else "HEAD"


def changed_paths(base: str, root: str = REPO) -> list[str]:
    """Files that differ from `base` in the working tree (committed, staged, unstaged, new)."""
    diff = subprocess.run(["git", "diff", "--name-only", base, "--"], cwd=root, capture_output=True,
                          text=True, check=True).stdout.split("\n")
    new = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, text=True, check=True).stdout.split("\n")
    return sorted({p for p in diff + new if p})


def stack_configs(root: str = REPO) -> dict[str, dict]:
    """The stacks whose config file git tracks or would track (not ignored scratch stacks)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                             "stacks/"], cwd=root, capture_output=True, text=True, check=True).stdout
    configs = {}
    for path in listed.split():
        match = STACK_FILE.match(path)
        if match and os.path.exists(os.path.join(root, path)):
            with open(os.path.join(root, path), encoding="utf-8") as handle:
                configs[match.group("name")] = (yaml.safe_load(handle) or {}).get("config") or {}
    return configs


def affected_stacks(paths: list[str], configs: dict[str, dict]) -> tuple[list[str], list[str]]:
    """(stacks to preview, notes). A stack is affected when its config file changed, when the
    program or the policies changed (all stacks), or when a file under the folder of a manifest it
    deploys changed. Platform-owning stacks come first: the others reference their outputs."""
    affected, notes = set(), []
    for path in paths:
        match = STACK_FILE.match(path)
        if match:
            if match.group("name") in configs:
                affected.add(match.group("name"))
                # Service stacks inherit hosts and more from their environment stack.
                affected.update(n for n, c in configs.items()
                                if str(c.get("bluegreen:environmentStack", "")).rsplit("/", 1)[-1]
                                == match.group("name"))
            else:
                notes.append(f"stacks/Pulumi.{match.group('name')}.yaml was removed: not previewed "
                             f"(destroy that stack deliberately)")
        elif any(path == p or (p.endswith("/") and path.startswith(p)) for p in PROGRAM_PATHS):
            affected.update(configs)
        else:
            for name, config in configs.items():
                for settings in (config.get("bluegreen:services") or {}).values():
                    folder = os.path.dirname(os.path.normpath(str(settings.get("manifest", ""))))
                    if folder and path.startswith(folder + "/"):
                        affected.add(name)
    return order_stacks(affected, configs), notes


def order_stacks(names, configs: dict[str, dict]) -> list[str]:
    return sorted(names, key=lambda n: (not (configs.get(n) or {}).get("bluegreen:platform"), n))


# -- what a preview says -------------------------------------------------------------------------

@dataclass
class Violation:
    policy: str
    level: str
    resource: str
    message: str


@dataclass
class StackPreview:
    stack: str
    digest: dict | None = None         # the `--json` document
    violations: list[Violation] = field(default_factory=list)
    policy: str = "absent"             # absent | ran | skipped | failed: <why>
    error: str = ""
    config: dict = field(default_factory=dict)  # bluegreen:* as the program reads it (inherited too)


def urn_parts(urn: str) -> tuple[str, str]:
    """(resource type, resource name) of a URN."""
    parts = urn.split("::")
    return parts[-2].split("$")[-1], parts[-1]


def _known(value):
    return None if value in (None, UNKNOWN) else value


def _labels(state: dict) -> dict:
    labels = (state.get("inputs") or {}).get("labels") or []
    return {item.get("label"): item.get("value") for item in labels if isinstance(item, dict)}


def short_digest(reference: str | None) -> str:
    if reference is None:
        return "(none)"
    if "@sha256:" not in reference:
        return reference
    return "sha256:" + reference.rsplit("@sha256:", 1)[1][:12]


def summarise(preview: StackPreview) -> dict:
    """Condenses a preview's JSON: counts, and per service alias flips, image changes per host and
    container changes; plus resources outside services and the policy outcome."""
    digest = preview.digest or {}
    config = {**(digest.get("config") or {}), **preview.config}
    environment = config.get("bluegreen:environment", "")
    services_config = _object(config.get("bluegreen:services"))
    hosts = list(_object(config.get("bluegreen:hosts")))
    resources = _resources(digest)
    services: dict[str, dict] = {name: _new_service() for name in services_config}
    claimed = _claim_service_resources(resources, services, environment, services_config, hosts)
    # What else of a service changes (gates, registrations, config keys), by resource name.
    for urn, entry in resources.items():
        name, change = urn_parts(urn)[1], classify(entry["ops"])
        if urn in claimed or change == "unchanged":
            continue
        owned = owning_service(environment, services, name)
        if owned:
            claimed.add(urn)
            services[owned[0]].setdefault("also", []).append(f"{owned[1]} ({change})")
    for name, entry in services.items():
        _finish_service(entry, _object(services_config.get(name)).get("acknowledgeLive"))
    other = sorted(f"{urn_parts(urn)[1]} ({classify(e['ops'])})" for urn, e in resources.items()
                   if urn not in claimed and classify(e["ops"]) not in ("unchanged",)
                   and urn_parts(urn)[0] != "pulumi:pulumi:Stack")
    return {"stack": preview.stack, "environment": environment,
            "changes": {k: v for k, v in (digest.get("changeSummary") or {}).items() if v},
            "services": services, "other": other, "policy": preview.policy,
            "violations": [v.__dict__ for v in preview.violations], "error": preview.error}


def _new_service() -> dict:
    return {"alias": None, "images": [], "containers": {}, "also": []}


def _resources(digest: dict) -> dict[str, dict]:
    """URN -> the ops the preview's steps do to it, with its old and new state."""
    resources: dict[str, dict] = {}
    for step in digest.get("steps") or []:
        entry = resources.setdefault(step["urn"], {"ops": set(), "old": None, "new": None})
        entry["ops"].add(step["op"])
        entry["old"] = entry["old"] or step.get("oldState")
        entry["new"] = entry["new"] or step.get("newState")
    return resources


def _claim_service_resources(resources: dict, services: dict, environment: str,
                             services_config: dict, hosts: list[str]) -> set[str]:
    """Files aliases, colour images and service containers under their services; returns the
    URNs so claimed."""
    claimed = set()
    image_names = {slot_image_name(environment, s, c, h): (s, c, h)
                   for s in services_config for c in COLOURS for h in hosts}
    for urn, entry in resources.items():
        kind, name = urn_parts(urn)
        old, new = entry["old"] or {}, entry["new"] or {}
        change = classify(entry["ops"])
        key = (new.get("inputs") or old.get("inputs") or {}).get("key")
        if isinstance(key, str) and key.startswith(f"{ALIAS_PREFIX}{environment}/"):
            svc = key.rsplit("/", 1)[1]
            before = _known((old.get("outputs") or {}).get("value", (old.get("inputs") or {}).get("value")))
            after = None if change == "deleted" else _known((new.get("inputs") or {}).get("value")) \
                or (services_config.get(svc) or {}).get("live")
            services.setdefault(svc, _new_service())["alias"] = {
                "key": key, "from": before if old else None, "to": after}
            claimed.add(urn)
        elif isinstance(key, str) and key.startswith(f"{bake_prefix()}{environment}/") and \
                _rollout_starts(new):
            claimed.add(urn)
            record = json.loads((new.get("inputs") or {})["value"])
            services.setdefault(key.rsplit("/", 1)[1], _new_service())["rollout"] = \
                f"{record['previous']} -> {record['colour']} in steps of {record['steps']}% " \
                f"({record['stepS']:g}s each), judged by real traffic; the watchdog flips at the end"
        elif isinstance(key, str) and key.startswith(f"{split_root()}{environment}/"):
            claimed.add(urn)
            _split_change(services, key.rsplit("/", 1)[1], old, new, change)
        elif kind == REMOTE_IMAGE and name in image_names:
            claimed.add(urn)
            _image_change(services, image_names[name], old, new, change)
        elif kind == CONTAINER and (_labels(new) or _labels(old)).get("bluegreen.service"):
            claimed.add(urn)
            _container_change(services, old, new, change, name)
    return claimed


def _rollout_starts(new: dict) -> bool:
    """Whether a bake record's new value starts a rollout (status rolling)."""
    value = _known((new.get("inputs") or {}).get("value"))
    try:
        return isinstance(value, str) and json.loads(value).get("status") == "rolling"
    except (ValueError, AttributeError):
        return False


def _split_change(services: dict, svc: str, old: dict, new: dict, change: str) -> None:
    """A split record that changes: what it said and says, in words (model.split)."""
    before = _known((old.get("inputs") or {}).get("value")) if old else None
    after = None if change == "deleted" else _known((new.get("inputs") or {}).get("value"))
    try:
        words = (describe_record(before), describe_record(after) if after else "(removed)")
    except ConfigError:
        words = ("(unreadable)", "(unreadable)")
    if change != "unchanged" and words[0] != words[1]:
        services.setdefault(svc, _new_service())["split"] = {"from": words[0], "to": words[1]}


def _image_change(services: dict, where: tuple[str, str, str], old: dict, new: dict,
                  change: str) -> None:
    svc, colour, host = where
    before = (old.get("inputs") or {}).get("name") if old else None
    after = None if change == "deleted" else (new.get("inputs") or {}).get("name")
    if change != "unchanged" and before != after:
        services.setdefault(svc, _new_service())["images"].append({
            "colour": colour, "host": host, "from": before,
            "to": _known(after) or ("(built during up)" if after else None)})


def _container_change(services: dict, old: dict, new: dict, change: str, name: str) -> None:
    labels = _labels(new) or _labels(old)
    if change == "unchanged":
        return
    service = services.setdefault(labels["bluegreen.service"], _new_service())
    container = (new.get("inputs") or {}).get("name") or (old.get("inputs") or {}).get("name") or name
    service["containers"].setdefault(change, []).append(container)
    if change in ("replaced", "deleted", "updated") and labels.get("bluegreen.role") == "service":
        service.setdefault("colours_touched", set()).add((_labels(old) or labels).get("bluegreen.colour"))


def _finish_service(entry: dict, acknowledged: str | None) -> None:
    """Whether it flips and touches what served before (the alias's old value, or, unchanged,
    its value); lists sorted."""
    entry["also"].sort()
    alias = entry["alias"]
    entry["flip"] = bool(alias and alias["from"] != alias["to"])
    live_before = (alias["from"] if entry["flip"] else alias["to"]) if alias else None
    entry["live_touched"] = bool(live_before and live_before in entry.pop("colours_touched", set()))
    entry["acknowledged"] = acknowledged
    entry["images"].sort(key=lambda i: (i["colour"], i["host"]))
    for names in entry["containers"].values():
        names.sort()


def _object(value) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


# -- Markdown ------------------------------------------------------------------------------------

CHANGE_WORDS = (("create", "to create"), ("update", "to update"), ("replace", "to replace"),
                ("delete", "to delete"), ("same", "unchanged"))


def render_markdown(summaries: list[dict], notes: Sequence[str] = (), base: str = "") -> str:
    lines = [MARKER, f"## Pulumi preview: {len(summaries)} stack{'s' if len(summaries) != 1 else ''}"
             + (f" (changed since `{base}`)" if base else "")]
    if not summaries:
        lines.append("\nNo stack is affected by this change.")
    for note in notes:
        lines.append(f"\n> {note}")
    for summary in summaries:
        lines.append(f"\n### `{summary['stack']}`"
                     + (f" (environment `{summary['environment']}`)" if summary["environment"] else ""))
        if summary["error"]:
            lines.append(f"**preview failed**: {summary['error']}")
        counts = summary["changes"]
        if counts:
            lines.append(", ".join(f"{counts[op]} {word}" for op, word in CHANGE_WORDS if counts.get(op)))
        for name, service in sorted(summary["services"].items()):
            lines.append(f"\n**{name}**")
            alias = service["alias"]
            if alias and service["flip"]:
                lines.append(f"- alias flips: `{alias['from'] or '(none)'}` -> `{alias['to'] or '(removed)'}` "
                             f"(`{alias['key']}`)")
            elif alias:
                lines.append(f"- alias stays on `{alias['to']}`")
            if service.get("rollout"):
                lines.append(f"- rollout starts: {service['rollout']}")
            if service.get("split"):
                lines.append(f"- split: {service['split']['from']} -> {service['split']['to']}")
            if service.get("live_touched"):
                lines.append(_live_touched_line(service.get("acknowledged")))
            for image in service["images"]:
                repository = (image["to"] or image["from"] or "").split("@")[0]
                lines.append(f"- image {image['colour']} on `{image['host']}`: `{short_digest(image['from'])}`"
                             f" -> `{short_digest(image['to'])}`" + (f" (`{repository}`)" if repository else ""))
            for change in ("created", "replaced", "deleted", "updated"):
                names = service["containers"].get(change)
                if names:
                    lines.append(f"- containers {change}: " + ", ".join(f"`{n}`" for n in names))
            if service["also"]:
                lines.append("- also: " + ", ".join(f"`{a}`" for a in service["also"]))
            if not (service["flip"] or service["images"] or service["containers"] or service["also"]):
                lines.append("- no changes")
        if summary["other"]:
            shown = summary["other"][:12]
            more = len(summary["other"]) - len(shown)
            lines.append("\nOther resources: " + ", ".join(f"`{o}`" for o in shown)
                         + (f" and {more} more" if more else ""))
        lines.append("\n" + _policy_line(summary))
        for violation in summary["violations"]:
            lines.append(f"- **{violation['level']}** `{violation['policy']}` on `{violation['resource']}`: "
                         f"{violation['message']}")
    return "\n".join(lines) + "\n"


def _live_touched_line(acknowledged: str | None) -> str:
    """How the Markdown flags a change that replaces what serves traffic."""
    if acknowledged:
        return (f"- **replaces live containers, acknowledged** (`acknowledgeLive: {acknowledged}`): "
                "this change restarts what serves traffic on purpose")
    return ("- **replaces live containers**: this change restarts what serves traffic; "
            "ship it as a release on the offline colour, or make it on its own")


def _policy_line(summary: dict) -> str:
    policy, violations = summary["policy"], summary["violations"]
    if policy == "absent":
        return "Policies: no policy pack (policies/PulumiPolicy.yaml is absent)."
    if policy == "skipped":
        return "Policies: not run (--no-policy)."
    if policy.startswith("failed"):
        return f"Policies: the pack in policies/ could not run, previewed without it ({policy[7:].strip()})."
    if not violations:
        return "Policies: policies/ ran, no violations."
    mandatory = sum(1 for v in violations if v["level"] == "mandatory")
    return f"Policies: policies/ ran, {len(violations)} violation(s), {mandatory} mandatory:"


# -- running previews ----------------------------------------------------------------------------

def policy_dir() -> str | None:
    return POLICY_PACK if os.path.exists(os.path.join(POLICY_PACK, "PulumiPolicy.yaml")) else None


def _parse_json(lines: list[str]) -> dict | None:
    text = "\n".join(lines)
    start = text.find("{")
    if start < 0:
        return None
    try:
        return json.loads(text[start:])
    except ValueError:
        return None


def _attempt(stack: auto.Stack, packs: list[str] | None, configs: list[str] | None = None):
    lines: list[str] = []
    events: list[auto.EngineEvent] = []
    error = ""
    try:
        stack.preview(diff=True, json=True, policy_packs=packs, policy_pack_configs=configs, color="never",
                      on_output=lines.append, on_event=events.append)
    except auto.CommandError as failure:
        error = error_summary(str(failure))
    violations = [Violation(e.policy_name, e.enforcement_level,
                            urn_parts(e.resource_urn)[1] if e.resource_urn else "(stack)",
                            " ".join(e.message.split())[:300])
                  for e in (getattr(ev, "policy_event", None) for ev in events) if e is not None]
    return _parse_json(lines), violations, error


def preview_stack(name: str, policy: bool = True) -> StackPreview:
    result = StackPreview(name)
    try:
        result.config = {f"bluegreen:{k}": v for k, v in EnvStack(name).values().items()}
        stack = auto.create_or_select_stack(stack_name=name, work_dir=REPO)
    except (auto.CommandError, StepFailed, ConfigError) as failure:
        result.error = error_summary(str(failure))
        return result
    pack = policy_dir() if policy else None
    result.policy = "ran" if pack else ("absent" if policy else "skipped")
    digest, violations, error = _attempt(stack, [pack] if pack else None,
                                         policy_configs(name) if pack else None)
    if error and pack and not violations:
        # The pack may be what failed (not installed, not loadable): preview without it.
        digest, _, retry_error = _attempt(stack, None)
        if not retry_error:
            result.policy, error = f"failed: {error}", ""
        else:
            error = retry_error
    result.digest, result.violations, result.error = digest, violations, error
    return result


def publish(text: str, markdown: str | None, out) -> None:
    """Prints the summary, and writes it to `markdown` when given (the PR comment's file)."""
    if markdown:
        os.makedirs(os.path.dirname(os.path.abspath(markdown)), exist_ok=True)
        with open(markdown, "w", encoding="utf-8") as handle:
            handle.write(text)
    print(text, file=out, end="")


def run_preview(stacks: list[str] | None = None, base: str | None = None, markdown: str | None = None,
                list_only: bool = False, policy: bool = True, out=None) -> int:
    out = out or sys.stdout
    notes: list[str] = []
    shown_base = ""
    if not stacks:
        shown_base = base or default_base()
        configs = stack_configs()
        stacks, notes = affected_stacks(changed_paths(shown_base), configs)
    if list_only:
        for name in stacks:
            print(name, file=out)
        return 0
    summaries = []
    for name in stacks:
        print(f"==> pulumi preview --diff --json --stack {name}", file=sys.stderr, flush=True)
        summaries.append(summarise(preview_stack(name, policy)))
    publish(render_markdown(summaries, notes, shown_base), markdown, out)
    failed = any(s["error"] or any(v["level"] == "mandatory" for v in s["violations"])
                 for s in summaries)
    return 1 if failed else 0
