"""Releases: a (service, version) is one image digest plus the runtime spec it was built with,
made once and never rebuilt. Pure planning of what each colour runs; no Pulumi, no I/O here.

Where the truth lives: a release record per (service, version) in Consul KV
(naming.release_prefix), shared by every environment of the platform, written when the version is
first pushed; the registry holds the bytes. Each environment records which release each colour runs
(naming.slot_key) and a release history (naming.history_prefix)."""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from bluegreen.components.model.config import ServiceConfig
from bluegreen.components.model.manifest import Manifest
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import went_live_entry


@dataclass(frozen=True)
class RuntimeSpec:
    """What shapes a colour's containers besides the image. It belongs to the release: a later
    manifest change applies to the next version, never to a colour already running."""

    port: int
    health_path: str
    health_interval_s: float
    health_timeout_s: float
    memory_mb: int
    environment: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, manifest: Manifest) -> "RuntimeSpec":
        return cls(port=manifest.port, health_path=manifest.health.path,
                   health_interval_s=manifest.health.interval_s,
                   health_timeout_s=manifest.health.timeout_s, memory_mb=manifest.memory_mb,
                   environment=dict(manifest.environment))


@dataclass(frozen=True)
class Release:
    """A released version: its digest reference, the content hash of the sources it was built
    from, and its runtime spec."""

    service: str
    version: str
    reference: str              # repository@sha256:...
    source: str                 # naming.context_digest of the build context
    spec: RuntimeSpec
    committed_at: str | None = None   # the commit it was built from, when (None: not committed)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Release":
        data = json.loads(text)
        return cls(service=data["service"], version=data["version"], reference=data["reference"],
                   source=data["source"], spec=RuntimeSpec(**data["spec"]),
                   committed_at=data.get("committed_at"))


@dataclass(frozen=True)
class ColourPlan:
    """What one colour runs after this update.

    `release` is None when the version is new: it is built from the checkout, and `spec` is the
    manifest's. `deploying` is True when this update puts a different version on the colour than
    it ran before (or the colour is new)."""

    colour: str
    version: str
    spec: RuntimeSpec
    release: Release | None
    pinned: str | None           # a digest the stack config pins (pipeline, rollback --to)
    deploying: bool
    note: str | None = None      # shown as a warning: the colour runs other sources than the checkout

    @property
    def reference(self) -> str | None:
        """The digest reference to run, or None when it is built during this update."""
        return self.pinned or (self.release.reference if self.release else None)


def plan_colours(stack_file: str, settings: ServiceConfig, manifest: Manifest, checkout: str,
                 releases: dict[str, Release], slots: dict[str, str]) -> dict[str, ColourPlan]:
    """Decides, per configured colour, which release it runs, refusing ambiguous input.

    `checkout` is the content hash of the service's build context now; `releases` maps version to
    its release record; `slots` maps colour to the version it ran before this update."""
    plans = {}
    for colour, slot in settings.colours.items():
        release = releases.get(slot.version)
        deploying = slots.get(colour) != slot.version
        field_path = f"bluegreen.services.{settings.name}.{colour}"
        if slot.image and release and release.reference.rsplit("@", 1)[1] != slot.image.rsplit("@", 1)[1]:
            raise ConfigError(stack_file, f"{field_path}.image",
                              f"{settings.name} {slot.version} is released as {release.reference}, "
                              f"not {slot.image}; a version names one image: remove image: to run "
                              f"the release, or give the new image a new version")
        note = None
        if release and not slot.image and release.source != checkout:
            if deploying:
                raise ConfigError(stack_file, f"{field_path}.version",
                                  f"{settings.name} {slot.version} is already released as "
                                  f"{release.reference}, built from other sources than "
                                  f"{manifest.build.context} holds now; a released version is never "
                                  f"rebuilt: bump the version (e.g. {suggest_next(slot.version)}) to "
                                  f"build the checkout, or pin the release with image: "
                                  f"{release.reference} to deploy it as it is")
            note = (f"{settings.name} {colour} keeps running release {slot.version} "
                    f"({release.reference.rsplit('@', 1)[1][:19]}), built from other sources than "
                    f"the checkout; only a new version deploys the checkout")
        spec = release.spec if release else RuntimeSpec.of(manifest)
        plans[colour] = ColourPlan(colour=colour, version=slot.version, spec=spec, release=release,
                                   pinned=slot.image, deploying=deploying, note=note)
    return plans


def suggest_next(version: str) -> str:
    """The next patch version of a dotted version, or `<version>.1` when it has no number last."""
    head, _, last = version.rpartition(".")
    if last.isdigit():
        return f"{head}.{int(last) + 1}" if head else str(int(last) + 1)
    return f"{version}.1"


def timestamp(moment: datetime.datetime) -> str:
    """How release records and the history write a time (UTC, to the second)."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def went_live(entry: str | None, moment: datetime.datetime) -> str | None:
    """A history entry (JSON) with `liveAt` moved to `moment`, for a flip made outside `pulumi up`
    (rollback, promote); None when the release has no entry."""
    if not entry:
        return None
    return json.dumps(went_live_entry(json.loads(entry), timestamp(moment)), sort_keys=True)


def release_config(environment: dict[str, str], replicas: int, secrets: dict[str, str]) -> dict[str, Any]:
    """The configuration a colour runs a release with: its `env` overrides, replicas and the
    fingerprints of its secrets (never their values). With the digest and the runtime spec it is
    the release: a change of it alone deploys, gates, flips and rolls back like a new version."""
    return {"env": dict(sorted(environment.items())), "replicas": replicas,
            "secrets": dict(sorted(secrets.items()))}


def secret_fingerprint(service: str, name: str, value: str) -> str:
    """Tells two values of a secret apart without revealing either (a KV reader sees only this)."""
    return hashlib.sha256(f"{service}\n{name}\n{value}".encode()).hexdigest()[:12]


def release_id(version: str, config: dict[str, Any], history: dict[str, dict[str, Any]]) -> str:
    """How the history names a release: its version when the version's entry ran this
    configuration (or none is recorded), else `<version>+<fingerprint of the configuration>`."""
    entry = history.get(version)
    if entry is None or entry.get("config") in (None, config):
        return version
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
    return f"{version}+{digest}"


def release_version(release: str) -> str:
    """The version of a release id (`2.0.0+1a2b3c4d` -> `2.0.0`)."""
    return release.split("+", 1)[0]


def slot_record(version: str, reference: str, shape: str, replaced_live: str | None = None,
                release: str | None = None, config: dict[str, Any] | None = None,
                acknowledged: str | None = None, dependencies: str | None = None) -> str:
    """The value of naming.slot_key: which release a colour runs, with which configuration, and
    the shape of its containers; `replacedLive` says why an update replaced the containers that
    were serving traffic, and `acknowledgedBy` the acknowledgement that allowed it."""
    record: dict[str, Any] = {"version": version, "reference": reference, "shape": shape}
    if release and release != version:
        record["release"] = release
    if config is not None:
        record["config"] = config
    if dependencies is not None:
        record["dependencies"] = dependencies   # live.dependencies_shape of what it runs with
    if replaced_live:
        record["replacedLive"] = replaced_live
        if acknowledged:
            record["acknowledgedBy"] = acknowledged   # the change's acknowledgeLive
    return json.dumps(record, sort_keys=True)


def history_entry(existing: dict[str, Any] | None, *, version: str, reference: str, colour: str,
                  live: bool, was_live: bool, now: str, actor: str, release: str | None = None,
                  config: dict[str, Any] | None = None, committed_at: str | None = None) -> dict[str, Any]:
    """A release's line in an environment's history. First deployment time and actor stay as
    first recorded; `liveAt` moves when the release goes live again after something else was
    (`firstLiveAt` stays); `committedAt`: when the commit it was built from was made."""
    entry = dict(existing or {})
    if entry.get("reference") != reference:
        entry = {"deployedAt": now, "deployedBy": actor}
        if committed_at:
            entry["committedAt"] = committed_at
    entry.update(version=version, reference=reference, colour=colour)
    if release and release != version:
        entry["release"] = release
    if config is not None:
        entry["config"] = config
    if live and (not was_live or not entry.get("liveAt")):
        entry = went_live_entry(entry, now)
    return entry


def rollback_target(history: dict[str, dict[str, Any]], live_release: str | None) -> dict[str, Any] | None:
    """The last release that was live (and so passed its gate) other than the one live now; not
    one the bake watchdog rolled back since it last went live. History keys are release ids."""
    candidates = [{**e, "release": r} for r, e in history.items() if e.get("liveAt")
                  and r != live_release and e.get("rolledBackAt", "") < e["liveAt"]]
    return max(candidates, key=lambda e: e["liveAt"], default=None)
