"""Crafted names, routes, paths and env keys (newlines, braces, semicolons, quotes, `--`, `..`,
unicode) fed to the manifest and stack config parsers: each is refused with a ConfigError, or it is
safe where it ends up. The proxy's templates (images/proxy/*.ctmpl) render into nginx config the
environment and service names (locations, upstreams, marker files), routes (locations, rewrites),
and the addresses instances register at (upstream servers); the listen addresses come from
patterned settings."""

import os
import re

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from bluegreen.components.model.config import parse_stack_config
from bluegreen.components.model.manifest import parse_manifest
from bluegreen.components.model.validation import ConfigError
from bluegreen.components.naming import PROXY_JOINER, reserved_variables

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# What may reach an nginx config unquoted: no whitespace, quote, brace, semicolon, `$` or `#`.
NGINX_NAME = re.compile(r"[a-z0-9-]+")
NGINX_ADDRESS = re.compile(r"[0-9.]+")
URL_PATH = re.compile(r"/[A-Za-z0-9._~%/?=&+-]*")
ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")

FRAGMENTS = ["a", "b", "z9", "0", "-", "--", ".", "..", "/", "_", "\n", "\r", "\t", " ", "{", "}",
             ";", "'", '"', "`", "$", "#", "\\", "\0", "é", "ß", "\u212a", "\u0131", "\u0661", "²",
             "${x}", "{{ . }}", "\u2028"]
joined = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=8).map("".join)
# Paths and names start well more often than not, so that what follows is what gets tested.
crafted = st.one_of(joined, st.text(max_size=12), joined.map(lambda v: "/" + v),
                    joined.map(lambda v: "a" + v), joined.map(lambda v: "app/" + v))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A service repo (with a Dockerfile and an app folder) beside a folder it must not reach."""
    base = tmp_path_factory.mktemp("injection")
    (base / "repo" / "app").mkdir(parents=True)
    (base / "repo" / "Dockerfile").write_text("FROM scratch\n")
    (base / "repo" / "app" / "Dockerfile").write_text("FROM scratch\n")
    (base / "outside").mkdir()
    (base / "outside" / "Dockerfile").write_text("FROM scratch\n")
    return base / "repo"


def manifest_with(key: str, value) -> dict:
    data = {"name": "api", "description": "An API", "port": 8000, "calls": ["billing"],
            "env": {"MODE": "x"}, "build": {"context": "."}, "health": {"path": "/health"}}
    if key == "env-key":
        data["env"] = {value: "x"}
    elif key in ("context", "dockerfile"):
        data["build"] = {key: value}
    elif key == "health":
        data["health"] = {"path": value}
    elif key == "calls":
        data["calls"] = [value]
    else:
        data[key] = value
    return data


def assert_manifest_is_safe(manifest, folder: str) -> None:
    for name in (manifest.name, manifest.route, *manifest.calls):
        assert NGINX_NAME.fullmatch(name), name
    assert PROXY_JOINER not in manifest.name and not any(PROXY_JOINER in c for c in manifest.calls)
    assert URL_PATH.fullmatch(manifest.health.path), manifest.health.path
    for key in manifest.environment:
        assert ENV_KEY.fullmatch(key) and key not in reserved_variables(manifest.calls), key
    for path in (manifest.build.context, os.path.join(manifest.build.context, manifest.build.dockerfile)):
        assert os.path.commonpath([os.path.realpath(path), folder]) == folder, path


@pytest.mark.parametrize("key", ["name", "route", "calls", "env-key", "health", "context",
                                 "dockerfile", "port", "memory"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=crafted)
@example(value="²")
@example(value="/{")
@example(value="a--b")
@example(value="../outside")
@example(value="../outside/Dockerfile")
@example(value="\0")
def test_the_manifest_parser_accepts_only_values_safe_to_render(repo, key, value):
    try:
        manifest = parse_manifest(manifest_with(key, value), str(repo / "service.yaml"))
    except ConfigError:
        return
    assert_manifest_is_safe(manifest, os.path.realpath(repo))


def stack_with(key: str, value) -> dict:
    service = {"manifest": "services/vizconfig/service.yaml", "live": "blue",
               "blue": {"version": "1.0.0", "env": {"MODE": "x"}}}
    host = {"docker": "unix:///var/run/docker.sock", "consul": "http://127.0.0.1:8500",
            "address": "127.0.0.1", "bridgeAddress": "172.17.0.1"}
    values = {"environment": "production", "platformStack": "platform", "hosts": {"local": host},
              "services": {"vizconfig": service}}
    if key == "service":
        values["services"] = {value: service}
    elif key == "host":
        values["hosts"] = {value: host}
        service["hosts"] = [value]
    elif key == "colour-env-key":
        service["blue"]["env"] = {value: "x"}
    elif key in ("address", "bridgeAddress"):
        host[key] = value
    else:
        values[key] = value
    return values


@pytest.mark.parametrize("key", ["environment", "service", "host", "address", "bridgeAddress",
                                 "colour-env-key"])
@settings(max_examples=150, deadline=None)
@given(value=crafted)
@example(value="²")
@example(value="a--b")
@example(value="1.2.3.4;")
@example(value="preview")
def test_the_stack_config_parser_accepts_only_values_safe_to_render(key, value):
    try:
        stack = parse_stack_config("production", stack_with(key, value), ROOT)
    except ConfigError:
        return
    assert NGINX_NAME.fullmatch(stack.environment) and PROXY_JOINER not in stack.environment
    for service in stack.services:
        assert NGINX_NAME.fullmatch(service.name) and PROXY_JOINER not in service.name
        for colour in service.colours.values():
            assert all(ENV_KEY.fullmatch(k) and k not in reserved_variables() for k in colour.environment)
    for host in stack.hosts.values():
        assert NGINX_NAME.fullmatch(host.name)
        assert NGINX_ADDRESS.fullmatch(host.address), host.address
        assert host.bridge_address is None or NGINX_ADDRESS.fullmatch(host.bridge_address)
