"""The proxy's templates render only what is safe in nginx, whoever wrote Consul: a token holder
writing KV (alias key names, alias values, routes, splits, proxy settings) or registering an
instance (its address) directly, past model/config.py, injects no directive. The real
consul-template renders images/proxy/*.ctmpl once against a throwaway Consul agent (-dev) holding
hostile data beside one well-formed service, which must still render."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import urllib.parse

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st

from bluegreen.components import naming
from bluegreen.components.model.config import ENV_NAME, IPV4
from bluegreen.components.model.manifest import NAME_PATTERN
from bluegreen.components.naming import joined_name_problem
from unit_harness import ROOT, binary

PROXY = os.path.join(ROOT, "images", "proxy")
TEMPLATES = ("routes.conf", "upstreams.conf", "aliases.list", "settings.conf")
MARK = "INJECTED"
# Hostile pieces: what ends a directive or a block in nginx, or a path or a line elsewhere.
BREAKS = [";", "{", "}", " ", "\n", "'", '"', "$", "#", "/", "..", "--", "\\", "\t"]
GOOD_ENV, GOOD_SVC = "prod", "good"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def consul(tmp_path_factory):
    """A dev agent on free ports (no DNS, no gRPC, no WAN): its HTTP address."""
    http, serf, server = free_ports(3)
    ports = f"ports {{ http = {http}, serf_lan = {serf}, server = {server}, dns = -1, grpc = -1, serf_wan = -1 }}"
    agent = subprocess.Popen(
        [binary("consul"), "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
         "-data-dir", str(tmp_path_factory.mktemp("consul")), "-hcl", ports],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://{address}/v1/status/leader", timeout=1).json():
                    break
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.2)
        else:
            pytest.fail("the dev Consul agent did not elect itself within 30 s")
        yield address
    finally:
        agent.terminate()
        agent.wait(timeout=20)


def put(address: str, key: str, value: str) -> None:
    url = f"http://{address}/v1/kv/{urllib.parse.quote(key, safe='/')}"
    assert requests.put(url, data=value.encode(), timeout=5).json() is True, key


def register(address: str, instance: str, service: str, tags: list[str], host: str,
             port: int = 31000, status: str | None = None) -> None:
    """An instance; with `status`, a TTL check in that state (without: no check, so passing)."""
    body = {"ID": instance, "Name": service, "Tags": tags, "Address": host, "Port": port}
    if status is not None:
        body["Check"] = {"CheckID": f"{instance}-ttl", "TTL": "600s", "Status": status}
    requests.put(f"http://{address}/v1/agent/service/register", json=body,
                 timeout=5).raise_for_status()


def sick_service(address: str) -> None:
    """prod/sick: blue's only instance failing its check; green with one passing instance and
    one failing."""
    put(address, naming.alias_key(GOOD_ENV, "sick"), "blue")
    put(address, naming.route_key(GOOD_ENV, "sick"), "sick")
    register(address, "sick-blue-0", "sick", [GOOD_ENV, "blue"], "127.0.0.1", 32001, "critical")
    register(address, "sick-green-0", "sick", [GOOD_ENV, "green"], "127.0.0.1", 32002, "passing")
    register(address, "sick-green-1", "sick", [GOOD_ENV, "green"], "127.0.0.1", 32003, "critical")


def hostile_data(address: str) -> None:
    """One well-formed service (prod/good, blue live) and, beside it, what a token holder could
    write straight into Consul."""
    put(address, naming.alias_key(GOOD_ENV, GOOD_SVC), "blue")
    put(address, naming.route_key(GOOD_ENV, GOOD_SVC), GOOD_SVC)
    register(address, "good-0", GOOD_SVC, [GOOD_ENV, "blue"], "127.0.0.1")
    register(address, "evil-0", GOOD_SVC, [GOOD_ENV, "blue"], f"10.0.0.1:1 {MARK}; server 6.6.6.6")
    for index, piece in enumerate(BREAKS):
        name = f"x{piece}{MARK}{index}"
        if piece.isprintable():   # Consul refuses control characters in keys, not in values
            put(address, f"{naming.alias_root()}{GOOD_ENV}/{name}", "blue")      # a service name
            put(address, f"{naming.alias_root()}{name}/svc{index}", "green")    # an environment name
        put(address, naming.alias_key(GOOD_ENV, f"r{index}"), "blue")
        put(address, naming.route_key(GOOD_ENV, f"r{index}"), f"r{piece}{MARK}")   # a route
        put(address, naming.alias_key(GOOD_ENV, f"v{index}"), f"blue{piece}{MARK}")  # a colour
        register(address, f"evil-{index + 1}", name, [GOOD_ENV, "blue"], "127.0.0.1")
    put(address, naming.alias_key(GOOD_ENV, "split"), "blue")
    put(address, naming.split_key(GOOD_ENV, "split"),
        json.dumps({"colour": "green", "percent": f"5 {MARK}"}))
    put(address, naming.bridge_listen_key(), f"172.17.0.1:8080; {MARK}")
    put(address, naming.preview_from_key(), f"10.0.0.0/8;{MARK} 192.0.2.1/32")
    put(address, naming.drain_timeout_key(), f"1s; {MARK}")


@pytest.fixture(scope="module")
def rendered(consul, tmp_path_factory) -> dict:
    hostile_data(consul)
    sick_service(consul)
    out = tmp_path_factory.mktemp("rendered")
    environment = {**os.environ, "PROXY_LISTEN": "0.0.0.0:8080"}
    environment.pop("CONSUL_HTTP_TOKEN_FILE", None)
    # One run per template: one that fails (and so stops rendering for every service) does not
    # hide what another renders.
    rendered, failed = {}, {}
    for name in TEMPLATES:
        result = subprocess.run(
            [binary("consul-template"), "-once", "-consul-addr", consul, "-log-level", "err",
             "-template", f"{os.path.join(PROXY, name + '.ctmpl')}:{out / name}"],
            timeout=60, env=environment, capture_output=True, text=True)
        if result.returncode:
            failed[name] = result.stderr[-600:]
        else:
            rendered[name] = (out / name).read_text()
    return {"failed": failed, **rendered}


def test_hostile_data_stops_no_template(rendered):
    assert rendered["failed"] == {}, rendered["failed"]


def test_nothing_written_past_the_model_reaches_the_rendered_files(rendered):
    for name in TEMPLATES:
        assert MARK not in rendered.get(name, ""), f"{name} renders hostile KV data:\n{rendered[name]}"


def test_the_well_formed_service_still_renders(rendered):
    assert f"location /{GOOD_ENV}/{GOOD_SVC}/ {{" in rendered["routes.conf"]
    assert f"upstream {GOOD_ENV}--{GOOD_SVC}--blue {{" in rendered["upstreams.conf"]
    assert "server 127.0.0.1:31000 max_fails=0;" in rendered["upstreams.conf"]
    assert f"{GOOD_ENV}--{GOOD_SVC} blue 0" in rendered["aliases.list"].splitlines()
    # The split's percent was not a number: no share.
    assert f"{GOOD_ENV}--split blue 0" in rendered["aliases.list"].splitlines()
    assert "192.0.2.1/32 1;" in rendered["routes.conf"]
    assert "worker_shutdown_timeout 30s;" in rendered["settings.conf"]


def upstream(rendered: dict, name: str) -> list[str]:
    """The server lines of upstream `name` in the rendered upstreams.conf."""
    text = rendered["upstreams.conf"]
    block = text[text.index(f"upstream {name} {{"):]
    return [line.strip() for line in block[:block.index("}")].splitlines()[1:]]


def test_a_colour_with_no_passing_instance_gets_all_of_its_instances(rendered):
    # Blue's only instance fails its check: nginx tries it rather than answering 502 at once.
    assert upstream(rendered, f"{GOOD_ENV}--sick--blue") == [
        "server 127.0.0.1:32001 max_fails=0;", "server 127.0.0.1:9 down;"]
    # Green has a passing instance: the failing one stays out.
    assert upstream(rendered, f"{GOOD_ENV}--sick--green") == [
        "server 127.0.0.1:32002 max_fails=0;", "server 127.0.0.1:9 down;"]


def test_every_rendered_name_is_one_nginx_takes_as_a_single_token(rendered):
    token = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*-?"
    for line in rendered["routes.conf"].splitlines():
        if line.strip().startswith(("location /preview/", f"location /{GOOD_ENV}/")):
            assert re.fullmatch(rf"    location (/preview)?/{token}/[a-z0-9-]+/ \{{", line), line
    for line in rendered["upstreams.conf"].splitlines():
        assert re.fullmatch(rf"(upstream {token}--{token}--(blue|green) \{{|    server [0-9.]+:[0-9]+"
                            r"( max_fails=0| down);|\}|# .*|)", line), line
    for line in rendered["aliases.list"].splitlines():
        assert re.fullmatch(rf"({token}--{token} (blue|green) [0-9]{{1,2}}|)", line), line


def template_pattern(template: str, variable: str) -> str:
    """The regular expression a template assigns to `$variable`."""
    with open(os.path.join(PROXY, template), encoding="utf-8") as handle:
        found = re.search(r"\$" + variable + r' := "([^"]+)"', handle.read())
    assert found, f"{template} sets no ${variable}"
    return found[1]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.one_of(st.from_regex(NAME_PATTERN, fullmatch=True),
                      st.from_regex(ENV_NAME, fullmatch=True)),
       route=st.from_regex(NAME_PATTERN, fullmatch=True),
       address=st.from_regex(IPV4, fullmatch=True))
def test_what_the_model_accepts_the_templates_render(name, route, address):
    """The templates' guards drop nothing the model lets through (and nothing else reaches nginx:
    the tests above)."""
    if joined_name_problem(name):
        return
    for template in ("routes.conf.ctmpl", "upstreams.conf.ctmpl", "aliases.list.ctmpl"):
        assert re.fullmatch(template_pattern(template, "name").strip("^$"), name), (template, name)
    assert re.fullmatch(template_pattern("routes.conf.ctmpl", "routeName").strip("^$"), route)
    assert re.fullmatch(r"[0-9]{1,3}([.][0-9]{1,3}){3}", address)


def test_the_catalogue_lists_each_service_only_its_own_history(consul, tmp_path):
    """A service whose name starts with another's (tiny, tiny2) does not show the other's
    releases: the history is read below `history_prefix`, trailing slash included."""
    for service, version in (("tiny", "1.0.0"), ("tiny2", "9.9.9")):
        put(consul, naming.catalogue_key("cat", service), json.dumps({"description": service}))
        put(consul, naming.history_prefix("cat", service) + version, json.dumps({"version": version}))
    out = tmp_path / "catalogue.json"
    subprocess.run([binary("consul-template"), "-once", "-consul-addr", consul, "-log-level", "err",
                    "-template", f"{os.path.join(PROXY, 'catalogue.json.ctmpl')}:{out}"],
                   timeout=60, check=True, capture_output=True, text=True)
    services = {entry["entry"]["description"]: entry for entry in json.loads(out.read_text())["services"]
                if entry["entry"].get("description") in ("tiny", "tiny2")}
    assert [r["version"] for r in services["tiny"]["history"]] == ["1.0.0"]
    assert [r["version"] for r in services["tiny2"]["history"]] == ["9.9.9"]
