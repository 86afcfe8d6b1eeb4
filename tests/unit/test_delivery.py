"""The pure parts of the delivery package: step bookkeeping and the JSON report, error summaries,
config decoding, the acceptance field of the manifest, the command line."""

from __future__ import annotations

import io
import json
import types

import pytest

from bluegreen.components.model.manifest import AcceptanceSpec, parse_manifest
from bluegreen.components.model.validation import ConfigError
from bluegreen.delivery import cli
from bluegreen.components.model.config import ColourConfig, ServiceConfig
from bluegreen.components.model.analysis import Bounds
from bluegreen.delivery.pipeline import (Pipeline, PipelineArgs, colour_running, flip_detail, flip_record,
                               flips_with_deploy, run_pipeline)
from bluegreen.delivery.staging import StagePlan, Staging, stage_plan
from bluegreen.delivery.stacks import classify, container_changes, decode_values, error_summary, short_name
from bluegreen.delivery.steps import (FAILED, INCLUDED, NOT_RUN, PASSED, PIPELINE_STEPS, SKIPPED,
                            PipelineFailed, Run, StepFailed, step_shares, write_report)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def run(clock):
    return Run(out=io.StringIO(), clock=clock)


# -- steps ---------------------------------------------------------------------------------------

def test_the_pipeline_has_the_seeds_eleven_steps_in_order():
    assert [number for number, _ in PIPELINE_STEPS] == list(range(1, 12))
    names = dict(PIPELINE_STEPS)
    assert "build" in names[1] and "isolation" in names[2] and "push" in names[3]
    assert "flip" in names[10] and "online" in names[11]


def test_a_passing_step_records_its_duration_and_prints_progress(run, clock):
    with run.step(1) as step:
        clock.advance(2.5)
        step.detail = "127.0.0.1:5000/api@sha256:..."
    assert run.steps[1].status == PASSED
    assert run.steps[1].seconds == 2.5
    output = run.out.getvalue()
    assert "==> [1/11] build the image  (at 0.0s)" in output
    assert "passed in 2.5s (total 2.5s)" in output


def test_a_failing_step_names_itself_and_the_rest_is_not_run(run, clock):
    with run.step(1):
        clock.advance(1)
    with pytest.raises(PipelineFailed) as failure:
        with run.step(2):
            clock.advance(3)
            raise StepFailed("the image's tests failed (exit 1)")
    assert failure.value.step.number == 2
    assert str(failure.value) == "step 2 (test the image in isolation) failed: the image's tests failed (exit 1)"
    assert "FAILED after 3.0s: the image's tests failed (exit 1)" in run.out.getvalue()
    report = run.report(service="api")
    statuses = {s["number"]: s["status"] for s in report["steps"]}
    assert statuses[1] == PASSED and statuses[2] == FAILED
    assert all(statuses[n] == NOT_RUN for n in range(3, 12))
    assert report["result"] == "failed"
    assert report["failedStep"] == {"number": 2, "name": "test the image in isolation",
                                    "error": "the image's tests failed (exit 1)"}


def test_any_exception_in_a_step_fails_it(run):
    with pytest.raises(PipelineFailed) as failure:
        with run.step(9):
            raise RuntimeError("health gate e2e/api/green did not pass within 10s")
    assert failure.value.step.error == "health gate e2e/api/green did not pass within 10s"
    assert isinstance(failure.value.__cause__, RuntimeError)


def test_a_run_that_could_not_start_is_a_failure(run):
    report = run.report(error="stack production has no config file")
    assert report["result"] == "failed" and report["failedStep"] is None
    assert {s["status"] for s in report["steps"]} == {NOT_RUN}


def test_recorded_steps_carry_a_status_and_no_time(run):
    run.record(3, INCLUDED, "pushed by step 1")
    run.record(6, SKIPPED, "no acceptance command")
    assert (run.steps[3].status, run.steps[3].seconds, run.steps[3].detail) == (INCLUDED, 0.0, "pushed by step 1")
    assert "==> [6/11] run the service's automated tests against integration: skipped" in run.out.getvalue()


def test_a_step_can_be_renamed_for_this_run(run):
    with run.step(4, name="deploy integration's green"):
        pass
    assert run.steps[4].name == "deploy integration's green"


def test_the_report_is_json_with_every_step_and_the_facts_given(run, clock, tmp_path):
    for number in range(1, 12):
        with run.step(number):
            clock.advance(number)
    report = run.report(service="api", version="2.0.0", digest="sha256:" + "a" * 64,
                        environments={"production": {"before": {"live": "blue"}, "after": {"live": "green"}}})
    path = tmp_path / "reports" / "pipeline-api-2.0.0.json"
    write_report(str(path), report)
    loaded = json.loads(path.read_text())
    assert loaded["result"] == "succeeded" and loaded["failedStep"] is None
    assert loaded["totalSeconds"] == 66.0
    assert [s["number"] for s in loaded["steps"]] == list(range(1, 12))
    assert set(loaded["steps"][0]) == {"number", "name", "status", "seconds", "detail", "error"}
    assert loaded["digest"] == "sha256:" + "a" * 64
    assert loaded["environments"]["production"]["after"]["live"] == "green"
    shares = step_shares(loaded)
    assert shares[10][:3] == (11, "check the new build is online", 11.0)
    assert sum(share for *_, share in shares) == pytest.approx(1.0)


# -- stacks helpers ------------------------------------------------------------------------------

def test_error_summary_keeps_the_lines_that_say_what_failed():
    transcript = """code: 255
 stdout: Updating (e2e-pipe-prod):
    pulumi:pulumi:Stack bluegreen-e2e-pipe-prod running
 +  bluegreen:service:Service e2e-pipe-prod-vizconfig created
Diagnostics:
  pulumi-python:dynamic:Resource (e2e-pipe-prod-vizconfig-green-gate):
    error: Exception: health gate e2e-pipe-prod/vizconfig/green did not pass within 10s, so the alias was not flipped
  pulumi:pulumi:Stack (bluegreen-e2e-pipe-prod):
    error: update failed
"""
    summary = error_summary(transcript)
    assert summary == ("error: Exception: health gate e2e-pipe-prod/vizconfig/green did not pass "
                       "within 10s, so the alias was not flipped")


def test_error_summary_falls_back_to_the_tail_when_nothing_says_error():
    assert error_summary("something odd\nhappened here", limit=20) == "ng odd happened here"


def test_config_values_decode_objects_and_ignore_other_namespaces():
    values = decode_values({
        "bluegreen:environment": "production",
        "bluegreen:services": '{"api": {"live": "blue"}}',
        "bluegreen:hosts": '{"local": {"docker": "unix:///var/run/docker.sock"}}',
        "aws:region": "nowhere",
        "bluegreen:unknownKey": "x",
    })
    assert values == {"environment": "production", "services": {"api": {"live": "blue"}},
                      "hosts": {"local": {"docker": "unix:///var/run/docker.sock"}}}


def test_stack_names_may_be_fully_qualified():
    assert short_name("organization/bluegreen/production") == "production"
    assert short_name("production") == "production"


@pytest.mark.parametrize("ops, word", [
    ({"replace"}, "replaced"), ({"create-replacement", "delete-replaced"}, "replaced"),
    ({"create"}, "created"), ({"delete"}, "deleted"), ({"update"}, "updated"),
    ({"same"}, "unchanged"), ({"read"}, "unchanged")])
def test_step_ops_classify_into_one_word(ops, word):
    assert classify(ops) == word


def test_container_changes_count_each_container_once():
    def event(op, urn, kind="docker:index/container:Container"):
        metadata = types.SimpleNamespace(op=op, urn=urn, type=kind)
        return types.SimpleNamespace(resource_pre_event=types.SimpleNamespace(metadata=metadata))

    events = [event("replace", "c1"), event("create-replacement", "c1"), event("delete-replaced", "c1"),
              event("create", "c2"), event("same", "c3"), event("update", "gate", "pulumi-python:dynamic:Resource"),
              types.SimpleNamespace(resource_pre_event=None)]
    assert container_changes(events) == "1 created, 1 replaced"
    assert container_changes([event("same", "c3")]) == ""


def test_a_flip_in_the_report_carries_the_time_the_stack_measured():
    outputs = {"services": {"vizconfig": {"live": "green", "flipSeconds": 0.031}}}
    flip = flip_record(outputs, "vizconfig", "blue", "green")
    assert flip == {"from": "blue", "to": "green", "flipSeconds": 0.031}
    assert flip_detail("prod", flip) == ("alias prod: blue -> green; the proxy served green 31 ms "
                                         "after the alias write")
    unmeasured = flip_record({"services": {"vizconfig": {}}}, "vizconfig", "green", "blue")
    assert unmeasured["flipSeconds"] is None
    assert flip_detail("prod", unmeasured) == "alias prod: green -> blue"


# -- the acceptance field of the manifest --------------------------------------------------------

def manifest_data(**extra) -> dict:
    return {"name": "api", "description": "x", "port": 80, "health": {}, **extra}


def test_acceptance_takes_a_list_or_a_shell_string(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    path = str(tmp_path / "service.yaml")
    listed = parse_manifest(manifest_data(acceptance={"command": ["python3", "tests/acceptance.py"]}), path)
    assert listed.acceptance == AcceptanceSpec(("python3", "tests/acceptance.py"))
    shell = parse_manifest(manifest_data(acceptance={"command": "make accept"}), path)
    assert shell.acceptance.command == ("/bin/sh", "-c", "make accept")
    assert parse_manifest(manifest_data(), path).acceptance is None


@pytest.mark.parametrize("acceptance, field, problem", [
    ({"command": []}, "acceptance.command", "non-empty list"),
    ({"command": [1]}, "acceptance.command", "non-empty list"),
    ({}, "acceptance.command", "is required"),
    ({"command": "x", "timeout": 3}, "acceptance.timeout", "unknown key"),
    ("make accept", "acceptance", "must be a mapping"),
])
def test_invalid_acceptance_names_the_field(tmp_path, acceptance, field, problem):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(ConfigError) as raised:
        parse_manifest(manifest_data(acceptance=acceptance), str(tmp_path / "service.yaml"))
    assert raised.value.field == field
    assert problem in str(raised.value)


def test_the_example_service_declares_its_acceptance_tests():
    from bluegreen.delivery import REPO
    from bluegreen.components.model.manifest import load_manifest
    manifest = load_manifest(f"{REPO}/services/vizconfig/service.yaml")
    assert manifest.acceptance.command == ("python3", "/app/tests/acceptance.py")


# -- the command line ----------------------------------------------------------------------------

@pytest.mark.parametrize("command, words", [
    ("pipeline", ["SERVICE_REPO_DIR", "--version", "--integration", "--production", "--report"]),
    ("rollback", ["SERVICE", "--stack", "--to", "git revert"]),
    ("releases", ["SERVICE", "--stack", "history"]),
    ("promote", ["SERVICE", "--stack", "--dry-run", "one Consul transaction"]),
    ("preview", ["--stack", "--markdown", "--base", "policies"]),
])
def test_every_command_has_help(capsys, command, words):
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for word in words:
        assert word in text


def test_the_pipeline_rejects_a_bad_version_or_a_missing_manifest_before_touching_anything(tmp_path):
    out = io.StringIO()
    assert run_pipeline(PipelineArgs(str(tmp_path), "1.0/evil"), out) == 2
    assert "is not allowed" in out.getvalue()
    out = io.StringIO()
    assert run_pipeline(PipelineArgs(str(tmp_path), "1.0.0"), out) == 2
    assert "service.yaml: (file): not found" in out.getvalue()


def test_the_pipeline_refuses_a_repo_whose_manifest_claims_a_service_deployed_from_another(
        tmp_path, monkeypatch):
    # The stacks deploy vizconfig from services/vizconfig/service.yaml; this repo says it is vizconfig.
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "service.yaml").write_text("name: vizconfig\ndescription: not it\nport: 8000\n")

    def deployed(*_args):
        raise AssertionError("the pipeline went on with a manifest the stacks do not deploy")

    monkeypatch.setattr(Pipeline, "_snapshot", deployed)
    monkeypatch.setattr(Pipeline, "_steps", deployed)
    out = io.StringIO()
    args = PipelineArgs(str(tmp_path), "9.9.9", report=str(tmp_path / "report.json"))
    assert run_pipeline(args, out) == 2
    text = out.getvalue()
    assert "stacks/Pulumi.integration.yaml: bluegreen.services.vizconfig.manifest: vizconfig is " \
           "deployed from " in text
    assert f"services/vizconfig/service.yaml, not from {tmp_path / 'service.yaml'}" in text


def test_a_rerun_finds_the_colour_its_release_already_runs_on():
    image = "r:5000/api@sha256:" + "b" * 64

    def settings(blue: ColourConfig, green: ColourConfig) -> ServiceConfig:
        return ServiceConfig(name="api", manifest="service.yaml", live="blue",
                             colours={"blue": blue, "green": green}, hosts=("local",))

    old = ColourConfig("1.0.0", image="r:5000/api@sha256:" + "a" * 64)
    # Killed during the flip: the stack already holds the release on green.
    assert colour_running(settings(old, ColourConfig("2.0.0", image=image)), "2.0.0", image) == "green"
    # Only that release counts: another digest or version is a new deploy to the offline colour.
    assert colour_running(settings(old, ColourConfig("2.0.0", image=image)), "2.0.1", image) is None
    assert colour_running(settings(old, ColourConfig("2.0.0")), "2.0.0", image) is None


def test_integration_deploys_and_flips_in_one_up_unless_preview_traffic_is_judged_between():
    def settings(**extra) -> ServiceConfig:
        return ServiceConfig(name="api", manifest="service.yaml", live="blue",
                             colours={"blue": ColourConfig("1.0.0")}, hosts=("local",), **extra)

    assert flips_with_deploy(settings(), "blue", "green")
    # Already live (a re-run that converges): nothing to flip.
    assert not flips_with_deploy(settings(), "green", "green")
    # The flip waits for a verdict on the new colour's preview traffic: two updates.
    assert not flips_with_deploy(settings(preview_gate=Bounds()), "blue", "green")


def test_production_is_staged_early_only_when_a_failure_in_integration_can_put_it_back():
    image = "r:5000/api@sha256:" + "a" * 64
    new = {"green.version": "3.0.0", "green.image": "r:5000/api@sha256:" + "c" * 64}

    def settings(green: ColourConfig) -> ServiceConfig:
        return ServiceConfig(name="api", manifest="service.yaml", live="blue",
                             colours={"blue": ColourConfig("1.0.0", image=image), "green": green},
                             hosts=("local",))

    plan = stage_plan(settings(ColourConfig("2.0.0", image=image)), "green", "blue", new, [])
    assert plan is not None and plan.changes == new
    assert plan.restore == {"green.version": "2.0.0", "green.image": image}
    # A first deploy, a re-run or a flip-only change: nothing to stage.
    assert stage_plan(None, "blue", None, new, []) is None
    assert stage_plan(settings(ColourConfig("2.0.0", image=image)), "green", "blue", {}, []) is None
    assert stage_plan(settings(ColourConfig("2.0.0", image=image)), "blue", "blue", new, []) is None
    # The colour records no digest: a restore could not bring back what ran.
    assert stage_plan(settings(ColourConfig("2.0.0")), "green", "blue", new, []) is None
    # The release changes configuration that both colours read live: after integration passes.
    assert stage_plan(settings(ColourConfig("2.0.0", image=image)), "green", "blue", new,
                      ["LOG_LEVEL"]) is None


class RecordingStack:
    """An EnvStack stand-in that records what it was told; its first `up` may fail."""

    name = "production"

    def __init__(self, fail_first_up: bool = False):
        self.calls: list[tuple] = []
        self.fail_first_up = fail_first_up

    def set_service(self, service, settings):
        self.calls.append(("set", service, dict(settings)))

    def up(self, label):
        self.calls.append(("up", label))
        if self.fail_first_up and sum(call[0] == "up" for call in self.calls) == 1:
            raise RuntimeError("the staged up failed")
        return {"services": {"api": {"url": "http://proxy/production/api/"}}}


def staged(stack) -> Staging:
    plan = StagePlan("green", "blue", {"green.version": "3.0.0"}, {"green.version": "2.0.0"})
    return Staging(stack, "api", plan, "production: green 3.0.0").start()


def test_a_staged_deploy_hands_its_outputs_or_its_error_to_the_joining_step():
    stack = RecordingStack()
    assert staged(stack).join()["services"]["api"]["url"].endswith("/api/")
    assert stack.calls == [("set", "api", {"green.version": "3.0.0"}), ("up", "production: green 3.0.0")]
    with pytest.raises(RuntimeError, match="staged up failed"):
        staged(RecordingStack(fail_first_up=True)).join()


def test_a_restore_puts_the_earlier_release_back_even_when_the_staged_up_failed():
    stack = RecordingStack(fail_first_up=True)
    said = staged(stack).restore()
    assert stack.calls[-2:] == [("set", "api", {"green.version": "2.0.0"}), ("up", "restore green 2.0.0")]
    assert "green runs 2.0.0 again" in said
