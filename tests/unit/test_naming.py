"""Pure planning functions: colours, KV keys, instance IDs, registration payloads, digests."""

import json
import os
import re
import socket
import subprocess
import sys
from types import SimpleNamespace

import jsonschema
import pytest
from hypothesis import given, strategies as st

from bluegreen.components.naming import (
    COLOURS,
    alias_key,
    bridge_listen_key,
    call_environment,
    caller_proxy_address,
    call_variable,
    catalogue_entry,
    health_probe_path,
    catalogue_key,
    config_prefix,
    context_digest,
    digest_reference,
    drain_timeout_key,
    instance_id,
    nginx_duration,
    offline_colour,
    preview_path,
    proxy_host,
    proxy_port,
    proxy_route,
    registration_payload,
    route_key,
    stable_path,
)

HEX = "0123456789abcdef"
hex64 = st.text(HEX, min_size=64, max_size=64)
repositories = st.from_regex(r"[a-z0-9.:-]{1,20}(/[a-z0-9_.-]{1,20}){0,2}", fullmatch=True)


# --- colours -------------------------------------------------------------------------------------

@given(st.sampled_from(COLOURS))
def test_offline_colour_is_an_involution_that_never_returns_its_input(colour):
    offline = offline_colour(colour)
    assert offline in COLOURS
    assert offline != colour
    assert offline_colour(offline) == colour


def test_offline_colour_pairs_blue_and_green():
    assert offline_colour("blue") == "green"
    assert offline_colour("green") == "blue"


@given(st.text().filter(lambda s: s not in COLOURS))
def test_offline_colour_rejects_anything_but_a_colour(value):
    with pytest.raises(ValueError, match="colour must be one of"):
        offline_colour(value)


@pytest.mark.parametrize("value", ["Blue", " green", "", None, 0])
def test_offline_colour_rejects_near_misses(value):
    with pytest.raises(ValueError):
        offline_colour(value)


# --- keys and IDs --------------------------------------------------------------------------------

def test_kv_keys_live_under_bluegreen_per_environment_and_service():
    assert alias_key("production", "vizconfig") == "bluegreen/aliases/production/vizconfig"
    assert route_key("production", "vizconfig") == "bluegreen/routes/production/vizconfig"
    assert config_prefix("production", "vizconfig") == "bluegreen/config/production/vizconfig/"
    assert catalogue_key("production", "vizconfig") == "bluegreen/catalogue/production/vizconfig"


def test_keys_of_different_environments_never_collide():
    keys = {f(env, "svc") for env in ("integration", "production")
            for f in (alias_key, route_key, config_prefix, catalogue_key)}
    assert len(keys) == 8


def test_instance_id_format():
    assert instance_id("integration", "vizconfig", "green", "host-2", 3) == \
        "integration-vizconfig-green-host-2-3"


@given(st.sampled_from(COLOURS), st.integers(0, 19), st.integers(0, 19))
def test_instance_ids_differ_between_colours_and_indices(colour, a, b):
    other = offline_colour(colour)
    assert instance_id("e", "s", colour, "h", a) != instance_id("e", "s", other, "h", a)
    assert (instance_id("e", "s", colour, "h", a) == instance_id("e", "s", colour, "h", b)) == (a == b)


# --- registration payloads -----------------------------------------------------------------------

def _payload(**overrides):
    values = dict(instance="integration-vizconfig-blue-local-0", service="vizconfig",
                  environment="integration", colour="blue", address="10.0.0.7", port=32771,
                  health_path="/health", interval_s=2.0, timeout_s=0.5, version="1.4.2",
                  image="127.0.0.1:15000/vizconfig@sha256:" + "a" * 64, host="local")
    values.update(overrides)
    return registration_payload(**values)


def test_registration_payload_tags_are_environment_then_colour():
    payload = _payload()
    assert payload["Tags"] == ["integration", "blue"]
    assert payload["ID"] == "integration-vizconfig-blue-local-0"
    assert payload["Name"] == "vizconfig"
    assert payload["Address"] == "10.0.0.7"
    assert payload["Port"] == 32771


def test_registration_payload_check_targets_the_published_port_and_path():
    check = _payload(address="127.0.0.1", port=40001, health_path="/status/ready")["Check"]
    assert check["HTTP"] == "http://127.0.0.1:40001/status/ready"
    assert check["CheckID"] == "integration-vizconfig-blue-local-0-http"
    assert "/status/ready" in check["Name"]


def test_a_registration_starts_critical_so_a_replaced_container_cannot_inherit_passing():
    assert _payload()["Check"]["Status"] == "critical"


@pytest.mark.parametrize("interval, timeout, expected_interval, expected_timeout", [
    (2.0, 0.5, "2000ms", "500ms"),
    (0.25, 0.1, "250ms", "100ms"),
    (60.0, 1.0, "60000ms", "1000ms"),
])
def test_registration_payload_durations_are_go_durations(interval, timeout, expected_interval,
                                                         expected_timeout):
    check = _payload(interval_s=interval, timeout_s=timeout)["Check"]
    assert check["Interval"] == expected_interval
    assert check["Timeout"] == expected_timeout
    assert re.fullmatch(r"\d+(ms|s|m|h)", check["DeregisterCriticalServiceAfter"])


def test_registration_payload_meta_describes_the_instance():
    meta = _payload(colour="green", version="2.0.0", host="edge-1")["Meta"]
    assert meta["colour"] == "green"
    assert meta["version"] == "2.0.0"
    assert meta["host"] == "edge-1"
    assert meta["environment"] == "integration"
    assert meta["image"].endswith("@sha256:" + "a" * 64)


@given(st.sampled_from(COLOURS), st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
       st.integers(1, 65535))
def test_registration_payload_tags_follow_inputs(colour, environment, port):
    payload = _payload(colour=colour, environment=environment, port=port)
    assert payload["Tags"] == [environment, colour]
    assert payload["Check"]["HTTP"] == f"http://10.0.0.7:{port}/health"


# --- digest references ---------------------------------------------------------------------------

@given(repositories, hex64)
def test_digest_reference_accepts_repository_at_sha256(repository, digest):
    assert digest_reference(repository, "sha256:" + digest) == f"{repository}@sha256:{digest}"


@given(repositories, st.text(max_size=80))
def test_digest_reference_rejects_anything_that_is_not_a_sha256_digest(repository, digest):
    if re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        assert digest_reference(repository, digest)
    else:
        with pytest.raises(ValueError, match="not a digest reference"):
            digest_reference(repository, digest)


@pytest.mark.parametrize("repository, digest", [
    ("127.0.0.1:15000/vizconfig", "sha256:" + "A" * 64),         # upper-case hex
    ("127.0.0.1:15000/vizconfig", "sha256:" + "a" * 63),         # too short
    ("127.0.0.1:15000/vizconfig", "sha256:" + "a" * 65),         # too long
    ("127.0.0.1:15000/vizconfig", "sha512:" + "a" * 64),         # other algorithm
    ("127.0.0.1:15000/vizconfig", "2.0.0"),                      # a tag
    ("127.0.0.1:15000/vizconfig", ""),                           # nothing (unknown digest)
    ("127.0.0.1:15000/viz config", "sha256:" + "a" * 64),        # whitespace in repository
    ("127.0.0.1:15000/a@b", "sha256:" + "a" * 64),               # two digests
    ("", "sha256:" + "a" * 64),                                  # no repository
])
def test_digest_reference_rejects_examples(repository, digest):
    with pytest.raises(ValueError):
        digest_reference(repository, digest)


# --- context digests -----------------------------------------------------------------------------

def _context(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "server.py").write_text("print('hello')\n")
    return tmp_path


def test_context_digest_is_stable_and_hex(tmp_path):
    directory = _context(tmp_path)
    first = context_digest(str(directory))
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert context_digest(str(directory)) == first


def test_context_digest_changes_with_content(tmp_path):
    directory = _context(tmp_path)
    before = context_digest(str(directory))
    (directory / "app" / "server.py").write_text("print('hello, world')\n")
    assert context_digest(str(directory)) != before


def test_context_digest_changes_with_a_file_name(tmp_path):
    directory = _context(tmp_path)
    before = context_digest(str(directory))
    (directory / "app" / "server.py").rename(directory / "app" / "main.py")
    assert context_digest(str(directory)) != before


def test_context_digest_changes_when_a_file_moves_between_directories(tmp_path):
    directory = _context(tmp_path)
    before = context_digest(str(directory))
    (directory / "app" / "server.py").rename(directory / "server.py")
    assert context_digest(str(directory)) != before


def test_context_digest_changes_when_a_file_is_added(tmp_path):
    directory = _context(tmp_path)
    before = context_digest(str(directory))
    (directory / "README").write_text("")
    assert context_digest(str(directory)) != before


def test_context_digest_ignores_git_and_pycache_and_timestamps(tmp_path):
    directory = _context(tmp_path)
    before = context_digest(str(directory))
    (directory / ".git").mkdir()
    (directory / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (directory / "app" / "__pycache__").mkdir()
    (directory / "app" / "__pycache__" / "server.cpython-311.pyc").write_bytes(b"\0\1\2")
    import os
    os.utime(directory / "Dockerfile", (1, 1))
    assert context_digest(str(directory)) == before


def test_context_digest_is_independent_of_location(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = _context(tmp_path / "a"), _context(tmp_path / "b")
    assert context_digest(str(a)) == context_digest(str(b))


def _digest_in_a_child(directory, timeout_s: float = 20) -> str:
    """context_digest(directory) in a child process: one that opens a FIFO waits forever for a
    writer, and the timeout ends it."""
    return subprocess.run(
        [sys.executable, "-c", "import sys; from bluegreen.components.naming import context_digest; "
                               "print(context_digest(sys.argv[1]))", str(directory)],
        capture_output=True, text=True, timeout=timeout_s, check=True).stdout.strip()


def test_context_digest_skips_a_fifo_within_a_bounded_time(tmp_path):
    directory = _context(tmp_path)
    before = context_digest(str(directory))
    os.mkfifo(directory / "app" / "pipe")   # nothing ever writes to it
    (directory / "pipe-link").symlink_to(directory / "app" / "pipe")
    assert _digest_in_a_child(directory) == before


def test_context_digest_skips_sockets_and_dangling_links(tmp_path):
    directory = _context(tmp_path)
    before = context_digest(str(directory))
    (directory / "dangling").symlink_to(directory / "nowhere")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(directory / "app" / "sock"))
        assert context_digest(str(directory)) == before


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_context_digest_differs_iff_content_differs(tmp_path_factory, first, second):
    base = tmp_path_factory.mktemp("ctx")
    (base / "one").mkdir()
    (base / "two").mkdir()
    (base / "one" / "file").write_bytes(first)
    (base / "two" / "file").write_bytes(second)
    same = context_digest(str(base / "one")) == context_digest(str(base / "two"))
    assert same == (first == second)


def test_naming_imports_only_the_standard_library():
    """The bootstrap copies naming.py alone into the consul image, for the registrator."""
    import ast
    import sys

    import bluegreen.components.naming as naming
    tree = ast.parse(open(naming.__file__, encoding="utf-8").read())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module}
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree))
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_owning_service_prefers_the_longest_name():
    from bluegreen.components.naming import owning_service, service_component_name, slot_image_name
    services = ["api", "api-admin"]
    assert owning_service("prod", services, "prod-api-admin-blue-gate") == ("api-admin", "blue-gate")
    assert owning_service("prod", services, "prod-api-green-local-0") == ("api", "green-local-0")
    assert owning_service("prod", services, "staging-api-blue-gate") is None
    assert slot_image_name("prod", "api", "blue", "h1").startswith(service_component_name("prod", "api") + "-")


# --- the proxy -----------------------------------------------------------------------------------

def test_a_service_is_served_at_its_stable_and_preview_paths_under_named_routes():
    assert stable_path("production", "viz") == "/production/viz/"
    assert preview_path("production", "viz") == "/preview/production/viz/"
    assert proxy_route("production", "vizconfig") == "production/vizconfig"
    assert proxy_route("production", "vizconfig", preview=True) == "preview/production/vizconfig"


def test_the_proxy_is_asked_on_the_health_path_under_each_uri():
    assert health_probe_path("production", "viz", "/health") == "/production/viz/health"
    assert health_probe_path("production", "viz", "/ops/ready?full=1", preview=True) == \
        "/preview/production/viz/ops/ready?full=1"


def test_the_drain_bound_is_a_kv_entry_in_whole_milliseconds():
    assert drain_timeout_key() == "bluegreen/proxy/drain-timeout"
    assert nginx_duration(30.0) == "30000ms"
    assert nginx_duration(1.5) == "1500ms"


# --- catalogue -----------------------------------------------------------------------------------

SCHEMA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "images", "proxy", "catalogue.schema.json")


def _entry(calls):
    manifest = SimpleNamespace(name="frontend", description="Says hello", route="frontend", calls=calls)
    settings = SimpleNamespace(hosts=("local",), colours={"blue": SimpleNamespace(version="1.0.0")})
    image = "127.0.0.1:5000/frontend@sha256:" + "a" * 64
    return catalogue_entry(manifest, "staging", settings, {"blue": image})


def test_catalogue_entry_lists_what_the_service_calls_at_their_stable_uris():
    entry = _entry(("billing", "vizconfig"))
    assert entry["calls"] == [{"service": "billing", "stableUri": "/staging/billing/"},
                              {"service": "vizconfig", "stableUri": "/staging/vizconfig/"}]
    assert _entry(())["calls"] == []
    manifest = SimpleNamespace(name="frontend", description="", route="frontend", calls=("billing",))
    settings = SimpleNamespace(hosts=(), colours={})
    assert catalogue_entry(manifest, "staging", settings, {}, {"billing": "pay"})["calls"] == [
        {"service": "billing", "stableUri": "/staging/pay/"}]


@pytest.mark.parametrize("calls", [(), ("vizconfig",)])
def test_catalogue_entry_follows_the_catalogue_schema(calls):
    with open(SCHEMA, encoding="utf-8") as handle:
        schema = json.load(handle)
    entry_schema = schema["properties"]["services"]["items"]["properties"]["entry"]
    jsonschema.validate(json.loads(json.dumps(_entry(calls))), entry_schema)


def test_a_callee_is_reached_at_its_stable_uri_through_the_bridge():
    assert call_variable("vizconfig") == "VIZCONFIG_URL"
    assert call_variable("user-store") == "USER_STORE_URL"
    assert call_environment("172.17.0.1", 18080, "qa", {"vizconfig": "viz", "auth": "auth"}) == [
        "AUTH_URL=http://172.17.0.1:18080/qa/auth/", "VIZCONFIG_URL=http://172.17.0.1:18080/qa/viz/"]
    assert call_environment("172.17.0.1", 18080, "qa", {}) == []
    assert bridge_listen_key() == "bluegreen/proxy/bridge-listen"


def test_callers_reach_the_proxy_over_their_bridge_on_its_host_and_at_its_address_elsewhere():
    assert proxy_host("http://10.250.77.11:29080") == "10.250.77.11"
    assert proxy_host("127.0.0.1:18080") == "127.0.0.1"
    # On the proxy's own host: its bridge listener.
    assert caller_proxy_address("10.250.77.11", "10.251.1.1", "10.250.77.11") == "10.251.1.1"
    # Elsewhere: the proxy's own address.
    assert caller_proxy_address("10.250.77.12", "10.251.2.1", "10.250.77.11") == "10.250.77.11"
    # A proxy on loopback only answers on its own host: the bridge listener is all there is.
    for loopback in ("127.0.0.1", "localhost", "::1", "", "0.0.0.0"):
        assert caller_proxy_address("127.0.0.1", "172.17.0.1", loopback) == "172.17.0.1"
    assert caller_proxy_address("10.9.0.12", "172.18.0.1", "proxy.example.net") == "proxy.example.net"


def test_the_proxy_port_comes_from_its_url_or_address():
    assert proxy_port("http://127.0.0.1:18080") == 18080
    assert proxy_port("127.0.0.1:29604") == 29604
    with pytest.raises(ValueError, match="names no port"):
        proxy_port("http://127.0.0.1")
