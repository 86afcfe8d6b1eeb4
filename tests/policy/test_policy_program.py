"""The pack against what the real components register: program_capture.py runs Service under
Pulumi mocks (in its own process) and the recorded registrations go through the SDK's analyzer
servicer exactly as the engine would send them. This is what keeps the rules' assumptions about
resource shapes (labels, payloads, gate props, alias dependencies, names) true to the code."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from google.protobuf import json_format, struct_pb2
from pulumi.runtime import proto

from test_policy_servicer import servicer

HERE = os.path.dirname(os.path.abspath(__file__))
BOTH = {"manifest": "services/vizconfig/service.yaml", "live": "blue",
        "blue": {"version": "1.0.0"}, "green": {"version": "1.1.0"}}


ONE = {k: v for k, v in BOTH.items() if k != "green"}
PLAIN_PASSWORD = dict(BOTH, green={"version": "1.1.0", "env": {"DB_PASSWORD": "hunter2"}})
_captured: dict[str, list[dict]] = {}


def _scenario(mode: str, service: dict, environment: str = "production", **extra) -> str:
    return json.dumps({"mode": mode, "environment": environment, "service": service, **extra},
                      sort_keys=True)


# Its database from a registry no stack allows (a manifest may name any image).
EVIL_DEPENDENCY = dict(ONE, manifest="tests/policy/evil_dependency/service.yaml")
SCENARIOS = [_scenario("up", BOTH), _scenario("preview", BOTH), _scenario("up", ONE),
             _scenario("up", ONE, environment="integration"),
             _scenario("up", PLAIN_PASSWORD, secret_env=True),
             _scenario("up", EVIL_DEPENDENCY, environment="integration")]


@pytest.fixture(scope="module", autouse=True)
def _capture_all():
    """Runs every scenario's capture at once (each is a Python start-up plus the program)."""
    # The same import path as this process (pytest's pythonpath: unit_harness and friends).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    started = {s: subprocess.Popen([sys.executable, os.path.join(HERE, "program_capture.py"), s],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for s in SCENARIOS}
    try:
        for scenario, process in started.items():
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err[-3000:]
            _captured[scenario] = json.loads(out)
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    yield


def records(mode: str, service: dict, environment: str = "production", **extra) -> list[dict]:
    return _captured[_scenario(mode, service, environment, **extra)]


def diagnostics(recorded: list[dict], config: dict | None = None, advisory: bool = False) -> list:
    """The violations the pack reports (the advisory ones too with `advisory`)."""
    server = servicer(config)
    found = []
    for r in recorded:
        if r["custom"]:  # the engine runs resource policies on custom resources' inputs
            found += server.Analyze(proto.AnalyzeRequest(
                type=r["type"], urn=r["urn"], name=r["name"],
                properties=json_format.ParseDict(r["inputs"], struct_pb2.Struct())), None).diagnostics
    stack = proto.AnalyzeStackRequest()
    for r in recorded:
        item = proto.AnalyzerResource(
            type=r["type"], urn=r["urn"], name=r["name"], parent=r["parent"] or "",
            dependencies=r["dependencies"],
            properties=json_format.ParseDict(r["outputs"], struct_pb2.Struct()))
        for key, urns in r["property_dependencies"].items():
            item.propertyDependencies[key].urns.extend(urns)
        stack.resources.append(item)
    found += server.AnalyzeStack(stack, None).diagnostics
    return [(d.policyName, d.urn, d.message) for d in found
            if advisory or d.enforcementLevel != proto.ADVISORY]


def named(recorded: list[dict], name: str) -> dict:
    return next(r for r in recorded if r["name"] == name)


def test_capture_has_the_shapes_the_rules_rely_on():
    recorded = records("up", BOTH)
    box = named(recorded, "production-vizconfig-blue-local-0")
    assert box["type"] == "docker:index/container:Container"
    assert {"label": "bluegreen.role", "value": "service"} in box["inputs"]["labels"]
    assert "external" not in box["inputs"]["ports"][0]
    registration = named(recorded, "production-vizconfig-blue-local-0-registration")
    assert registration["type"] == "pulumi-python:dynamic/consul:Registration"
    assert registration["outputs"]["payload"]["ID"] == "production-vizconfig-blue-local-0"
    gate = named(recorded, "production-vizconfig-blue-gate")
    alias = named(recorded, "production-vizconfig-alias-key")
    assert gate["urn"] in alias["dependencies"]
    assert gate["urn"] in alias["property_dependencies"]["value"]
    assert named(recorded, "production-vizconfig-green")["parent"] == \
        named(recorded, "production-vizconfig")["urn"]


@pytest.mark.parametrize("mode", ["up", "preview"])
def test_a_production_service_with_both_colours_is_compliant(mode):
    assert diagnostics(records(mode, BOTH)) == []


def test_preview_values_are_unknown_where_expected():
    recorded = records("preview", BOTH)
    box = named(recorded, "production-vizconfig-blue-local-0")
    registration = named(recorded, "production-vizconfig-blue-local-0-registration")
    assert box["inputs"]["image"] == "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    assert registration["inputs"]["payload"] == "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def test_production_with_one_colour_needs_it_retired():
    recorded = records("up", ONE)
    found = diagnostics(recorded)
    assert [(policy, urn) for policy, urn, _ in found] == [
        ("production-keeps-both-colours", named(recorded, "production-vizconfig")["urn"])]
    retired = {"production-keeps-both-colours": {"retired": ["production/vizconfig/green"]}}
    assert diagnostics(recorded, retired) == []
    assert diagnostics(records("up", ONE, environment="integration")) == []


def test_production_flips_at_once_are_advised_to_roll_out():
    recorded = records("up", BOTH)
    advised = [(policy, urn) for policy, urn, _ in diagnostics(recorded, advisory=True)
               if policy == "production-rollouts-analysed"]
    assert advised == [("production-rollouts-analysed", named(recorded, "production-vizconfig-catalogue")["urn"])]
    assert diagnostics(records("up", ONE, environment="integration"), advisory=True) == []


def test_secret_env_passes_and_plain_password_override_fails():
    recorded = records("up", PLAIN_PASSWORD, secret_env=True)
    found = diagnostics(recorded)
    # The container, and the release configuration the colour's slot record and history keep.
    assert [(policy, urn) for policy, urn, _ in found] == [
        ("no-plaintext-secrets", "")] * 3  # resource diagnostics carry no URN of their own
    assert all("DB_PASSWORD" in f[2] and "hunter2" not in f[2] for f in found)
    places = " ".join(f[2] for f in found)
    assert "container production-vizconfig-green-local-0" in places
    assert "bluegreen/slots/production/vizconfig/green.config.env.DB_PASSWORD" in places
    assert "bluegreen/history/production/vizconfig/1.1.0.config.env.DB_PASSWORD" in places


def test_a_dependency_from_a_registry_the_stack_does_not_allow_is_refused_before_its_pull():
    """The real Service pulls the image (a RemoteImage under it) before the container runs it:
    the rule refuses both, so a mandatory refusal stops the update before anything is pulled."""
    recorded = records("up", EVIL_DEPENDENCY, environment="integration")
    found = [message for policy, _, message in diagnostics(recorded)
             if policy == "dependency-image-registry"]
    assert len(found) == 2, found
    assert any("the pull of dependency image integration-vizconfig-db-local-pull runs "
               "'evil.example.com/miner:latest'" in m for m in found)
    assert any("dependency container integration-vizconfig-db-local (dependencies.db) runs "
               "'evil.example.com/miner:latest'" in m for m in found)
    assert all("stacks/policy.stack.json" in m and "build:" in m for m in found)
    assert [p for p, _, _ in diagnostics(recorded)] == ["dependency-image-registry"] * 2
