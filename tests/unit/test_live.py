"""The alias is the one truth for which colour serves: the program plans from it, refuses an update
that would touch that colour unless the change acknowledges exactly that, and records each
release with its configuration. Runs the real program under mocks against Consul records made
from what an earlier run registered."""

from __future__ import annotations

import json
import os

import pulumi
import pytest

from bluegreen.components.consul.records import ServiceRecords
from bluegreen.components.model.release import Release
from test_wiring import ENV, STACK, Deployment, config
from unit_harness import CONSUL_KEY, CONTAINER, ProgramFailed, plain, run_program

SLOTS = f"bluegreen/slots/{ENV}/vizconfig/"
HISTORY = f"bluegreen/history/{ENV}/vizconfig/"


def deploy(cfg: dict, consul: ServiceRecords | None = None) -> Deployment:
    return Deployment(run_program(cfg, stack=STACK, records={"vizconfig": consul or ServiceRecords()}))


def consul_after(deployment: Deployment, alias: str | None,
                 before: ServiceRecords | None = None) -> ServiceRecords:
    """What Consul holds once `deployment`'s update finished, with the alias on `alias`: the keys
    it wrote over those of `before` (release and history keys outlive the stack's colours)."""
    before = before or ServiceRecords()
    values = {k.inputs["key"]: plain(k.inputs["value"]) for k in deployment.of_type(CONSUL_KEY)}
    slots = {key.rsplit("/", 1)[1]: json.loads(value) for key, value in values.items()
             if key.startswith(SLOTS)}
    return ServiceRecords(
        releases={**before.releases, **{key.rsplit("/", 1)[1]: Release.from_json(value)
                                        for key, value in values.items()
                                        if key.startswith("bluegreen/releases/vizconfig/")}},
        slots={c: r["version"] for c, r in slots.items()},
        shapes={c: r["shape"] for c, r in slots.items()},
        running={c: r.get("release", r["version"]) for c, r in slots.items()},
        configs={c: r["config"] for c, r in slots.items() if "config" in r},
        dependencies={c: r["dependencies"] for c, r in slots.items() if "dependencies" in r},
        history={**before.history, **{key.rsplit("/", 1)[1]: json.loads(value)
                                      for key, value in values.items() if key.startswith(HISTORY)}},
        live=alias)


def refused(cfg: dict, consul: ServiceRecords) -> ProgramFailed:
    with pytest.raises(ProgramFailed) as failure:
        deploy(cfg, consul)
    return failure.value


@pytest.fixture(scope="module")
def green_serves() -> ServiceRecords:
    """blue runs 1.0.0, green 2.0.0, and the alias names green."""
    return consul_after(deploy(config(live="green")), "green")


def slot(deployment: Deployment, colour: str) -> dict:
    return json.loads(plain(deployment.key(SLOTS + colour).inputs["value"]))


def service_containers(deployment: Deployment, colour: str) -> list:
    return [c for c in deployment.role("service") if c.label("bluegreen.colour") == colour]


def test_a_version_bump_on_the_colour_the_alias_names_is_refused_before_anything_registers(green_serves):
    # The stack file calls green offline (live: blue), but the alias says green serves.
    failure = refused(config(live="blue", green="3.0.0"), green_serves)
    message = str(failure)
    assert "stacks/Pulumi.integration.yaml: bluegreen.services.vizconfig.green: green would go from " \
           "2.0.0 to 3.0.0" in message
    assert f"the alias bluegreen/aliases/{ENV}/vizconfig names green" in message
    assert "Deploy to blue and flip instead" in message and "acknowledgeLive: green@" in message
    assert not [r for r in failure.resources if r.type in (CONTAINER, CONSUL_KEY)]


@pytest.mark.parametrize("change,reason", [
    ({"green_env": {"FEATURE": "on"}}, "green's containers would be replaced"),
    ({"replicas": 2}, "green's containers would be replaced"),
    ({"green": None, "live": "blue"}, "the stack no longer configures green"),
])
def test_other_changes_to_the_serving_colour_are_refused(green_serves, change, reason):
    assert reason in str(refused(config(**{"live": "green", **change}), green_serves))


def test_the_acknowledgement_lets_exactly_that_change_through(green_serves):
    message = str(refused(config(live="green", green="3.0.0"), green_serves))
    token = message.split("acknowledgeLive: ", 1)[1].split()[0]
    other = "green@" + ("0" * 8 if token[-8:] != "0" * 8 else "1" * 8)
    refused(config(live="green", green="3.0.0", acknowledgeLive=other), green_serves)
    deployment = deploy(config(live="green", green="3.0.0", acknowledgeLive=token), green_serves)
    record = slot(deployment, "green")
    assert record["replacedLive"] == "green would go from 2.0.0 to 3.0.0"
    assert record["acknowledgedBy"] == token


def test_the_offline_colour_is_the_one_the_alias_does_not_name(green_serves, monkeypatch):
    warnings = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *a, **k: warnings.append(message))
    # A failed flip left live: blue in the file; blue gets a new version, green is left as it runs.
    deployment = deploy(config(live="blue", blue="3.0.0"), green_serves)
    assert slot(deployment, "green")["version"] == "2.0.0" and "replacedLive" not in slot(deployment, "green")
    [note] = [w for w in warnings if "asks live: blue" in w]
    assert f"the alias bluegreen/aliases/{ENV}/vizconfig names green, which serves traffic now" in note
    assert "set live: green" in note


def test_a_secret_change_reaches_the_offline_colour_only(green_serves):
    def with_secret(value):
        return {**config(live="green"), "secrets": {"vizconfig": {"API_KEY": value}}}

    first = deploy(with_secret("one"), green_serves)
    consul = consul_after(first, "green")
    second = deploy(with_secret("two"), consul)
    for container in service_containers(second, "green"):
        assert container.ignore_changes == ["envs"], "the serving colour keeps what it runs with"
    for container in service_containers(second, "blue"):
        assert container.ignore_changes == []
    assert slot(second, "green")["config"]["secrets"] == consul.configs["green"]["secrets"]
    assert slot(second, "blue")["config"]["secrets"] != consul.configs["blue"]["secrets"]
    assert "one" not in json.dumps(slot(second, "blue")) and "two" not in json.dumps(slot(second, "blue"))


def test_a_configuration_only_change_is_a_release_of_its_own():
    blue_serves = consul_after(deploy(config(live="blue", green=None)), "blue")
    assert blue_serves.history["1.0.0"]["config"] == {"env": {}, "replicas": 1, "secrets": {}}
    deployment = deploy(config(live="green", green="1.0.0", green_env={"FEATURE": "on"}), blue_serves)
    record = slot(deployment, "green")
    release = record["release"]
    assert release.startswith("1.0.0+") and len(release) == len("1.0.0+") + 8
    entry = json.loads(plain(deployment.key(HISTORY + release).inputs["value"]))
    assert entry["version"] == "1.0.0" and entry["config"]["env"] == {"FEATURE": "on"}
    assert "liveAt" in entry
    # blue's line stays the plain version's, with the configuration it ran.
    assert json.loads(plain(deployment.key(HISTORY + "1.0.0").inputs["value"]))["config"]["env"] == {}


# --- rollback's plan, from Consul's records alone -------------------------------------------------

def stack_service(cfg: dict):
    from bluegreen.components.model.config import parse_stack_config
    from unit_harness import ROOT
    return parse_stack_config(STACK, cfg, ROOT).services[0]


def after_a_failed_deploy_of_v3() -> tuple:
    """v1 was live on blue, v2 went live on green; then v3 on blue with a broken env override and
    live: blue failed its gate: the file asks blue, the alias names green."""
    first = consul_after(deploy(config(live="blue", green=None)), "blue")
    second = consul_after(deploy(config(live="green"), first), "green", first)
    broken = config(live="blue", blue="3.0.0")
    broken["services"]["vizconfig"]["blue"]["env"] = {"BROKEN": "1"}
    third = consul_after(deploy(broken, second), "green", second)
    return stack_service(broken), third


def test_rollback_to_a_version_goes_to_the_colour_the_alias_does_not_name_with_its_config():
    from bluegreen.delivery.rollback import plan_rollback
    settings, consul = after_a_failed_deploy_of_v3()
    plan = plan_rollback(settings, consul, "1.0.0")
    assert (plan.action, plan.live, plan.colour, plan.release) == ("redeploy", "green", "blue", "1.0.0")
    assert plan.env == {}, "1.0.0 ran live without BROKEN"
    assert plan.settings == {"live": "blue", "blue.version": "1.0.0",
                             "blue.image": consul.history["1.0.0"]["reference"]}


def test_rollback_after_a_failed_flip_records_what_serves():
    from bluegreen.delivery.rollback import plan_rollback
    settings, consul = after_a_failed_deploy_of_v3()
    plan = plan_rollback(settings, consul, None)
    assert (plan.action, plan.colour, plan.release) == ("reconcile", "green", "2.0.0")
    assert plan.settings == {"live": "green", "green.version": "2.0.0",
                             "green.image": consul.history["2.0.0"]["reference"]}
    assert plan.env == {}


def test_rollback_when_the_offline_colour_runs_the_target_moves_only_the_alias():
    from bluegreen.delivery.rollback import plan_rollback
    first = consul_after(deploy(config(live="blue", green=None)), "blue")
    second = consul_after(deploy(config(live="green"), first), "green", first)
    plan = plan_rollback(stack_service(config(live="green")), second, None)
    assert (plan.action, plan.live, plan.colour, plan.release) == ("flip", "green", "blue", "1.0.0")


def test_a_change_to_the_dependencies_both_colours_share_needs_the_acknowledgement(green_serves, tmp_path):
    """The db container serves the live colour too: a new image for it is refused unless
    acknowledged, like any change to the colour the alias names."""
    import shutil
    import yaml
    from unit_harness import ROOT
    repo = tmp_path / "vizconfig"
    shutil.copytree(os.path.join(ROOT, "services", "vizconfig"), repo)
    manifest = yaml.safe_load((repo / "service.yaml").read_text())
    cfg = config(live="green")
    cfg["services"]["vizconfig"]["manifest"] = str(repo / "service.yaml")
    consul = consul_after(deploy(cfg), "green")
    manifest["dependencies"]["db"]["memory"] = "192m"
    (repo / "service.yaml").write_text(yaml.safe_dump(manifest))
    message = str(refused(cfg, consul))
    assert "the linked dependencies green runs with (shared by both colours) would be replaced" in message
    token = message.split("acknowledgeLive: ", 1)[1].split()[0]
    cfg["services"]["vizconfig"]["acknowledgeLive"] = token
    assert slot(deploy(cfg, consul), "green")["acknowledgedBy"] == token
