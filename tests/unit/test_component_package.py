"""The component package (provider/PulumiPlugin.yaml): its schema as `pulumi package get-schema`
prints it, and its resources as thin adapters that register what the stack program does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest
import yaml
from hypothesis import given, strategies as st
from packaging.requirements import Requirement

from bluegreen.components.model.config import parse_stack_config
from bluegreen.components.model.wire import integral_numbers
from bluegreen.components.package.platform import Platform
from bluegreen.components.package.service import Service
from unit_harness import ROOT, ProgramFailed, binary, run_program, stack_config

PROVIDER = os.path.join(ROOT, "provider")
OUTPUTS = {"bluegreen:index:Platform": {"consul", "registry", "proxy", "proxies", "credentials"},
           "bluegreen:index:Service": {"live", "url", "previewUrl", "images"}}
REQUIRED_INPUTS = {"bluegreen:index:Platform": {"hosts", "platform"},
                   "bluegreen:index:Service": {"service", "settings", "environment", "hosts",
                                               "registry", "proxy", "credentials"}}


def schema() -> dict:
    done = subprocess.run([binary("pulumi"), "package", "get-schema", PROVIDER], capture_output=True,
                          text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_schema_lists_platform_and_service_with_documented_inputs_and_outputs():
    printed = schema()
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        version = tomllib.load(handle)["project"]["version"]
    assert (printed["name"], printed["version"]) == ("bluegreen", version)
    assert set(printed["resources"]) == set(OUTPUTS)
    for token, resource in printed["resources"].items():
        assert resource["isComponent"] and resource["description"]
        assert set(resource["properties"]) == OUTPUTS[token]
        assert set(resource["requiredInputs"]) == REQUIRED_INPUTS[token]
        undocumented = [name for name, spec in {**resource["inputProperties"],
                                                **resource["properties"]}.items()
                        if not spec.get("description")]
        assert not undocumented, f"{token}: {undocumented}"


def local_values() -> dict:
    """The local stack's values, its platform listing its own environment (a Platform resource
    makes deployer tokens for the environments it lists)."""
    values = stack_config("local")
    values["platform"] = {**values["platform"], "environments": [values["environment"]]}
    return values


def package_program() -> None:
    """The local stack written with the package's resources, as a program in another language
    would write it."""
    values = local_values()
    platform = Platform("local", {"hosts": values["hosts"], "platform": values["platform"]})
    Service("vizconfig", {
        "service": "vizconfig", "settings": values["services"]["vizconfig"],
        "environment": values["environment"], "hosts": values["hosts"],
        "platform": values["platform"], "base_image": values["baseImage"],
        "registry": platform.registry, "proxy": platform.proxy, "credentials": platform.credentials})


def below_adapters(resources) -> set[tuple[str, str]]:
    """(type, name) of every resource but the package's own and the stack."""
    return {(r.type, r.name) for r in resources
            if not r.type.startswith("bluegreen:index:") and r.type != "pulumi:pulumi:Stack"}


def test_package_resources_register_what_the_stack_program_does():
    program = run_program(local_values())
    package = run_program({}, body=package_program)
    adapters = {r.type: r.urn for r in package if r.type.startswith("bluegreen:index:")}
    assert set(adapters) == set(OUTPUTS)
    # The Service's own providers (named after it) take the place of the platform's for its
    # resources, and it reads its deployer token from the Platform's output, not from the
    # stack's last outputs; everything else is the same resource under the same name.
    service_providers = {("pulumi:providers:docker", "vizconfig-host-local")}
    last_outputs = {("pulumi:pulumi:StackReference", "local-last-update")}
    assert below_adapters(package) - service_providers == below_adapters(program) - last_outputs
    top = {r.type for r in package if r.parent in adapters.values()}
    assert top == {"bluegreen:platform:Platform", "bluegreen:platform:PlatformCredentials",
                   "bluegreen:service:Service", "pulumi:providers:docker"}


def test_a_bad_input_names_the_resource_and_its_input_and_registers_nothing_below_it():
    values = local_values()
    values["hosts"]["local"]["docker"] = "/var/run/docker.sock"

    def program() -> None:
        Platform("site", {"hosts": values["hosts"], "platform": values["platform"]})

    with pytest.raises(ProgramFailed) as failed:
        run_program({}, body=program)
    message = str(failed.value)
    assert "bluegreen:index:Platform 'site': hosts.local.docker:" in message, message
    assert "unix:///" in message and "stacks/" not in message
    assert not below_adapters(failed.value.resources)


JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20)


def on_the_wire(value):
    """What Pulumi's wire makes of a value: every int (not bool) a float."""
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        return {key: on_the_wire(item) for key, item in value.items()}
    if isinstance(value, list):
        return [on_the_wire(item) for item in value]
    return value


@given(JSON_LIKE)
def test_values_from_the_wire_get_their_whole_numbers_back_as_ints(value):
    restored = integral_numbers(on_the_wire(value))
    assert restored == value
    assert json.dumps(restored) == json.dumps(value)   # 8500, not 8500.0


def pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        return tomllib.load(handle)


def test_the_changelog_names_the_version_pyproject_declares():
    with open(os.path.join(ROOT, "CHANGELOG.md"), encoding="utf-8") as handle:
        released = [line.split()[1] for line in handle if line.startswith("## ") and "Unreleased" not in line]
    assert released[0] == pyproject()["project"]["version"]


def built_wheel(directory) -> zipfile.ZipFile:
    """The wheel of a copy of the package's sources (a build in the checkout would leave build/
    there), made with the virtualenv's setuptools, without any index."""
    source = directory / "source"
    shutil.copytree(os.path.join(ROOT, "bluegreen"), source / "bluegreen", symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), source)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--no-index", "-q", "-w", str(directory / "dist"), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    wheels = list((directory / "dist").glob("*.whl"))
    assert [w.name for w in wheels] == [f"bluegreen-{pyproject()['project']['version']}-py3-none-any.whl"]
    return zipfile.ZipFile(wheels[0])


def test_the_wheel_holds_the_package_and_declares_its_dependencies(tmp_path):
    wheel = built_wheel(tmp_path)
    names = set(wheel.namelist())
    for expected in ("components/package/service.py", "components/package/platform.py",
                     "components/program.py", "components/model/wire.py", "delivery/pipeline.py",
                     "policies/__main__.py", "policies/PulumiPolicy.yaml"):
        assert f"bluegreen/{expected}" in names, expected
    # One top-level name: nothing of the package collides with another's modules.
    assert {name.split("/", 1)[0] for name in names} == {
        "bluegreen", f"bluegreen-{pyproject()['project']['version']}.dist-info"}
    metadata = wheel.read(f"bluegreen-{pyproject()['project']['version']}.dist-info/METADATA").decode()
    required = {normalised(line.split(": ", 1)[1]) for line in metadata.splitlines()
                if line.startswith("Requires-Dist: ")}
    assert required == {normalised(r) for r in pyproject()["project"]["dependencies"]}


def normalised(requirement: str) -> tuple[str, frozenset[str]]:
    parsed = Requirement(requirement)
    return parsed.name.lower(), frozenset(str(s) for s in parsed.specifier)


def test_the_yaml_example_adds_this_package_and_its_stack_holds_valid_values():
    example = os.path.join(ROOT, "examples", "yaml")
    with open(os.path.join(example, "Pulumi.yaml"), encoding="utf-8") as handle:
        project = yaml.safe_load(handle)
    assert os.path.realpath(os.path.join(example, project["packages"]["bluegreen"])) == PROVIDER
    assert {r["type"] for r in project["resources"].values()} == {"bluegreen:Platform", "bluegreen:Service"}
    with open(os.path.join(example, "Pulumi.example.yaml"), encoding="utf-8") as handle:
        config = yaml.safe_load(handle)["config"]
    values = {key.split(":", 1)[1]: value for key, value in config.items()}
    stack = parse_stack_config("example", values, ROOT)
    assert stack.platform is not None and stack.environment in stack.platform.environments
    assert [s.name for s in stack.services] == ["vizconfig"]
