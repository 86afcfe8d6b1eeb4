"""`preview --config-only`: the settings a change asks of each stack, from the stack files alone
(the pull-request job has no state passphrase, so no engine preview)."""

from __future__ import annotations

from bluegreen.delivery import REPO
from bluegreen.delivery.config_preview import ENGINE_NOTE, render, service_changes, stack_changes, stack_file_at

OLD = "127.0.0.1:15000/vizconfig@sha256:" + "1" * 64
NEW = "127.0.0.1:15000/vizconfig@sha256:" + "2" * 64
BEFORE = {"bluegreen:environment": "production",
          "bluegreen:secrets": {"vizconfig": {"DB_PASSWORD": {"secure": "v1:AAAA"}}},
          "bluegreen:services": {"vizconfig": {
              "manifest": "services/vizconfig/service.yaml", "live": "blue",
              "blue": {"version": "1.0.0", "image": OLD}}}}
AFTER = {"bluegreen:environment": "production",
         "bluegreen:secrets": {"vizconfig": {"DB_PASSWORD": {"secure": "v1:BBBB"}}},
         "bluegreen:services": {"vizconfig": {
             "manifest": "services/vizconfig/service.yaml", "live": "green",
             "blue": {"version": "1.0.0", "image": OLD},
             "green": {"version": "2.0.0", "image": NEW, "env": {"FEATURE_CHARTS": "on"}}},
             "frontend": {"manifest": "services/frontend/service.yaml", "live": "blue",
                          "blue": {"version": "1.0.0"}, "replicas": 2}}}


def test_the_flip_comes_first_then_each_changed_setting_with_short_digests():
    before, after = BEFORE["bluegreen:services"]["vizconfig"], AFTER["bluegreen:services"]["vizconfig"]
    assert service_changes(before, after) == [
        "flip requested: `blue` -> `green`",
        "`green.env.FEATURE_CHARTS`: `(none)` -> `on`",
        "`green.image`: `(none)` -> `sha256:222222222222`",
        "`green.version`: `(none)` -> `2.0.0`"]
    assert service_changes(before, before) == []


def test_a_stack_names_changed_services_and_only_the_names_of_other_keys():
    assert stack_changes(BEFORE, AFTER) == {
        "services": {"frontend": ["flip requested: `(none)` -> `blue`",
                                  "`blue.version`: `(none)` -> `1.0.0`",
                                  "`manifest`: `(none)` -> `services/frontend/service.yaml`",
                                  "`replicas`: `(none)` -> `2`"],
                     "vizconfig": service_changes(BEFORE["bluegreen:services"]["vizconfig"],
                                                  AFTER["bluegreen:services"]["vizconfig"])},
        "other": ["bluegreen:secrets"]}


def test_the_markdown_says_what_it_is_and_never_shows_a_secret_value():
    text = render({"production": stack_changes(BEFORE, AFTER), "local": stack_changes({}, {})},
                  ["stacks/Pulumi.staging.yaml was removed"], "origin/main")
    assert text.startswith("<!-- bluegreen-preview -->\n## Stack changes: 2 stacks (changed since "
                           "`origin/main`)\n")
    assert ENGINE_NOTE in text and "passphrase" in ENGINE_NOTE
    assert "\n**vizconfig**\n- flip requested: `blue` -> `green`\n" in text
    assert "Other settings changed: `bluegreen:secrets`" in text
    assert "v1:AAAA" not in text and "v1:BBBB" not in text
    assert "> stacks/Pulumi.staging.yaml was removed" in text
    assert "### `local`\n- no stack setting changed" in text


def test_a_stack_file_is_read_at_a_git_ref():
    assert stack_file_at("HEAD", "local", REPO)["bluegreen:environment"] == "local"
    assert stack_file_at("HEAD", "no-such-stack", REPO) == {}
