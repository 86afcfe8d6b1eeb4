"""`preview --config-only`: what a pull request asks of each affected stack, read from the stack
files alone (this tree against --base), for the job that holds no state passphrase.

The engine's preview (containers replaced, digests per host, the policy pack's verdict) reads the
stacks' state, whose secrets only the passphrase decrypts, and runs the pull request's program
with them: so it runs only where the passphrase is, in the merge job, before `pulumi up`. This one
needs neither: it names the settings that change per service (`live` is the flip the change
requests) and, for the other top-level keys, only their names (values may be ciphertext)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence

import yaml

from . import REPO
from .preview import (MARKER, affected_stacks, changed_paths, default_base, publish, short_digest,
                      stack_configs)

SERVICES = "bluegreen:services"
ENGINE_NOTE = ("Config only: this job holds no state passphrase, so the engine's preview "
               "(containers, digests per host, the policy pack) runs in the merge job before its "
               "`pulumi up`; the unit and policy tests ran here.")


def stack_file_at(ref: str, name: str, root: str = REPO) -> dict:
    """`config:` of stacks/Pulumi.<name>.yaml at git `ref` ({} when it did not exist there)."""
    shown = subprocess.run(["git", "show", f"{ref}:stacks/Pulumi.{name}.yaml"], cwd=root,
                           capture_output=True, text=True)
    if shown.returncode != 0:
        return {}
    return (yaml.safe_load(shown.stdout) or {}).get("config") or {}


def flatten(value, prefix: str = "") -> dict[str, str]:
    """A service entry as `path -> value` (`green.env.FEATURE`: `on`), scalars as text."""
    if isinstance(value, dict) and value:
        return {path: text for key, item in value.items()
                for path, text in flatten(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value if isinstance(value, str) else json.dumps(value)}


def service_changes(before: dict | None, after: dict | None) -> list[str]:
    """One line per setting of a service entry that differs, `live` (the flip) first."""
    old, new = (flatten(entry) if entry else {} for entry in (before, after))
    paths = sorted(set(old) | set(new), key=lambda p: (p != "live", p))
    return [f"{'flip requested' if path == 'live' else f'`{path}`'}: `{short_digest(old.get(path))}`"
            f" -> `{short_digest(new.get(path))}`" for path in paths if old.get(path) != new.get(path)]


def stack_changes(before: dict, after: dict) -> dict:
    """Per service the changed settings, and the names of other top-level keys that changed."""
    old_services, new_services = before.get(SERVICES) or {}, after.get(SERVICES) or {}
    services = {name: service_changes(old_services.get(name), new_services.get(name))
                for name in sorted(set(old_services) | set(new_services))}
    other = sorted(key for key in set(before) | set(after)
                   if key != SERVICES and before.get(key) != after.get(key))
    return {"services": {name: lines for name, lines in services.items() if lines}, "other": other}


def render(changes: dict[str, dict], notes: Sequence[str] = (), base: str = "") -> str:
    lines = [MARKER, f"## Stack changes: {len(changes)} stack{'s' if len(changes) != 1 else ''}"
             + (f" (changed since `{base}`)" if base else ""), f"\n> {ENGINE_NOTE}"]
    lines += [f"\n> {note}" for note in notes]
    for stack, change in changes.items():
        lines.append(f"\n### `{stack}`")
        for name, settings in change["services"].items():
            lines.append(f"\n**{name}**")
            lines += [f"- {line}" for line in settings]
        if change["other"]:
            lines.append("\nOther settings changed: " + ", ".join(f"`{k}`" for k in change["other"]))
        if not (change["services"] or change["other"]):
            lines.append("- no stack setting changed (the program, policies or a service repo did)")
    return "\n".join(lines) + "\n"


def run_config_preview(base: str | None = None, markdown: str | None = None, out=None) -> int:
    out = out or sys.stdout
    base = base or default_base()
    configs = stack_configs()
    stacks, notes = affected_stacks(changed_paths(base), configs)
    publish(render({name: stack_changes(stack_file_at(base, name), configs[name])
                    for name in stacks}, notes, base), markdown, out)
    return 0
