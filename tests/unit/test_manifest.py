"""service.yaml: the example parses into typed objects; every error names file, field and fix."""

import os
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck as HypothesisHealthCheck, given, settings, strategies as st

from bluegreen.components.model.manifest import (
    NAME_PATTERN,
    BuildSpec,
    Dependency,
    HealthCheck,
    Manifest,
    TestSpec as ManifestTestSpec,
    load_manifest,
    parse_manifest,
)
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import PLATFORM_VARIABLES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "services", "vizconfig", "service.yaml")


# --- the example ---------------------------------------------------------------------------------

def test_example_manifest_parses_into_typed_objects():
    manifest = load_manifest(EXAMPLE)
    service_dir = os.path.join(ROOT, "services", "vizconfig")
    assert isinstance(manifest, Manifest)
    assert manifest.path == EXAMPLE
    assert manifest.directory == service_dir
    assert manifest.name == "vizconfig"
    assert manifest.description.startswith("Visualization configuration storage")
    assert manifest.build == BuildSpec(context=service_dir, dockerfile="Dockerfile")
    assert manifest.port == 8000
    assert manifest.health == HealthCheck(path="/health", interval_s=1.0, timeout_s=1.0)
    assert manifest.dependencies == (Dependency(
        alias="db", port=6379, image=None,
        build=BuildSpec(context=os.path.join(service_dir, "db"), dockerfile="Dockerfile"),
        environment={}, volume="/data", memory_mb=128),)
    assert manifest.environment == {"DB_ADDRESS": "db:6379"}
    assert manifest.route == "vizconfig"
    assert manifest.config == {"page_size": "50", "title": "Visualization configurations"}
    assert manifest.test == ManifestTestSpec(("python3", "-m", "unittest", "discover", "-s", "/app/tests", "-v"))
    assert manifest.memory_mb == 96


def test_relative_path_is_resolved_against_the_manifest_folder(monkeypatch):
    monkeypatch.chdir(os.path.join(ROOT, "services"))
    manifest = load_manifest(os.path.join("vizconfig", "service.yaml"))
    assert manifest.path == EXAMPLE
    assert manifest.build.context == os.path.join(ROOT, "services", "vizconfig")


# --- defaults ------------------------------------------------------------------------------------

@pytest.fixture
def service_dir(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "Dockerfile").write_text("FROM scratch\n")
    return tmp_path


def write(directory, text):
    path = directory / "service.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


MINIMAL = """\
name: api
description: An API
port: 8080
"""


def test_minimal_manifest_gets_defaults(service_dir):
    manifest = load_manifest(write(service_dir, MINIMAL))
    assert manifest.build == BuildSpec(context=str(service_dir), dockerfile="Dockerfile")
    assert manifest.health == HealthCheck("/health", 2.0, 1.0)
    assert manifest.dependencies == ()
    assert manifest.environment == {}
    assert manifest.route == "api"
    assert manifest.config == {}
    assert manifest.test is None
    assert manifest.memory_mb == 128
    assert manifest.calls == ()


def test_calls_are_service_names_sorted(service_dir):
    manifest = load_manifest(write(service_dir, MINIMAL + "calls: [vizconfig, billing]\n"))
    assert manifest.calls == ("billing", "vizconfig")


def test_test_command_as_string_runs_in_a_shell(service_dir):
    manifest = load_manifest(write(service_dir, MINIMAL + "test: {command: make check}\n"))
    assert manifest.test.command == ("/bin/sh", "-c", "make check")


@pytest.mark.parametrize("text, seconds", [("500ms", 0.5), ("2s", 2.0), ("1.5s", 1.5), ("1m", 60.0)])
def test_durations(service_dir, text, seconds):
    manifest = load_manifest(write(service_dir, MINIMAL + f"health: {{interval: {text}, timeout: 10ms}}\n"))
    assert manifest.health.interval_s == pytest.approx(seconds)


@pytest.mark.parametrize("text, megabytes", [("16m", 16), ("512m", 512), ("1g", 1024), ("2g", 2048)])
def test_memory_sizes(service_dir, text, megabytes):
    assert load_manifest(write(service_dir, MINIMAL + f"memory: {text}\n")).memory_mb == megabytes


def test_boolean_and_number_values_become_strings(service_dir):
    manifest = load_manifest(write(service_dir, MINIMAL + "env: {DEBUG: true, WORKERS: 4}\n"))
    assert manifest.environment == {"DEBUG": "true", "WORKERS": "4"}


# --- errors --------------------------------------------------------------------------------------

ERRORS = [
    # (YAML appended to or replacing the minimal manifest, field, what the message says is allowed)
    pytest.param(MINIMAL + "ports: [80]\n", "ports",
                 "allowed keys here are: name, description, build, port", id="unknown-top-level-key"),
    pytest.param(MINIMAL + "health: {path: /health, retries: 3}\n", "health.retries",
                 "allowed keys here are: path, interval, timeout", id="unknown-health-key"),
    pytest.param(MINIMAL + "build: {context: ., target: prod}\n", "build.target",
                 "allowed keys here are: context, dockerfile", id="unknown-build-key"),
    pytest.param(MINIMAL + "dependencies: {db: {image: redis, port: 6379, links: [x]}}\n",
                 "dependencies.db.links", "allowed keys here are: image, build, port, env, volume, memory",
                 id="unknown-dependency-key"),
    pytest.param(MINIMAL + "dependencies: {db: {build: {context: db, file: X}, port: 1}}\n",
                 "dependencies.db.build.file", "allowed keys here are: context, dockerfile",
                 id="unknown-dependency-build-key"),
    pytest.param(MINIMAL + "test: {command: make, shell: bash}\n", "test.shell",
                 "allowed keys here are: command", id="unknown-test-key"),
    pytest.param("name: api\ndescription: x\nport: eighty\n", "port", "must be an integer",
                 id="port-not-integer"),
    pytest.param("name: api\ndescription: x\nport: 70000\n", "port", "allowed: 1..65535",
                 id="port-too-large"),
    pytest.param("name: api\ndescription: x\nport: 0\n", "port", "allowed: 1..65535",
                 id="port-zero"),
    pytest.param("name: api\ndescription: x\nport: true\n", "port", "must be an integer",
                 id="port-boolean"),
    pytest.param("name: api\ndescription: x\n", "port", "is required", id="port-missing"),
    pytest.param("description: x\nport: 80\n", "name", "is required", id="name-missing"),
    pytest.param("name: [api]\ndescription: x\nport: 80\n", "name", "must be a string, got a list",
                 id="name-list"),
    pytest.param("name: Api_1\ndescription: x\nport: 80\n", "name", "lower-case letters, digits and '-'",
                 id="name-pattern"),
    pytest.param("name: a--b\ndescription: x\nport: 80\n", "name",
                 "holds '--', which the proxy puts between environment and service names",
                 id="name-with-the-proxy-joiner"),
    pytest.param(MINIMAL + "calls: [viz--config]\n", "calls", "use single '-', e.g. 'viz-config'",
                 id="callee-with-the-proxy-joiner"),
    pytest.param(MINIMAL + "route: /api\n", "route", "lower-case letters", id="route-pattern"),
    pytest.param(MINIMAL + "health: {interval: 2 seconds}\n", "health.interval",
                 "write e.g. 500ms, 2s or 1m", id="bad-duration"),
    pytest.param(MINIMAL + "health: {timeout: 5}\n", "health.timeout",
                 "write e.g. 500ms, 2s or 1m", id="duration-without-unit"),
    pytest.param(MINIMAL + "health: {interval: 1s, timeout: 2s}\n", "health.timeout",
                 "must not be longer than health.interval", id="timeout-longer-than-interval"),
    pytest.param(MINIMAL + "health: {path: health}\n", "health.path", "absolute URL path",
                 id="relative-health-path"),
    pytest.param(MINIMAL + "health: {path: '/health\"; return 200'}\n", "health.path",
                 "an absolute URL path such as /health (letters, digits and", id="health-path-quote"),
    pytest.param("name: api\ndescription: x\nport: '²'\n", "port", "must be an integer",
                 id="port-superscript-digit"),
    pytest.param(MINIMAL + "health: 5s\n", "health", "must be a mapping", id="health-not-mapping"),
    pytest.param(MINIMAL + "build: {dockerfile: Containerfile}\n", "build.dockerfile",
                 "Containerfile not found in", id="missing-dockerfile"),
    pytest.param(MINIMAL + "build: {context: nowhere}\n", "build.context",
                 "does not exist; paths are relative to the manifest's folder", id="missing-context"),
    pytest.param(MINIMAL + "dependencies: {db: {image: redis, build: {context: db}, port: 6379}}\n",
                 "dependencies.db.image", "exactly one of image (a reference) or build",
                 id="dependency-image-and-build"),
    pytest.param(MINIMAL + "dependencies: {db: {port: 6379}}\n",
                 "dependencies.db.image", "exactly one of image (a reference) or build",
                 id="dependency-neither-image-nor-build"),
    pytest.param(MINIMAL + "dependencies: {db: {image: redis}}\n", "dependencies.db.port",
                 "is required", id="dependency-port-missing"),
    pytest.param(MINIMAL + "dependencies: {Data_Base: {image: redis, port: 6379}}\n", "dependencies",
                 "alias 'Data_Base' is not allowed; lower-case letters", id="bad-alias"),
    pytest.param(MINIMAL + "dependencies: {api: {image: redis, port: 6379}}\n", "dependencies",
                 "equals the service name", id="alias-equals-name"),
    pytest.param(MINIMAL + "dependencies: [db]\n", "dependencies", "must be a mapping of alias",
                 id="dependencies-list"),
    pytest.param(MINIMAL + "dependencies: {db: {image: redis, port: 1, volume: data}}\n",
                 "dependencies.db.volume", "absolute path inside the container", id="relative-volume"),
    pytest.param(MINIMAL + "dependencies: {db: {image: redis, port: 1, memory: 1}}\n",
                 "dependencies.db.memory", "a size such as 128m", id="dependency-memory-unit"),
    pytest.param(MINIMAL + "memory: 8m\n", "memory", "must be at least 16m", id="memory-too-small"),
    pytest.param(MINIMAL + "memory: 1024\n", "memory", "a size such as 128m or 1g", id="memory-no-unit"),
    pytest.param(MINIMAL + "env: [A=1]\n", "env", "must be a mapping of names to values",
                 id="env-list"),
    pytest.param(MINIMAL + "env: {A: {nested: 1}}\n", "env.A", "must be a plain value",
                 id="env-nested"),
    pytest.param(MINIMAL + "env: {A: null}\n", "env.A", "must be a plain value", id="env-null"),
    pytest.param(MINIMAL + "env: {'1A': x}\n", "env", "is not a valid name", id="env-bad-name"),
    pytest.param(MINIMAL + "env: {CONSUL_HTTP_TOKEN_FILE: /tmp/mine}\n", "env.CONSUL_HTTP_TOKEN_FILE",
                 "is reserved (set by the platform in every container of the service); remove it",
                 id="env-reserved"),
    pytest.param(MINIMAL + "env: {SERVICE_CONFIG_PREFIX: bluegreen/config/production/billing/}\n",
                 "env.SERVICE_CONFIG_PREFIX", "is reserved", id="env-reserved-config-prefix"),
    pytest.param(MINIMAL + "calls: [vizconfig]\nenv: {VIZCONFIG_URL: 'http://evil/'}\n",
                 "env.VIZCONFIG_URL", "is reserved (the URL of callee vizconfig",
                 id="env-reserved-callee-url"),
    pytest.param(MINIMAL + "config: {page size: 50}\n", "config", "is not a valid name",
                 id="config-bad-name"),
    pytest.param(MINIMAL + "test: {command: []}\n", "test.command",
                 "a string or a non-empty list of strings", id="test-empty-command"),
    pytest.param(MINIMAL + "test: {command: [make, 1]}\n", "test.command",
                 "a string or a non-empty list of strings", id="test-non-string"),
    pytest.param(MINIMAL + "test: {}\n", "test.command", "is required", id="test-without-command"),
    pytest.param(MINIMAL + "calls: vizconfig\n", "calls", "a list of service names",
                 id="calls-string"),
    pytest.param(MINIMAL + "calls: [{vizconfig: 1}]\n", "calls", "a list of service names",
                 id="calls-mapping-item"),
    pytest.param(MINIMAL + "calls: [Viz_Config]\n", "calls", "is not a service name (lower-case",
                 id="calls-bad-name"),
    pytest.param(MINIMAL + "calls: [api]\n", "calls", "does not call itself", id="calls-itself"),
    pytest.param(MINIMAL + "calls: [vizconfig, vizconfig]\n", "calls", "list each callee once",
                 id="calls-twice"),
    pytest.param("- name: api\n", "(top level)", "must be a mapping, got a list", id="top-level-list"),
    pytest.param("", "(top level)", "must be a mapping, got nothing", id="empty-file"),
]


@pytest.mark.parametrize("text, field, allowed", ERRORS)
def test_errors_name_file_field_and_what_is_allowed(service_dir, text, field, allowed):
    path = write(service_dir, text)
    with pytest.raises(ConfigError) as raised:
        load_manifest(path)
    error = raised.value
    assert error.source == path
    assert error.field == field
    assert str(error).startswith(f"{path}: {field}: ")
    assert allowed in str(error)


def test_missing_file_names_the_file(tmp_path):
    path = str(tmp_path / "service.yaml")
    with pytest.raises(ConfigError) as raised:
        load_manifest(path)
    assert str(raised.value).startswith(f"{path}: (file): not found")
    assert "service.yaml" in raised.value.problem


def test_invalid_yaml_names_the_file_and_the_position(service_dir):
    path = write(service_dir, "name: api\ndescription: [unclosed\nport: 80\n")
    with pytest.raises(ConfigError) as raised:
        load_manifest(path)
    assert str(raised.value).startswith(f"{path}: (file): is not valid YAML")
    assert "line" in str(raised.value)


def test_dependency_build_context_is_relative_to_the_manifest(service_dir):
    manifest = load_manifest(write(service_dir, MINIMAL + "dependencies: {db: {build: {context: db}, port: 5}}\n"))
    assert manifest.dependencies[0].build == BuildSpec(str(service_dir / "db"), "Dockerfile")


# --- build paths stay inside the service repo's folder ---------------------------------------------

@pytest.fixture
def repo_beside_secrets(tmp_path):
    """A service repo, and beside it what a build must never see: a file and a folder."""
    repo = tmp_path / "repo"
    (repo / "app").mkdir(parents=True)
    (repo / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "secret").write_text("key\n")
    (repo / "out").symlink_to(tmp_path)
    (repo / "app" / "Dockerfile").symlink_to(tmp_path / "secret")
    return repo


OUTSIDE = [
    pytest.param("build: {context: ../../..}", "build.context", id="context-up-the-tree"),
    pytest.param("build: {context: /}", "build.context", id="context-root"),
    pytest.param("build: {dockerfile: /etc/hostname}", "build.dockerfile", id="dockerfile-absolute"),
    pytest.param("build: {dockerfile: ../secret}", "build.dockerfile", id="dockerfile-up"),
    pytest.param("build: {context: out}", "build.context", id="context-symlink-out"),
    pytest.param("build: {context: app}", "build.dockerfile", id="dockerfile-symlink-out"),
    pytest.param("dependencies: {db: {build: {context: ..}, port: 1}}",
                 "dependencies.db.build.context", id="dependency-context-up"),
]


@pytest.mark.parametrize("text, field", OUTSIDE)
def test_build_paths_outside_the_service_repo_are_refused(repo_beside_secrets, text, field):
    path = write(repo_beside_secrets, MINIMAL + text + "\n")
    with pytest.raises(ConfigError) as raised:
        load_manifest(path)
    assert raised.value.source == path and raised.value.field == field
    assert f"outside the service repo's folder {repo_beside_secrets}" in raised.value.problem
    assert "write a path relative to the manifest's folder" in raised.value.problem


def test_build_paths_inside_the_service_repo_are_kept_as_written(repo_beside_secrets):
    (repo_beside_secrets / "app" / "Dockerfile").unlink()
    (repo_beside_secrets / "app" / "Dockerfile").symlink_to(repo_beside_secrets / "Dockerfile")
    manifest = load_manifest(write(repo_beside_secrets, MINIMAL + "build: {context: app}\n"))
    assert manifest.build == BuildSpec(str(repo_beside_secrets / "app"), "Dockerfile")


# --- properties ----------------------------------------------------------------------------------

names = st.from_regex(NAME_PATTERN, fullmatch=True).filter(lambda name: "--" not in name)
plain_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=30)
env_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,12}", fullmatch=True).filter(
    lambda name: name not in PLATFORM_VARIABLES)
string_maps = st.dictionaries(env_names, plain_text, max_size=4)
memory_sizes = st.one_of(st.integers(16, 4096).map(lambda n: (f"{n}m", n)),
                         st.integers(1, 8).map(lambda n: (f"{n}g", n * 1024)))


@st.composite
def manifests(draw):
    """(data as written in service.yaml, the Manifest expected from it, minus path/contexts)."""
    name = draw(names)
    interval_ms = draw(st.integers(1, 120_000))
    timeout_ms = draw(st.integers(1, interval_ms))
    memory, memory_mb = draw(memory_sizes)
    data = {
        "name": name,
        "description": draw(plain_text),
        "port": draw(st.integers(1, 65535)),
        "health": {"path": draw(st.from_regex(r"/[a-z0-9/_.?=-]{0,20}", fullmatch=True)),
                   "interval": f"{interval_ms}ms", "timeout": f"{timeout_ms}ms"},
        "env": draw(string_maps),
        "route": draw(names),
        "config": draw(string_maps),
        "memory": memory,
    }
    aliases = draw(st.lists(names.filter(lambda a: a != name), unique=True, max_size=3))
    dependencies = {}
    expected = []
    for alias in aliases:
        dep_memory, dep_mb = draw(memory_sizes)
        dep = {"port": draw(st.integers(1, 65535)), "env": draw(string_maps), "memory": dep_memory}
        if draw(st.booleans()):
            dep["image"] = draw(st.from_regex(r"[a-z0-9]{1,10}(:[a-z0-9.]{1,8})?", fullmatch=True))
        else:
            dep["build"] = {"context": "."}
        if draw(st.booleans()):
            dep["volume"] = "/" + draw(st.from_regex(r"[a-z]{1,10}", fullmatch=True))
        dependencies[alias] = dep
        expected.append((alias, dep, dep_mb))
    if dependencies:
        data["dependencies"] = dependencies
    command = draw(st.one_of(st.none(), st.lists(plain_text, min_size=1, max_size=3)))
    if command is not None:
        data["test"] = {"command": command}
    return data, {"interval_s": interval_ms / 1000, "timeout_s": timeout_ms / 1000,
                  "memory_mb": memory_mb, "dependencies": expected}


@pytest.fixture(scope="module")
def context_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("service")
    (directory / "Dockerfile").write_text("FROM scratch\n")
    return directory


@settings(max_examples=60, suppress_health_check=[HypothesisHealthCheck.too_slow])
@given(manifests())
def test_valid_manifests_round_trip_through_yaml(context_dir, generated):
    data, expected = generated
    path = context_dir / "service.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    manifest = load_manifest(str(path))
    assert manifest.name == data["name"]
    assert manifest.description == data["description"]
    assert manifest.port == data["port"]
    assert manifest.health.path == data["health"]["path"]
    assert manifest.health.interval_s == pytest.approx(expected["interval_s"])
    assert manifest.health.timeout_s == pytest.approx(expected["timeout_s"])
    assert manifest.environment == data["env"]
    assert manifest.route == data["route"]
    assert manifest.config == data["config"]
    assert manifest.memory_mb == expected["memory_mb"]
    assert manifest.build == BuildSpec(str(context_dir), "Dockerfile")
    assert manifest.test == (ManifestTestSpec(tuple(data["test"]["command"])) if "test" in data else None)
    assert [d.alias for d in manifest.dependencies] == [a for a, _, _ in expected["dependencies"]]
    for dependency, (alias, raw, memory_mb) in zip(manifest.dependencies, expected["dependencies"]):
        assert dependency.port == raw["port"]
        assert dependency.environment == raw["env"]
        assert dependency.memory_mb == memory_mb
        assert dependency.volume == raw.get("volume")
        assert dependency.image == raw.get("image")
        assert dependency.build == (BuildSpec(str(context_dir), "Dockerfile") if "build" in raw else None)


# Where unknown keys can go, and which keys are allowed there.
PLACES = {
    "": {"name", "description", "build", "port", "health", "dependencies", "env", "route",
         "config", "test", "acceptance", "memory", "calls"},
    "health": {"path", "interval", "timeout"},
    "build": {"context", "dockerfile"},
    "test": {"command"},
    "dependencies.db": {"image", "build", "port", "env", "volume", "memory"},
    "dependencies.db.build": {"context", "dockerfile"},
}


@settings(max_examples=80)
@given(st.sampled_from(sorted(PLACES)), st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,15}", fullmatch=True),
       st.integers(-5, 5) | plain_text | st.none() | st.lists(st.integers(), max_size=2))
def test_unknown_keys_are_rejected_with_their_field_path(context_dir, place, key, value):
    if key in PLACES[place]:
        return
    data = {"name": "api", "description": "x", "port": 80, "health": {}, "build": {},
            "test": {"command": "true"},
            "dependencies": {"db": {"port": 1, "build": {"context": "."}}}}
    target = data
    for part in filter(None, place.split(".")):
        target = target[part]
    target[key] = value
    with pytest.raises(ConfigError) as raised:
        parse_manifest(data, str(context_dir / "service.yaml"))
    field = f"{place}.{key}" if place else key
    assert raised.value.field == field
    assert f": {field}: unknown key; allowed keys here are: " in str(raised.value)
    listed = str(raised.value).rsplit("allowed keys here are: ", 1)[1].split(", ")
    assert set(listed) == PLACES[place]
