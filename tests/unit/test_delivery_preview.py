"""PR previews: which stacks a change affects, and the Markdown made from a preview's JSON.

test_delivery_data/preview-prod-flip.json is a recorded `pulumi preview --diff --json` of the
end-to-end production stack (trimmed of source positions), for a config change that flips the
alias back to blue and gives green another digest."""

from __future__ import annotations

import copy
import json
import os

import pytest

from bluegreen.delivery.preview import (MARKER, StackPreview, Violation, affected_stacks, order_stacks,
                              render_markdown, short_digest, summarise, urn_parts)

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_delivery_data")
OLD = "127.0.0.1:28703/vizconfig@sha256:c5045f782a929bd64e76f388681be99075cb177cca04564b8a679d8c6dacf7bd"
NEW = "127.0.0.1:28703/vizconfig@sha256:573d2ecc59697549627679b3fdcc1fa54486b18545d96ebe236f0cca95b0a559"


@pytest.fixture
def recorded() -> dict:
    with open(os.path.join(DATA, "preview-prod-flip.json"), encoding="utf-8") as handle:
        return json.load(handle)


def summary_of(digest: dict, **kwargs) -> dict:
    return summarise(StackPreview("e2e-pipe-prod", digest, **kwargs))


# -- summarising ---------------------------------------------------------------------------------

def test_urns_split_into_type_and_name():
    urn = ("urn:pulumi:prod::bluegreen::bluegreen:service:Service$bluegreen:service:ColourSlot"
           "$docker:index/container:Container::prod-api-green-local-0")
    assert urn_parts(urn) == ("docker:index/container:Container", "prod-api-green-local-0")


def test_the_recorded_preview_flips_the_alias_and_changes_greens_image(recorded):
    summary = summary_of(recorded, policy="ran")
    assert summary["environment"] == "e2e-pipe-prod"
    assert summary["changes"] == {"replace": 2, "same": 19, "update": 5}
    service = summary["services"]["vizconfig"]
    assert service["flip"] is True
    assert service["alias"] == {"key": "bluegreen/aliases/e2e-pipe-prod/vizconfig",
                                "from": "green", "to": "blue"}
    assert service["images"] == [{"colour": "green", "host": "local", "from": OLD, "to": NEW}]
    assert service["containers"] == {"replaced": ["bluegreen-e2e-pipe-prod-vizconfig-green-local-0"]}
    assert "blue-gate (updated)" in service["also"] and "catalogue (updated)" in service["also"]
    # The stack reference is a read, not a change; nothing is left unattributed.
    assert summary["other"] == []


def test_markdown_of_the_recorded_preview(recorded):
    text = render_markdown([summary_of(recorded, policy="ran")])
    assert text.startswith(MARKER + "\n## Pulumi preview: 1 stack\n")
    assert "### `e2e-pipe-prod` (environment `e2e-pipe-prod`)" in text
    assert "5 to update, 2 to replace, 19 unchanged" in text
    assert ("- alias flips: `green` -> `blue` (`bluegreen/aliases/e2e-pipe-prod/vizconfig`)"
            in text)
    assert ("- image green on `local`: `sha256:c5045f782a92` -> `sha256:573d2ecc5969` "
            "(`127.0.0.1:28703/vizconfig`)") in text
    assert "- containers replaced: `bluegreen-e2e-pipe-prod-vizconfig-green-local-0`" in text
    assert "Policies: policies/ ran, no violations." in text


def test_an_alias_that_stays_is_not_a_flip(recorded):
    digest = copy.deepcopy(recorded)
    for step in digest["steps"]:
        if step["urn"].endswith("::e2e-pipe-prod-vizconfig-alias-key"):
            step["op"] = "same"
            step["newState"]["inputs"]["value"] = "green"
    service = summary_of(digest)["services"]["vizconfig"]
    assert service["flip"] is False
    assert "alias stays on `green`" in render_markdown([summary_of(digest)])


def test_an_unknown_new_alias_value_falls_back_to_the_configured_live_colour(recorded):
    digest = copy.deepcopy(recorded)
    for step in digest["steps"]:
        if step["urn"].endswith("::e2e-pipe-prod-vizconfig-alias-key"):
            step["newState"]["inputs"]["value"] = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    assert summary_of(digest)["services"]["vizconfig"]["alias"]["to"] == "blue"


def test_an_image_built_during_up_has_no_digest_yet(recorded):
    digest = copy.deepcopy(recorded)
    for step in digest["steps"]:
        if step["urn"].endswith("::e2e-pipe-prod-vizconfig-green-local-image"):
            step["newState"]["inputs"]["name"] = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    image = summary_of(digest)["services"]["vizconfig"]["images"][0]
    assert image["to"] == "(built during up)"
    assert "`sha256:c5045f782a92` -> `(built during up)`" in render_markdown([summary_of(digest)])


def test_created_and_deleted_containers_and_a_first_alias(recorded):
    digest = copy.deepcopy(recorded)
    for step in digest["steps"]:
        if step["urn"].endswith("::e2e-pipe-prod-vizconfig-green-local-0"):
            step["op"] = "delete"
            del step["newState"]
        if step["urn"].endswith("::e2e-pipe-prod-vizconfig-alias-key"):
            step["op"] = "create"
            del step["oldState"]
    created = copy.deepcopy(next(s for s in recorded["steps"]
                                 if s["urn"].endswith("::e2e-pipe-prod-vizconfig-green-local-0")))
    created["urn"] = created["urn"].replace("green-local-0", "blue-local-1")
    created["op"] = "create"
    created.pop("oldState")
    created["newState"]["inputs"]["name"] = "bluegreen-e2e-pipe-prod-vizconfig-blue-local-1"
    digest["steps"].append(created)
    service = summary_of(digest)["services"]["vizconfig"]
    assert service["containers"] == {"deleted": ["bluegreen-e2e-pipe-prod-vizconfig-green-local-0"],
                                     "created": ["bluegreen-e2e-pipe-prod-vizconfig-blue-local-1"]}
    assert service["alias"]["from"] is None and service["flip"] is True
    text = render_markdown([summary_of(digest)])
    assert "- alias flips: `(none)` -> `blue`" in text
    assert "- containers created: `bluegreen-e2e-pipe-prod-vizconfig-blue-local-1`" in text
    assert "- containers deleted: `bluegreen-e2e-pipe-prod-vizconfig-green-local-0`" in text


def test_a_service_without_changes_says_so(recorded):
    digest = copy.deepcopy(recorded)
    digest["steps"] = [s for s in digest["steps"] if s["op"] in ("same", "read")]
    digest["changeSummary"] = {"same": 26}
    text = render_markdown([summary_of(digest)])
    assert "**vizconfig**\n- no changes" in text
    assert "26 unchanged" in text


@pytest.mark.parametrize("policy, violations, line", [
    ("absent", [], "Policies: no policy pack (policies/PulumiPolicy.yaml is absent)."),
    ("skipped", [], "Policies: not run (--no-policy)."),
    ("failed: error: could not start the analyzer", [],
     "Policies: the pack in policies/ could not run, previewed without it (error: could not start the analyzer)."),
    ("ran", [Violation("service-image-pinned", "mandatory", "prod-api-green-local-0", "not pinned"),
             Violation("dependency-image-pinned", "advisory", "prod-api-db-local", "a tag")],
     "Policies: policies/ ran, 2 violation(s), 1 mandatory:"),
])
def test_policy_outcomes_are_reported(recorded, policy, violations, line):
    text = render_markdown([summary_of(recorded, policy=policy, violations=violations)])
    assert line in text
    for violation in violations:
        assert f"- **{violation.level}** `{violation.policy}` on `{violation.resource}`: {violation.message}" in text


def test_a_failed_preview_is_reported_not_hidden():
    summary = summarise(StackPreview("prod", None, error="error: invalid configuration: x"))
    text = render_markdown([summary], notes=["stacks/Pulumi.old.yaml was removed: not previewed"],
                           base="origin/main")
    assert "## Pulumi preview: 1 stack (changed since `origin/main`)" in text
    assert "**preview failed**: error: invalid configuration: x" in text
    assert "> stacks/Pulumi.old.yaml was removed: not previewed" in text


def test_no_affected_stack():
    assert "No stack is affected by this change." in render_markdown([])


def test_short_digests():
    assert short_digest(NEW) == "sha256:573d2ecc5969"
    assert short_digest(None) == "(none)"
    assert short_digest("(built during up)") == "(built during up)"


# -- which stacks a change affects ---------------------------------------------------------------

CONFIGS = {
    "platform": {"bluegreen:platform": {"host": "local"}},
    "integration": {"bluegreen:platformStack": "organization/bluegreen/platform",
                    "bluegreen:services": {"vizconfig": {"manifest": "services/vizconfig/service.yaml"}}},
    "production": {"bluegreen:platformStack": "organization/bluegreen/platform",
                   "bluegreen:services": {"vizconfig": {"manifest": "services/vizconfig/service.yaml"},
                                          "other": {"manifest": "services/other/service.yaml"}}},
    "local": {"bluegreen:platform": {"host": "local"},
              "bluegreen:services": {"vizconfig": {"manifest": "services/vizconfig/service.yaml"}}},
}


@pytest.mark.parametrize("paths, stacks", [
    (["stacks/Pulumi.production.yaml"], ["production"]),
    (["stacks/Pulumi.production.yaml", "stacks/Pulumi.platform.yaml"], ["platform", "production"]),
    (["README.md", "delivery/cli.py", ".github/workflows/delivery.yml"], []),
    (["components/service.py"], ["local", "platform", "integration", "production"]),
    (["Pulumi.yaml"], ["local", "platform", "integration", "production"]),
    (["policies/rules/images.py"], ["local", "platform", "integration", "production"]),
    (["services/other/app/main.py"], ["production"]),
    (["services/vizconfig/app/server.py"], ["local", "integration", "production"]),
    (["services/vizconfigs/x.py"], []),
])
def test_affected_stacks(paths, stacks):
    assert affected_stacks(paths, CONFIGS) == (stacks, [])


def test_a_removed_stack_file_is_a_note_not_a_preview():
    stacks, notes = affected_stacks(["stacks/Pulumi.staging.yaml"], CONFIGS)
    assert stacks == []
    assert notes == ["stacks/Pulumi.staging.yaml was removed: not previewed (destroy that stack deliberately)"]


def test_platform_stacks_come_first():
    assert order_stacks({"production", "platform", "integration", "local"}, CONFIGS) == \
        ["local", "platform", "integration", "production"]


def test_stacks_are_selected_from_the_git_diff(tmp_path):
    """A scratch repo: one stack edited, one added, one ignored, one untouched, a file removed."""
    import subprocess

    from bluegreen.delivery.preview import changed_paths, default_base, stack_configs

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    stacks = tmp_path / "stacks"
    stacks.mkdir()
    for name in ("integration", "production", "old"):
        (stacks / f"Pulumi.{name}.yaml").write_text("config:\n  bluegreen:environment: %s\n" % name)
    (tmp_path / ".gitignore").write_text("stacks/Pulumi.e2e-*.yaml\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "base")
    assert default_base(str(tmp_path)) == "HEAD"   # no origin/main in a fresh repo
    (stacks / "Pulumi.production.yaml").write_text("config:\n  bluegreen:environment: production\n"
                                                   "  bluegreen:services: {}\n")
    (stacks / "Pulumi.staging.yaml").write_text("config:\n  bluegreen:environment: staging\n")
    (stacks / "Pulumi.e2e-scratch.yaml").write_text("config: {}\n")
    (stacks / "Pulumi.old.yaml").unlink()
    paths = changed_paths("HEAD", str(tmp_path))
    assert paths == ["stacks/Pulumi.old.yaml", "stacks/Pulumi.production.yaml", "stacks/Pulumi.staging.yaml"]
    configs = stack_configs(str(tmp_path))
    assert sorted(configs) == ["integration", "production", "staging"]
    selected, notes = affected_stacks(paths, configs)
    assert selected == ["production", "staging"]
    assert notes and "Pulumi.old.yaml was removed" in notes[0]


def test_replacing_the_colour_that_served_before_the_update_is_called_out(recorded):
    """The recorded change flips green -> blue and replaces green in the same update: green served
    until the flip, and nothing orders its replacement after the flip."""
    summary = summary_of(recorded, policy="ran")
    assert summary["services"]["vizconfig"]["live_touched"] is True
    assert "- **replaces live containers**" in render_markdown([summary])


def test_replacing_only_the_offline_colour_is_not_called_out(recorded):
    digest = copy.deepcopy(recorded)
    for step in digest["steps"]:
        for state in ("oldState", "newState"):
            value = (step.get(state) or {}).get("inputs", {})
            if value.get("key") == "bluegreen/aliases/e2e-pipe-prod/vizconfig":
                value["value"] = "blue"
            if (step.get(state) or {}).get("outputs", {}).get("key") == "bluegreen/aliases/e2e-pipe-prod/vizconfig":
                step[state]["outputs"]["value"] = "blue"
    summary = summary_of(digest, policy="ran")
    assert summary["services"]["vizconfig"]["flip"] is False
    assert summary["services"]["vizconfig"]["live_touched"] is False
    assert "replaces live containers" not in render_markdown([summary])


# -- service stacks ------------------------------------------------------------------------------

SERVICE_STACKS = {
    **CONFIGS,
    "production.api": {"bluegreen:environmentStack": "production",
                       "bluegreen:services": {"api": {"manifest": "services/api/service.yaml"}}},
    "production.web": {"bluegreen:environmentStack": "organization/bluegreen/production",
                       "bluegreen:services": {"web": {"manifest": "services/web/service.yaml"}}},
    "integration.api": {"bluegreen:environmentStack": "integration",
                        "bluegreen:services": {"api": {"manifest": "services/api/service.yaml"}}},
}


@pytest.mark.parametrize("paths, stacks", [
    (["stacks/Pulumi.production.api.yaml"], ["production.api"]),
    (["services/api/app.py"], ["integration.api", "production.api"]),
    (["services/web/service.yaml"], ["production.web"]),
    (["stacks/Pulumi.production.yaml"], ["production", "production.api", "production.web"]),
])
def test_a_service_stack_is_previewed_alone_unless_its_environment_stack_changes(paths, stacks):
    assert affected_stacks(paths, SERVICE_STACKS) == (stacks, [])


def test_a_service_stacks_summary_uses_the_inherited_environment(recorded):
    digest = copy.deepcopy(recorded)
    digest["config"] = {k: v for k, v in digest["config"].items() if k != "bluegreen:environment"}
    summary = summary_of(digest, config={"bluegreen:environment": "e2e-pipe-prod"})
    assert summary["environment"] == "e2e-pipe-prod"
    assert summary["services"]["vizconfig"]["flip"] is True


def test_a_split_change_is_shown_in_words(recorded):
    from bluegreen.components.model.split import Cohort, Split, split_value
    digest = copy.deepcopy(recorded)
    key = "bluegreen/splits/e2e-pipe-prod/vizconfig"
    urn = next(s["urn"] for s in recorded["steps"] if s["urn"].endswith("-vizconfig-alias-key"))
    digest["steps"].append({
        "op": "update", "urn": urn.replace("Alias$", "").rsplit("::", 1)[0].rsplit("$", 1)[0]
        + "$consul:index:Key::e2e-pipe-prod-vizconfig-split",
        "oldState": {"inputs": {"key": key, "value": split_value(Split(), "blue")}},
        "newState": {"inputs": {"key": key, "value": split_value(
            Split(20, None, (Cohort("header", "X-Beta", "1", "green"),)), "blue")}}})
    service = summary_of(digest)["services"]["vizconfig"]
    assert service["split"] == {"from": "no split",
                                "to": "20% to green (sticky by cookie); header X-Beta=1 -> green"}
    assert "- split: no split -> 20% to green (sticky by cookie); header X-Beta=1 -> green" in \
        render_markdown([summary_of(digest)])
    assert not any("split" in line for line in summary_of(digest)["other"])


def test_a_flip_through_a_rollout_says_so(recorded):
    digest = copy.deepcopy(recorded)
    key = "bluegreen/bake/e2e-pipe-prod/vizconfig"
    urn = next(s["urn"] for s in recorded["steps"] if s["urn"].endswith("-vizconfig-alias-key"))
    rolling = {"status": "rolling", "colour": "green", "previous": "blue", "steps": [10, 50],
               "stepS": 30.0}
    digest["steps"].append({
        "op": "create", "urn": urn.rsplit("::", 1)[0] + "::e2e-pipe-prod-vizconfig-bake",
        "newState": {"inputs": {"key": key, "value": json.dumps(rolling)}}})
    assert "- rollout starts: blue -> green in steps of [10, 50]% (30s each), judged by real " \
           "traffic; the watchdog flips at the end" in render_markdown([summary_of(digest)])
