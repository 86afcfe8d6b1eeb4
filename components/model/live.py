"""The live colour: the one the alias in Consul names, whatever the stack file's `live:` asks.
Pure rules of what an update may do to it; the program checks them before it registers anything,
so a change that would touch what serves traffic is refused, not warned about.

The stack file's `live:` is the requested state: a colour other than the alias's is a flip this
update makes once that colour's gate passes. Everything else about a colour is planned from the
alias: the offline colour is the one the alias does not name."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from bluegreen.components.model.config import ServiceConfig
from bluegreen.components.model.manifest import Manifest
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import (
    COLOURS, alias_key, bake_key, context_digest, offline_colour, split_key
)


@dataclass(frozen=True)
class ColourChange:
    """What an update plans for one colour's containers, against what Consul records it runs."""

    colour: str
    configured: bool             # the stack still configures this colour
    version: str | None          # the version it will run (None: not configured)
    recorded_version: str | None  # the version its slot record says it runs
    shape: str | None            # its containers' planned shape (colour_slot.shape_hash)
    recorded_shape: str | None   # the shape its slot record says
    dependencies: str = ""       # the linked dependencies' planned shape (dependencies_shape)
    recorded_dependencies: str | None = None  # the one its slot record says


def dependencies_shape(manifest: Manifest, base_image: str) -> str:
    """A hash of what shapes the linked dependencies both colours share (image or build sources,
    env, volume, memory); "" without any. When it changes they are replaced under the live
    colour too."""
    if not manifest.dependencies:
        return ""
    parts = [[d.alias, d.port, d.image, d.environment, d.volume, d.memory_mb,
              [context_digest(d.build.context), d.build.dockerfile, base_image] if d.build else None]
             for d in manifest.dependencies]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def serving_colour(alias: str | None) -> str | None:
    """The colour that serves traffic: the alias's, or None before the first flip."""
    return alias if alias in COLOURS else None


def acknowledgement(change: ColourChange) -> str:
    """The value of `acknowledgeLive` that lets exactly this change replace the live colour."""
    touched = f"{change.shape or 'removed'}{change.dependencies}"
    return f"{change.colour}@{hashlib.sha256(touched.encode()).hexdigest()[:8]}"


def live_touch(change: ColourChange) -> str | None:
    """Why this update would replace, restart or delete the serving colour's containers, or None."""
    if not change.configured:
        return (f"the stack no longer configures {change.colour}, so its containers would be "
                f"deleted")
    if change.recorded_version and change.version != change.recorded_version:
        return f"{change.colour} would go from {change.recorded_version} to {change.version}"
    if change.recorded_shape and change.shape != change.recorded_shape:
        return (f"{change.colour}'s containers would be replaced (a colour's env override, "
                f"replicas, the hosts or a host setting changed)")
    if change.recorded_dependencies is not None and change.dependencies != change.recorded_dependencies:
        return (f"the linked dependencies {change.colour} runs with (shared by both colours) would "
                f"be replaced: the manifest's dependencies or the base image changed")
    return None


def refusal(stack_file: str, environment: str, settings: ServiceConfig,
            change: ColourChange, split_reason: str | None = None) -> ConfigError | None:
    """The error for an update that touches a serving colour without this change's
    acknowledgement (`bluegreen.services.<name>.acknowledgeLive`), or None. The colour serves
    as the alias's, or (`split_reason`) as the one a split or cohort sends clients to."""
    reason = live_touch(change)
    token = acknowledgement(change)
    if reason is None or settings.acknowledge_live == token:
        return None
    name, colour, offline = settings.name, change.colour, offline_colour(change.colour)
    if split_reason:
        serves = (f"{split_key(environment, name)} says {split_reason}: it serves clients, and "
                  f"nothing replaces what serves, so nothing was changed. End the split first "
                  f"(./bg split {name} --stack <stack> --percent 0, and drop the cohorts naming "
                  f"{colour}), then deploy")
    else:
        serves = (f"the alias {alias_key(environment, name)} names {colour}: it serves traffic, "
                  f"and nothing but a flip touches it, so nothing was changed. Deploy to {offline} "
                  f"and flip instead ({offline}: {{version: ...}}, live: {offline}); leave {colour} "
                  f"as it runs")
    return ConfigError(
        stack_file, f"bluegreen.services.{name}.{colour}",
        f"{reason}, but {serves}. A change that must touch a serving colour (a dependency both "
        f"colours share, a host removed, a platform upgrade) says so in the change itself: add "
        f"acknowledgeLive: {token} to bluegreen.services.{name}")


def disagreement_note(stack_file: str, environment: str, settings: ServiceConfig,
                      serving: str | None) -> str | None:
    """What the program says once when the stack file's `live:` is not the alias's colour."""
    if serving is None or settings.live == serving:
        return None
    name = settings.name
    if settings.rollout is not None:
        return (f"{stack_file} asks live: {settings.live} for {name}, whose alias names {serving}: "
                f"the flip goes through its rollout (steps {list(settings.rollout.steps)}% of the "
                f"stable traffic, {settings.rollout.step_s:g}s each); the platform's watchdog moves "
                f"the alias once every step passed (Consul KV {bake_key(environment, name)})")
    return (f"{stack_file} asks live: {settings.live} for {name}, but the alias "
            f"{alias_key(environment, name)} names {serving}, which serves traffic now. This update "
            f"plans from the alias: {serving} is left as it runs, and {settings.live} is flipped "
            f"live once its gate passes. To stay on {serving} instead, set live: {serving} "
            f"(`./bg rollback {name} --stack <stack>` does, when a flip failed)")
