"""Step 6's acceptance container: the exact `docker` arguments it runs with, where it reaches the
proxy, the kill on timeout, and what the pipeline hands it (only the variables it needs)."""

from __future__ import annotations

import io
import subprocess
import types

import pytest

from bluegreen.components.model.config import Host
from bluegreen.components.model.manifest import AcceptanceSpec, load_manifest, parse_manifest
from bluegreen.components.model.validation import ConfigError
from bluegreen.delivery import REPO, acceptance
from bluegreen.delivery.acceptance import (AcceptanceRun, container_url, removal_arguments, run_acceptance,
                                 run_arguments)
from bluegreen.delivery.build import BuildResult
from bluegreen.delivery.pipeline import Pipeline, PipelineArgs
from bluegreen.delivery.steps import StepFailed

IMAGE = "127.0.0.1:15000/vizconfig@sha256:" + "a" * 64
RUN = AcceptanceRun(name="bluegreen-acceptance-vizconfig-0123abcd", image=IMAGE,
                    command=("python3", "/app/tests/acceptance.py"),
                    environment={"EXPECTED_VERSION": "2.0.0",
                                 "BASE_URL": "http://172.17.0.1:18080/int/vizconfig/"})
LOCAL = Host(name="local", docker="unix:///var/run/docker.sock", consul="http://127.0.0.1:18500",
             address="127.0.0.1", bridge_address="172.17.0.1")


def test_the_container_runs_with_exactly_these_arguments():
    assert run_arguments(RUN) == [
        "run", "--rm", "--name", "bluegreen-acceptance-vizconfig-0123abcd",
        "--label", "bluegreen.role=acceptance", "--network", "bridge",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--memory=512m", "--pids-limit=256",
        "--env=BASE_URL=http://172.17.0.1:18080/int/vizconfig/", "--env=EXPECTED_VERSION=2.0.0",
        IMAGE, "python3", "/app/tests/acceptance.py"]


def test_a_timeout_kills_and_removes_the_container():
    assert removal_arguments(RUN) == ["rm", "-f", "bluegreen-acceptance-vizconfig-0123abcd"]


def test_on_timeout_the_container_is_removed_and_the_step_fails(monkeypatch):
    calls = []

    def docker_cli(*args, timeout=120, check=True, engine=None):
        calls.append((args, engine))
        if args[0] == "run":
            raise subprocess.TimeoutExpired(["docker", *args], timeout)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(acceptance, "docker_cli", docker_cli)
    with pytest.raises(StepFailed, match="did not finish within 3s; container "
                                         "bluegreen-acceptance-vizconfig-0123abcd was removed"):
        run_acceptance(RUN, "ssh://root@10.0.0.2", timeout_s=3)
    assert calls == [(tuple(run_arguments(RUN)), "ssh://root@10.0.0.2"),
                     (tuple(removal_arguments(RUN)), "ssh://root@10.0.0.2")]


def test_the_exit_code_and_the_output_come_back(monkeypatch):
    monkeypatch.setattr(acceptance, "docker_cli", lambda *a, **k: subprocess.CompletedProcess(
        a, 3, "ok: one\nok: two\n", "FAIL: three\n"))
    assert run_acceptance(RUN, "unix:///var/run/docker.sock") == (3, "ok: one\nok: two\n\nFAIL: three")


@pytest.mark.parametrize("url, host, expected", [
    # The proxy names no host (the local stacks): over the host's Docker bridge.
    ("http://127.0.0.1:18080/int/vizconfig/", LOCAL, "http://172.17.0.1:18080/int/vizconfig/"),
    # The proxy on this host's own address: its bridge listener too.
    ("http://10.0.0.2:18080/int/vizconfig/", Host("h", "ssh://h", "http://10.0.0.2:8500",
                                                  "10.0.0.2", bridge_address="172.17.0.1"),
     "http://172.17.0.1:18080/int/vizconfig/"),
    # The proxy on another host: at its own address.
    ("http://10.0.0.9:18080/int/vizconfig/", Host("h", "ssh://h", "http://10.0.0.2:8500",
                                                  "10.0.0.2"),
     "http://10.0.0.9:18080/int/vizconfig/"),
])
def test_the_base_url_is_the_stable_uri_as_a_container_reaches_it(url, host, expected):
    assert container_url(url, host, "stacks/Pulumi.int.yaml") == expected


def test_a_host_without_a_bridge_address_names_the_field_and_the_fix():
    bridgeless = Host("local", "unix:///var/run/docker.sock", "http://127.0.0.1:8500")
    with pytest.raises(StepFailed) as raised:
        container_url("http://127.0.0.1:18080/int/vizconfig/", bridgeless, "stacks/Pulumi.int.yaml")
    assert str(raised.value).startswith(
        "stacks/Pulumi.int.yaml: bluegreen.hosts.local.bridgeAddress: is not set")
    assert "172.17.0.1" in str(raised.value)


# -- what the pipeline hands the container --------------------------------------------------------

def pipeline_for(tmp_path, acceptance_data: dict) -> Pipeline:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    manifest = parse_manifest({"name": "api", "description": "x", "port": 80, "health": {},
                               "acceptance": acceptance_data}, str(tmp_path / "service.yaml"))
    pipeline = Pipeline(PipelineArgs(str(tmp_path), "2.0.0"), manifest, out=io.StringIO())
    pipeline.build = BuildResult(image=IMAGE, digest=IMAGE.rsplit("@", 1)[1])
    return pipeline


def integration_config() -> types.SimpleNamespace:
    other = Host("host2", "ssh://root@10.0.0.3", "http://10.0.0.3:8500", "10.0.0.3")
    return types.SimpleNamespace(hosts={"local": LOCAL, "host2": other}, build_host="local",
                                 source="stacks/Pulumi.int.yaml", stack="int")


def captured_runs(monkeypatch, code: int = 0, output: str = "ok: all") -> list:
    runs = []

    def run_acceptance(run, engine):
        runs.append((run, engine))
        return code, output

    monkeypatch.setattr("bluegreen.delivery.pipeline.run_acceptance", run_acceptance)
    return runs


def test_the_container_gets_only_the_base_url_the_version_and_the_name(tmp_path, monkeypatch):
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "the-state-passphrase")
    runs = captured_runs(monkeypatch)
    pipeline = pipeline_for(tmp_path, {"command": ["python3", "/app/tests/acceptance.py"]})
    detail = pipeline._acceptance(integration_config(), "http://127.0.0.1:18080/int/api/")
    [(run, engine)] = runs
    assert engine == "unix:///var/run/docker.sock"          # integration's build host
    assert run.image == IMAGE                               # the image step 1 built and pushed
    assert run.command == ("python3", "/app/tests/acceptance.py")
    assert run.environment == {"BASE_URL": "http://172.17.0.1:18080/int/api/",
                               "EXPECTED_VERSION": "2.0.0", "SERVICE_NAME": "api"}
    assert run.name.startswith("bluegreen-acceptance-api-")
    assert "the-state-passphrase" not in " ".join(run_arguments(run))
    assert detail == f"passed against http://172.17.0.1:18080/int/api/ in {IMAGE}"


def test_an_image_the_manifest_names_runs_instead(tmp_path, monkeypatch):
    runs = captured_runs(monkeypatch)
    tester = "127.0.0.1:15000/api-tests@sha256:" + "b" * 64
    pipeline = pipeline_for(tmp_path, {"command": "pytest -q", "image": tester})
    pipeline._acceptance(integration_config(), "http://127.0.0.1:18080/int/api/")
    assert runs[0][0].image == tester
    assert runs[0][0].command == ("/bin/sh", "-c", "pytest -q")


def test_a_tester_image_from_a_registry_the_stack_does_not_allow_is_not_run(tmp_path, monkeypatch):
    """The policy pack never sees it (`docker run` starts it), so the step checks it the same way."""
    runs = captured_runs(monkeypatch)
    monkeypatch.setattr("bluegreen.delivery.stacks.REPO", str(tmp_path))
    tester = "evil.example.com/api-tests@sha256:" + "b" * 64
    pipeline = pipeline_for(tmp_path, {"command": "pytest -q", "image": tester})
    with pytest.raises(StepFailed) as refused:
        pipeline._acceptance(integration_config(), "http://127.0.0.1:18080/int/api/")
    assert runs == []
    message = str(refused.value)
    assert message.startswith(f"{tmp_path}/service.yaml: acceptance.image: {tester} comes from "
                              "evil.example.com, which this stack does not allow")
    assert ('stacks/policy.int.json: {"service-image-pinned": {"registries": [..., '
            '"evil.example.com"]}}') in message
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "policy.int.json").write_text(
        '{"service-image-pinned": {"registries": ["evil.example.com"]}}')
    pipeline._acceptance(integration_config(), "http://127.0.0.1:18080/int/api/")
    assert runs[0][0].image == tester


def test_a_failing_command_fails_the_step_with_its_last_line(tmp_path, monkeypatch):
    captured_runs(monkeypatch, code=1, output="ok: GET /\nFAIL: PUT /configs/x")
    pipeline = pipeline_for(tmp_path, {"command": ["false"]})
    with pytest.raises(StepFailed, match=r"failed against http://172.17.0.1:18080/int/api/ "
                                         r"\(exit 1\): FAIL: PUT /configs/x"):
        pipeline._acceptance(integration_config(), "http://127.0.0.1:18080/int/api/")


# -- the manifest's acceptance image, and the example service ------------------------------------

def test_the_acceptance_image_is_a_digest_reference(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    path = str(tmp_path / "service.yaml")
    data = {"name": "api", "description": "x", "port": 80, "health": {}}
    tester = "registry.example/api-tests@sha256:" + "c" * 64
    parsed = parse_manifest({**data, "acceptance": {"command": "true", "image": tester}}, path)
    assert parsed.acceptance == AcceptanceSpec(("/bin/sh", "-c", "true"), tester)
    with pytest.raises(ConfigError) as raised:
        parse_manifest({**data, "acceptance": {"command": "true", "image": "api-tests:latest"}}, path)
    assert raised.value.field == "acceptance.image"
    assert "repository@sha256:<64 hex>" in str(raised.value)


def test_the_example_service_image_carries_its_acceptance_script():
    manifest = load_manifest(f"{REPO}/services/vizconfig/service.yaml")
    assert manifest.acceptance == AcceptanceSpec(("python3", "/app/tests/acceptance.py"))
    with open(f"{REPO}/services/vizconfig/Dockerfile", encoding="utf-8") as handle:
        dockerfile = handle.read()
    assert "COPY tests /app/tests" in dockerfile
    assert "python3" in dockerfile   # the Debian python3 the script (stdlib only) runs on
