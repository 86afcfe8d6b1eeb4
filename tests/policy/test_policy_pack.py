"""The pack as a whole: its metadata, its files, and the real entry point answering over gRPC."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc
from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

from bluegreen.policies.rules import ALL_POLICIES, common
from policy_fakes import service_container

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACK = os.path.join(ROOT, "policies")
REQUIRED = {
    "service-image-pinned", "service-registered-with-tags", "service-http-health-check",
    "colour-values", "alias-depends-on-gate", "no-fixed-host-ports", "container-memory-limit",
    "container-restart-policy", "no-plaintext-secrets", "production-keeps-both-colours",
}


def test_policies_are_named_described_and_levelled():
    names = [p.name for p in ALL_POLICIES]
    assert len(names) == len(set(names))
    assert REQUIRED <= set(names)
    for p in ALL_POLICIES:
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", p.name), p.name
        assert p.description.endswith(".") and len(p.description) > 30
        assert isinstance(p.enforcement_level, EnforcementLevel), p.name
        assert isinstance(p, (ResourceValidationPolicy, StackValidationPolicy))


def test_constants_mirror_the_components():
    from bluegreen.components import naming as planning
    assert common.REGISTRATION_TYPE == planning.dynamic_type(planning.REGISTRATION_TYPE)
    assert common.CONSUL_KEY_TYPE == planning.dynamic_type(planning.CONSUL_KEY_TYPE)
    assert common.HEALTH_GATE_TYPE == planning.dynamic_type(planning.HEALTH_GATE_TYPE)
    assert common.COLOURS == planning.COLOURS
    assert common.KV_ROOT == planning.KV_ROOT
    assert common.ALIAS_KEY.match(planning.alias_key("production", "vizconfig"))
    assert not common.ALIAS_KEY.match(planning.route_key("production", "vizconfig"))
    assert common.DIGEST_REFERENCE.pattern == planning.DIGEST_REF.pattern.replace(
        "^[^@\\s]+@", "^(?P<repository>[^@\\s]+)@")


def test_policy_yaml_uses_the_project_venv():
    with open(os.path.join(PACK, "PulumiPolicy.yaml"), encoding="utf-8") as handle:
        spec = yaml.safe_load(handle)
    assert spec["runtime"] == {"name": "python", "options": {"virtualenv": "../.venv"}}
    assert os.path.isdir(os.path.join(PACK, spec["runtime"]["options"]["virtualenv"]))


def test_readme_lists_every_policy_with_its_level():
    with open(os.path.join(PACK, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    for p in ALL_POLICIES:
        assert re.search(rf"`{p.name}`.*\b{p.enforcement_level.value}\b", readme), p.name


@pytest.fixture(scope="module")
def pack_stub():
    """Starts the pack the way the language host does: `python -m pulumi.policy <engine> <dir>`
    in the pack's directory; the first line on stdout is its gRPC port."""
    process = subprocess.Popen([sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", PACK],
                               cwd=PACK, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        assert line.isdigit(), (line, process.stderr.read() if process.poll() is not None else "")
        with grpc.insecure_channel(f"127.0.0.1:{line}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        process.kill()
        process.wait(timeout=30)


def test_entry_point_serves_every_policy(pack_stub):
    info = pack_stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == "bluegreen"
    assert {p.name for p in info.policies} == {p.name for p in ALL_POLICIES}


def test_entry_point_marks_secrets(pack_stub):
    box = service_container(envs=["A=1", {"4dabf18193072939515e22adb298388d":
                                          "1b47061264138c4ac30d75fd1eb44270",
                                          "value": "DB_PASSWORD=hunter2"}])
    request = proto.AnalyzeRequest(type=box["type"], urn=box["urn"], name=box["name"],
                                   properties=json_format.ParseDict(box["props"], struct_pb2.Struct()))
    assert list(pack_stub.Analyze(request, timeout=30).diagnostics) == []
    box["props"]["envs"] = ["DB_PASSWORD=hunter2"]
    request.properties.CopyFrom(json_format.ParseDict(box["props"], struct_pb2.Struct()))
    [diagnostic] = pack_stub.Analyze(request, timeout=30).diagnostics
    assert diagnostic.policyName == "no-plaintext-secrets"
