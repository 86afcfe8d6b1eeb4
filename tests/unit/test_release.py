"""Releases: a version is one digest and one runtime spec, made once; what each colour runs."""

import dataclasses
import os

import pytest

from bluegreen.components.model.config import ColourConfig, ServiceConfig
from bluegreen.components.model.manifest import load_manifest
from bluegreen.components.model.release import (
    Release, RuntimeSpec, history_entry, plan_colours, rollback_target, suggest_next
)
from bluegreen.components.model.validation import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFEST = load_manifest(os.path.join(ROOT, "services/vizconfig/service.yaml"))
REF = "127.0.0.1:15000/vizconfig@sha256:" + "1" * 64
OTHER = "127.0.0.1:15000/vizconfig@sha256:" + "2" * 64
OLD_SPEC = dataclasses.replace(RuntimeSpec.of(MANIFEST), memory_mb=64, port=7000)


def settings(blue="1.0.0", green=None, live="blue", blue_image=None):
    colours = {"blue": ColourConfig(blue, image=blue_image)}
    if green:
        colours["green"] = ColourConfig(green)
    return ServiceConfig("vizconfig", MANIFEST.path, live, colours, ("local",))


def release(version="1.0.0", source="old", reference=REF):
    return Release("vizconfig", version, reference, source, OLD_SPEC)


def test_a_new_version_is_built_with_the_manifests_spec():
    plan = plan_colours("stacks/Pulumi.p.yaml", settings(), MANIFEST, "now", {}, {})["blue"]
    assert plan.reference is None and plan.release is None and plan.deploying
    assert plan.spec == RuntimeSpec.of(MANIFEST)


def test_a_kept_colour_runs_its_release_whatever_the_checkout_holds():
    plans = plan_colours("s", settings(green="2.0.0"), MANIFEST, "changed",
                         {"1.0.0": release()}, {"blue": "1.0.0"})
    blue = plans["blue"]
    assert blue.reference == REF and blue.spec == OLD_SPEC and not blue.deploying
    assert "other sources than the checkout" in blue.note
    assert plans["green"].reference is None and plans["green"].deploying


def test_deploying_a_released_version_from_changed_sources_is_refused():
    with pytest.raises(ConfigError) as error:
        plan_colours("stacks/Pulumi.p.yaml", settings(blue="1.0.0", green="1.0.0"), MANIFEST,
                     "changed", {"1.0.0": release()}, {"blue": "1.0.0"})
    message = str(error.value)
    assert message.startswith("stacks/Pulumi.p.yaml: bluegreen.services.vizconfig.green.version:")
    assert "vizconfig 1.0.0 is already released as " + REF in message
    assert "bump the version (e.g. 1.0.1)" in message and "image: " + REF in message


def test_deploying_a_released_version_from_the_same_sources_reuses_it():
    plans = plan_colours("s", settings(blue="1.0.0"), MANIFEST, "old", {"1.0.0": release()}, {})
    assert plans["blue"].reference == REF and plans["blue"].deploying and plans["blue"].note is None


def test_a_pinned_digest_deploys_a_release_without_a_build():
    plans = plan_colours("s", settings(blue_image=REF), MANIFEST, "changed", {"1.0.0": release()}, {})
    assert plans["blue"].reference == REF and plans["blue"].spec == OLD_SPEC


def test_a_pin_that_contradicts_the_release_is_refused():
    with pytest.raises(ConfigError, match=r"blue\.image: vizconfig 1\.0\.0 is released as .* a version names one image"):
        plan_colours("s", settings(blue_image=OTHER), MANIFEST, "old", {"1.0.0": release()}, {})


@pytest.mark.parametrize("version,expected", [("1.0.0", "1.0.1"), ("2", "3"), ("1.0.0-rc", "1.0.0-rc.1")])
def test_suggest_next(version, expected):
    assert suggest_next(version) == expected


def test_release_records_round_trip():
    assert Release.from_json(release().to_json()) == release()


def test_history_keeps_the_first_deployment_and_moves_live_time():
    first = history_entry(None, version="1", reference=REF, colour="blue", live=False,
                          was_live=False, now="t1", actor="ci")
    assert first == {"version": "1", "reference": REF, "colour": "blue", "deployedAt": "t1",
                     "deployedBy": "ci"}
    live = history_entry(first, version="1", reference=REF, colour="blue", live=True,
                         was_live=False, now="t2", actor="other")
    assert live["deployedAt"] == "t1" and live["deployedBy"] == "ci" and live["liveAt"] == "t2"
    still = history_entry(live, version="1", reference=REF, colour="blue", live=True,
                          was_live=True, now="t3", actor="other")
    assert still == live


def test_rollback_target_is_the_last_live_release_but_the_current_one():
    history = {"1": {"version": "1", "liveAt": "2026-01-01T00:00:00Z"},
               "2": {"version": "2", "liveAt": "2026-01-02T00:00:00Z"},
               "3": {"version": "3"},                       # failed its gate: never live
               "4": {"version": "4", "liveAt": "2026-01-03T00:00:00Z"}}
    assert rollback_target(history, "4")["version"] == "2"
    assert rollback_target(history, "2")["version"] == "4"
    assert rollback_target({"3": {"version": "3"}}, "4") is None


