"""Least privilege end to end: Consul ACLs (default deny) with a token per actor, gossip
encryption, an authenticated registry, and secrets that never show in plain text; the proxy shows
outside clients only the live colour, keeps the platform's headers to itself, and survives nginx
and its supervisor being killed. One stack owns a platform on two hosts (with credentials the site
plants, as a real site would bring its own) and runs two services; the tests run in order on it."""

from __future__ import annotations

import base64
import glob
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import uuid

import pytest
import requests
import yaml

from e2e_harness import (HOST2_DOCKER, REPO, RequestLoop, consul, container_processes, deployed, docker_json,
                         docker_names, get_json, platform_config, wait_until)

STACK = ENV = "e2e-sec"
PORTS = {"consul": 28400, "serf": 28401, "server": 28402, "registry": 28403, "proxy": 28404,
         "host2_consul": 28410, "host2_serf": 28411, "host2_server": 28412}
CONSUL = f"http://127.0.0.1:{PORTS['consul']}"
CONSUL_HOST2 = f"http://127.0.0.1:{PORTS['host2_consul']}"
PROXY = f"http://127.0.0.1:{PORTS['proxy']}"
REGISTRY = f"127.0.0.1:{PORTS['registry']}"
STABLE = f"{PROXY}/{ENV}/vizconfig/"
BRIDGES = {"local": "172.17.0.1", "host2": "172.31.250.1"}
# What a site plants: its own management token, gossip key and registry credentials, and a
# service secret. None of them may show up in plain text anywhere but where they are used.
PLANTED = {
    "consulManagementToken": str(uuid.uuid4()),
    "consulGossipKey": base64.b64encode(secrets.token_bytes(32)).decode(),
    "registryUsername": "e2e-pusher",
    "registryPassword": "planted-" + secrets.token_urlsafe(24),
}
SERVICE_SECRET = "planted-service-" + secrets.token_hex(16)
MANAGEMENT = PLANTED["consulManagementToken"]
FIGURES: dict = {"probes": {}}
CHANGES = {"create", "update", "replace", "delete", "create-replacement", "delete-replaced"}


# vizother is hostile to the proxy: it answers with the platform's headers of its own, and says
# which of them its requests carried.
HOSTILE_EDITS = (
    ('        data = (json.dumps(body) + "\\n").encode()\n',
     '        if isinstance(body, dict):\n'
     '            body = {**body, "received": {k: v for k, v in self.headers.items()\n'
     '                                         if k.lower().startswith("x-bluegreen-")}}\n'
     '        data = (json.dumps(body) + "\\n").encode()\n'),
    ('        self.send_header("X-Service-Colour", IDENTITY["colour"])\n        self.end_headers()\n',
     '        self.send_header("X-Service-Colour", IDENTITY["colour"])\n'
     '        for name in ("X-Bluegreen-Colour", "X-Bluegreen-Route", "X-Bluegreen-Preview"):\n'
     '            self.send_header(name, "forged")\n'
     '        self.end_headers()\n'),
)


def make_hostile(server_py: str) -> None:
    with open(server_py, encoding="utf-8") as handle:
        code = handle.read()
    for old, new in HOSTILE_EDITS:
        assert code.count(old) == 1, f"{server_py} changed: cannot find {old!r}"
        code = code.replace(old, new)
    with open(server_py, "w", encoding="utf-8") as handle:
        handle.write(code)


@pytest.fixture(scope="module")
def other_repo():
    """A second service (vizother): a copy of the example with its own name, route and config,
    hostile to the proxy (HOSTILE_EDITS)."""
    directory = tempfile.mkdtemp(prefix="bluegreen-vizother-")
    shutil.copytree(os.path.join(REPO, "services", "vizconfig"), directory, dirs_exist_ok=True)
    make_hostile(os.path.join(directory, "app", "server.py"))
    path = os.path.join(directory, "service.yaml")
    with open(path) as handle:
        manifest = yaml.safe_load(handle)
    manifest.update(name="vizother", route="vizother", config={"page_size": "7"})
    manifest.pop("acceptance", None)
    with open(path, "w") as handle:
        yaml.safe_dump(manifest, handle)
    yield path
    shutil.rmtree(directory, ignore_errors=True)


def services(other: str, **vizconfig) -> dict:
    return {
        "vizconfig": {"manifest": "services/vizconfig/service.yaml", "hosts": ["local", "host2"],
                      "live": "blue", "blue": {"version": "1.0.0"}, "gateTimeout": 60, **vizconfig},
        "vizother": {"manifest": other, "hosts": ["local", "host2"], "live": "blue",
                     "blue": {"version": "1.0.0"}},
    }


@pytest.fixture(scope="module")
def deployment(other_repo):
    config = platform_config(PORTS, ENV, second_host=True)
    config["bluegreen:services"] = services(other_repo)
    planted = {f"bluegreen:platformSecrets.{key}": value for key, value in PLANTED.items()}
    planted["bluegreen:secrets.vizconfig.PLANTED_VALUE"] = SERVICE_SECRET
    with deployed(STACK, config, FIGURES, "security", secrets=planted) as deployment:
        yield deployment


def test_a_deploys_with_the_sites_credentials(deployment):
    start = time.monotonic()
    outputs = deployment.up()
    FIGURES["first_deploy_s"] = round(time.monotonic() - start, 1)
    body, _ = wait_until(lambda: get_json(STABLE), 10, what="vizconfig served")
    assert (body["version"], body["colour"]) == ("1.0.0", "blue")
    # The services read their config with their own tokens.
    assert body["config"]["page_size"] == "50"
    other, _ = wait_until(lambda: get_json(f"{PROXY}/{ENV}/vizother/"), 10, what="vizother served")
    assert other["config"] == {"page_size": "7"}
    assert outputs["credentials"]["registryUsername"] == PLANTED["registryUsername"]
    assert outputs["credentials"]["registryPassword"] == PLANTED["registryPassword"]
    # The planted management token is Consul's management token.
    me = consul(MANAGEMENT).get(f"{CONSUL}/v1/acl/token/self", timeout=3).json()
    assert [p["Name"] for p in me["Policies"]] == ["global-management"]


# -- from inside a real service container ----------------------------------------------------------

PROBE = r"""
import json, os, sys, urllib.error, urllib.request
base = os.environ["CONSUL_HTTP_ADDR"].rstrip("/")
answers = []
for method, path, body, with_token in json.loads(sys.argv[1]):
    path = path.replace("{prefix}", os.environ["SERVICE_CONFIG_PREFIX"])
    token = open(os.environ["CONSUL_HTTP_TOKEN_FILE"]).read().strip()
    headers = {"X-Consul-Token": token} if with_token else {}
    request = urllib.request.Request(base + path, method=method, headers=headers,
                                     data=None if body is None else body.encode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            answers.append([response.status, response.read().decode()[:300]])
    except urllib.error.HTTPError as error:
        answers.append([error.code, error.read().decode()[:300]])
print(json.dumps(answers))
"""


def probe(container: str, requests_: list[tuple], host: str | None = None) -> list[tuple[int, str]]:
    """Runs HTTP requests against the Consul agent from inside `container`, with what the platform
    gave it (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN_FILE, SERVICE_CONFIG_PREFIX)."""
    command = ["docker", *(["-H", host] if host else []), "exec", container, "python3", "-c", PROBE,
               json.dumps(requests_)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [tuple(answer) for answer in json.loads(result.stdout)]


OWN = [
    ("own config (recursive)", "GET", "/v1/kv/{prefix}?recurse=true", None, 200),
    ("own config key", "GET", "/v1/kv/{prefix}page_size?raw", None, 200),
    ("its own alias (its streams follow flips)", "GET", f"/v1/kv/bluegreen/aliases/{ENV}/vizconfig?raw",
     None, 200),
]
FORBIDDEN = [
    ("another service's config", "GET", f"/v1/kv/bluegreen/config/{ENV}/vizother/?recurse=true", None),
    ("another service's config key", "GET", f"/v1/kv/bluegreen/config/{ENV}/vizother/page_size", None),
    ("its own service in another environment", "GET",
     "/v1/kv/bluegreen/config/production/vizconfig/?recurse=true", None),
    ("write its own config", "PUT", "/v1/kv/{prefix}page_size", "1"),
    ("read another service's alias", "GET", f"/v1/kv/bluegreen/aliases/{ENV}/vizother", None),
    ("flip the alias", "PUT", f"/v1/kv/bluegreen/aliases/{ENV}/vizconfig", "green"),
    ("delete the alias", "DELETE", f"/v1/kv/bluegreen/aliases/{ENV}/vizconfig", None),
    ("write another environment's alias", "PUT", "/v1/kv/bluegreen/aliases/production/vizconfig",
     "green"),
    ("KV root (recursive)", "GET", "/v1/kv/?recurse=true", None),
    ("KV root (keys)", "GET", "/v1/kv/?keys=true", None),
    # Registrations live on each host's agent: these are the ones on the container's own host.
    ("deregister another service", "PUT",
     f"/v1/agent/service/deregister/{ENV}-vizother-blue-{{host}}-0", None),
    ("deregister itself", "PUT", f"/v1/agent/service/deregister/{ENV}-vizconfig-blue-{{host}}-0", None),
    ("register a service", "PUT", "/v1/agent/service/register", '{"Name": "intruder", "Port": 1}'),
    ("create a token", "PUT", "/v1/acl/token", '{"Policies": [{"Name": "global-management"}]}'),
]
WITHOUT_TOKEN = [
    ("own config, no token", "GET", "/v1/kv/{prefix}?recurse=true", None),
    ("flip the alias, no token", "PUT", f"/v1/kv/bluegreen/aliases/{ENV}/vizconfig", "green"),
    ("deregister another service, no token", "PUT",
     f"/v1/agent/service/deregister/{ENV}-vizother-blue-{{host}}-0", None),
    ("KV root, no token", "GET", "/v1/kv/?recurse=true", None),
]


@pytest.mark.parametrize("host_name,host", [("local", None), ("host2", HOST2_DOCKER)])
def test_b_a_service_reads_its_own_config_and_nothing_else(deployment, host_name, host):
    container = f"bluegreen-{ENV}-vizconfig-blue-{host_name}-0"
    asked = ([(m, p, b, True) for _, m, p, b, _ in OWN] + [(m, p, b, True) for _, m, p, b in FORBIDDEN]
             + [(m, p, b, False) for _, m, p, b in WITHOUT_TOKEN]
             + [("GET", "/v1/agent/services", None, True)])
    answers = probe(container, [(m, p.replace("{host}", host_name), b, t) for m, p, b, t in asked],
                    host)
    names = [n for n, *_ in OWN] + [n for n, *_ in FORBIDDEN] + [n for n, *_ in WITHOUT_TOKEN]
    FIGURES["probes"][container] = {name: status for name, (status, _) in zip(names, answers)}
    own, rest = answers[:len(OWN)], answers[len(OWN):-1]
    assert [status for status, _ in own] == [200] * len(OWN), own
    assert "page_size" in own[0][1] and own[1][1] == "50" and own[2][1] == "blue"
    assert {name: status for name, (status, _) in zip(names[len(OWN):], rest)} == \
        {name: 403 for name in names[len(OWN):]}, rest
    # Listings are filtered rather than refused: the service sees no registration at all.
    assert answers[-1] == (200, "{}"), answers[-1]
    # Nothing the service tried changed anything.
    deployer = consul(deployment.deployer_token())
    assert deployer.get(f"{CONSUL}/v1/kv/bluegreen/aliases/{ENV}/vizconfig?raw", timeout=3).text == "blue"
    assert deployer.get(f"{CONSUL}/v1/kv/bluegreen/config/{ENV}/vizconfig/page_size?raw",
                        timeout=3).text == "50"
    agent = CONSUL if host_name == "local" else CONSUL_HOST2
    registered = deployer.get(f"{agent}/v1/agent/services", timeout=3).json()
    assert {f"{ENV}-vizconfig-blue-{host_name}-0", f"{ENV}-vizother-blue-{host_name}-0"} <= set(registered)


def test_c_the_registry_refuses_anonymous_pulls_and_pushes(deployment):
    assert requests.get(f"http://{REGISTRY}/v2/_catalog", timeout=3).status_code == 401
    assert requests.get(f"http://{REGISTRY}/v2/_catalog", timeout=3,
                        auth=(PLANTED["registryUsername"], "wrong")).status_code == 401
    catalog = requests.get(f"http://{REGISTRY}/v2/_catalog", timeout=3,
                           auth=(PLANTED["registryUsername"], PLANTED["registryPassword"]))
    assert catalog.status_code == 200 and "vizconfig" in catalog.json()["repositories"]
    with tempfile.TemporaryDirectory(prefix="bluegreen-docker-config-") as anonymous:
        # host2 has the service only by digest: a pull by tag must ask the registry.
        pull = subprocess.run(["docker", "--config", anonymous, "-H", HOST2_DOCKER, "pull",
                               f"{REGISTRY}/vizconfig:1.0.0"], capture_output=True, text=True)
        assert pull.returncode != 0
        assert re.search(r"no basic auth credentials|unauthorized", pull.stderr), pull.stderr
        tagged = f"{REGISTRY}/e2e/anonymous:1"
        subprocess.run(["docker", "tag", "bluegreen/base:bookworm", tagged], check=True)
        try:
            push = subprocess.run(["docker", "--config", anonymous, "push", tagged],
                                  capture_output=True, text=True)
        finally:
            subprocess.run(["docker", "rmi", tagged], capture_output=True)
        assert push.returncode != 0
        assert re.search(r"no basic auth credentials|unauthorized", push.stdout + push.stderr), \
            push.stdout + push.stderr
    FIGURES["registry"] = {"anonymous pull": pull.stderr.strip()[-200:],
                           "anonymous push": (push.stdout + push.stderr).strip()[-200:]}


def test_d_every_agent_denies_by_default_and_gossips_encrypted(deployment):
    for agent in (CONSUL, CONSUL_HOST2):
        assert requests.get(f"{agent}/v1/agent/self", timeout=3).status_code == 403
        me = consul(MANAGEMENT).get(f"{agent}/v1/agent/self", timeout=3).json()
        assert me["Stats"]["serf_lan"]["encrypted"] == "true", agent
        assert me["DebugConfig"]["ACLsEnabled"] is True
        assert me["DebugConfig"]["ACLResolverSettings"]["ACLDefaultPolicy"] == "deny"
        # Anonymous listings show nothing.
        assert requests.get(f"{agent}/v1/catalog/services", timeout=3).json() == {}
    members = consul(MANAGEMENT).get(f"{CONSUL}/v1/agent/members", timeout=3).json()
    assert sorted(m["Name"] for m in members) == ["host2", "local"]


def listening_sockets() -> list[dict]:
    """Every listening TCP/UDP socket in the host's network namespace with its process."""
    out = subprocess.run(["ss", "-H", "-l", "-n", "-t", "-u", "-p"], capture_output=True, text=True,
                         check=True).stdout
    sockets = []
    for line in out.splitlines():
        fields = line.split()
        pids = [int(p) for p in re.findall(r"pid=(\d+)", line)]
        sockets.append({"proto": fields[0], "local": fields[4], "pids": pids,
                        "process": (re.findall(r'\("([^"]+)"', line) or [""])[0]})
    return sockets


def container_pids(name: str, host: str | None = None) -> set[int]:
    out = subprocess.run(["docker", *(["-H", host] if host else []), "top", name, "-eo", "pid"],
                         capture_output=True, text=True, check=True).stdout
    return {int(p) for p in out.split()[1:]}


def test_e_platform_apis_listen_only_where_they_must(deployment):
    platform = {
        ("local", "consul"): container_pids(f"bluegreen-{STACK}-consul-local"),
        ("host2", "consul"): container_pids(f"bluegreen-{STACK}-consul-host2", HOST2_DOCKER),
        ("local", "registrator"): container_pids(f"bluegreen-{STACK}-registrator-local"),
        ("host2", "registrator"): container_pids(f"bluegreen-{STACK}-registrator-host2", HOST2_DOCKER),
        ("local", "proxy"): container_pids(f"bluegreen-{STACK}-proxy"),
        ("local", "watchdog-1"): container_pids(f"bluegreen-{STACK}-watchdog-1"),
        ("local", "watchdog-2"): container_pids(f"bluegreen-{STACK}-watchdog-2"),
    }
    found: dict[str, list[str]] = {}
    for socket in listening_sockets():
        owner = next((key for key, pids in platform.items() if set(socket["pids"]) & pids), None)
        if owner is None and socket["process"] == "docker-proxy" and \
                socket["local"].endswith(f":{PORTS['registry']}"):
            owner = ("local", "registry (published)")
        if owner is not None:
            found.setdefault(f"{owner[0]} {owner[1]}", []).append(f"{socket['proto']} {socket['local']}")
    FIGURES["listening"] = {k: sorted(v) for k, v in sorted(found.items())}
    lo = "127.0.0.1"
    assert sorted(found["local consul"]) == sorted([
        f"tcp {lo}:{PORTS['consul']}", f"tcp {BRIDGES['local']}:{PORTS['consul']}",
        f"tcp {lo}:{PORTS['serf']}", f"udp {lo}:{PORTS['serf']}", f"tcp {lo}:{PORTS['server']}"])
    assert sorted(found["host2 consul"]) == sorted([
        f"tcp {lo}:{PORTS['host2_consul']}", f"tcp {BRIDGES['host2']}:{PORTS['host2_consul']}",
        f"tcp {lo}:{PORTS['host2_serf']}", f"udp {lo}:{PORTS['host2_serf']}"])
    # The proxy also listens on the bridge, where containers reach the services they call.
    assert set(found["local proxy"]) == {f"tcp {lo}:{PORTS['proxy']}",
                                         f"tcp {BRIDGES['local']}:{PORTS['proxy']}"}
    assert found["local registry (published)"] == [f"tcp {lo}:{PORTS['registry']}"]
    assert "local registrator" not in found and "host2 registrator" not in found
    # Each watchdog: one loopback port, where its agent's check sees it alive (model.election).
    for number in (1, 2):
        [listening] = found[f"local watchdog-{number}"]
        assert listening.startswith(f"tcp {lo}:"), listening


def platform_containers() -> list[tuple[str | None, str]]:
    """(engine, name) of every platform container of this stack on both hosts."""
    return [(host, name) for host in (None, HOST2_DOCKER)
            for name in docker_names("container", f"bluegreen-{STACK}-", host=host)
            if not re.search(r"-(vizconfig|vizother)-", name)]


def test_f_secrets_never_appear_in_plain_text(deployment):
    generated = deployment.secret_values()
    service_tokens = {k: v for k, v in generated.items() if k.endswith("vizconfig-token")
                      or k.endswith("vizother-token")}
    assert set(generated) >= {f"{ENV}-vizconfig-token", f"{ENV}-vizother-token",
                              f"{STACK}-platform-consul-deployer-{ENV}-token"}
    planted = {**{f"planted {k}": v for k, v in PLANTED.items() if k != "registryUsername"},
               "planted service secret": SERVICE_SECRET}
    every = {**planted, **generated}
    assert MANAGEMENT in generated.values() or MANAGEMENT in planted.values()
    places: dict[str, str] = {}
    for path in glob.glob(os.path.join(REPO, ".state", "**", f"*{STACK}*"), recursive=True):
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as handle:
                places[f"state {os.path.relpath(path, REPO)}"] = handle.read()
    with open(deployment.path, encoding="utf-8") as handle:
        places["stack config file"] = handle.read()
    places["stack export"] = subprocess.run(["pulumi", "stack", "export", "--stack", STACK],
                                            cwd=REPO, capture_output=True, text=True).stdout
    places["stack outputs"] = subprocess.run(["pulumi", "stack", "output", "--json", "--stack", STACK],
                                             cwd=REPO, capture_output=True, text=True).stdout
    places["preview --diff"] = deployment.preview(diff=True).stdout
    with open(deployment.log, encoding="utf-8") as handle:
        places["up and preview logs"] = handle.read()
    places["catalogue"] = requests.get(f"{PROXY}/catalogue.json", timeout=3).text
    kv = consul(MANAGEMENT).get(f"{CONSUL}/v1/kv/?recurse=true", timeout=3).json()
    places["Consul KV"] = "\n".join(base64.b64decode(e["Value"] or "").decode(errors="replace")
                                    for e in kv)
    for host, name in platform_containers():
        engine = ["-H", host] if host else []
        places[f"docker inspect {name}"] = subprocess.run(["docker", *engine, "inspect", name],
                                                          capture_output=True, text=True).stdout
        logs = subprocess.run(["docker", *engine, "logs", name], capture_output=True, text=True)
        places[f"docker logs {name}"] = logs.stdout + logs.stderr
    assert {"docker inspect bluegreen-e2e-sec-consul-local", "docker inspect bluegreen-e2e-sec-proxy",
            "docker inspect bluegreen-e2e-sec-registry",
            "docker inspect bluegreen-e2e-sec-registrator-host2"} <= set(places)
    leaks = [f"{secret} in {place}" for secret, value in every.items()
             for place, text in places.items() if value in text]
    FIGURES["searched"] = sorted(places)
    assert leaks == []
    # A service's own token is a file in its own containers, and only there.
    for container in docker_names("container", f"bluegreen-{ENV}-vizother-blue"):
        inspected = subprocess.run(["docker", "inspect", container], capture_output=True, text=True).stdout
        assert not any(token in inspected for token in service_tokens.values())
        assert SERVICE_SECRET not in inspected
        inside = subprocess.run(["docker", "exec", container, "cat", "/etc/bluegreen-consul-token"],
                                capture_output=True, text=True).stdout.strip()
        assert inside == service_tokens[f"{ENV}-vizother-token"]


def test_g_a_rerun_and_a_server_restart_change_nothing(deployment):
    # The second up turns the first deploy's builds into releases (never rebuilt); from then on
    # a re-run only reads (the StackReference to this stack's last outputs is a read).
    deployment.up()
    assert not CHANGES & set(deployment.preview().change_summary)
    server = f"bluegreen-{STACK}-consul-local"
    subprocess.run(["docker", "restart", server], check=True, capture_output=True)
    wait_until(lambda: requests.get(f"{CONSUL}/v1/status/leader", timeout=2).json(), 60,
               what="a leader after the restart")
    # The same tokens work (nothing is bootstrapped twice), and anonymous is still denied.
    container = f"bluegreen-{ENV}-vizconfig-blue-local-0"
    wait_until(lambda: probe(container, [("GET", "/v1/kv/{prefix}?recurse=true", None, True)])[0][0]
               == 200, 30, what="the service's own config after the restart")
    assert requests.get(f"{CONSUL}/v1/kv/bluegreen/aliases/{ENV}/vizconfig", timeout=3).status_code == 403
    start = time.monotonic()
    deployment.up()
    FIGURES["rerun_up_s"] = round(time.monotonic() - start, 1)
    changes = deployment.stack.history(page_size=1)[0].resource_changes
    assert not CHANGES & set(changes), changes
    # What every `pulumi up` of ./bg and the delivery commands adds: the policy pack (its
    # mandatory rules pass on this stack), on the same no-change update.
    start = time.monotonic()
    deployment.stack.up(color="never", policy_packs=[os.path.join(REPO, "policies")])
    FIGURES["rerun_up_with_policy_pack_s"] = round(time.monotonic() - start, 1)


def test_h_a_flip_through_pulumi_up_has_no_failed_requests(deployment, other_repo):
    deployment.update_config(lambda c: c.__setitem__(
        "bluegreen:services", services(other_repo, live="green", green={"version": "2.0.0"})))
    with RequestLoop(STABLE) as loop:
        start = time.monotonic()
        deployment.up()
        FIGURES["flip_up_s"] = round(time.monotonic() - start, 1)
        wait_until(lambda: (get_json(STABLE)["version"], get_json(STABLE)["colour"]) == ("2.0.0", "green"),
                   10, what="2.0.0 from green")
        time.sleep(1)
    FIGURES["flip_requests"] = len(loop.results)
    FIGURES["flip_failed_requests"] = len(loop.failures)
    assert loop.failures == [], loop.failures[:5]
    assert len(loop.results) > 20
    # Green reads its config with the same service token.
    assert get_json(STABLE)["config"]["page_size"] == "50"


# -- the proxy: what outside clients reach, and how it survives ------------------------------------

PROXY_CONTAINER = f"bluegreen-{STACK}-proxy"
INSIDE = f"http://{BRIDGES['local']}:{PORTS['proxy']}"   # the bridge listener: callers inside
PREVIEW_HEADER = "X-Bluegreen-Preview"


def from_address(source: str, path: str, headers: dict | None = None) -> tuple[int, str, str]:
    """(status, X-Bluegreen-Colour, X-Service-Colour) of a GET on the public listener from `source`
    (a loopback address other than the listener's: a client from elsewhere, as the proxy sees it)."""
    connection = http.client.HTTPConnection("127.0.0.1", PORTS["proxy"], timeout=5,
                                            source_address=(source, 0))
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return (response.status, response.getheader("X-Bluegreen-Colour", ""),
                response.getheader("X-Service-Colour", ""))
    finally:
        connection.close()


def colours(url: str, headers: dict | None = None) -> tuple[int, str, str]:
    response = requests.get(url, timeout=5, headers={"Connection": "close", **(headers or {})})
    return (response.status_code, response.headers.get("X-Bluegreen-Colour", ""),
            response.headers.get("X-Service-Colour", ""))


def test_i_outside_clients_reach_only_the_live_colour_by_any_header_or_path(deployment):
    stable, preview = f"/{ENV}/vizconfig/", f"/preview/{ENV}/vizconfig/"
    live, offline = (200, "green", "green"), (200, "blue", "blue")   # after test_h's flip
    assert colours(f"{PROXY}{stable}", {PREVIEW_HEADER: ENV}) == live
    assert from_address("127.0.0.2", stable, {PREVIEW_HEADER: ENV}) == live
    assert from_address("127.0.0.2", preview)[0] == 404
    assert from_address("127.0.0.2", preview, {PREVIEW_HEADER: ENV})[0] == 404
    # The deploying machine (the proxy's own host) proves flips on the preview URI; callers inside
    # the platform still reach the offline colour with the header.
    assert colours(f"{PROXY}{preview}") == offline
    assert colours(f"{INSIDE}{stable}", {PREVIEW_HEADER: ENV}) == offline
    assert colours(f"{INSIDE}{stable}") == live


def test_j_the_platforms_headers_pass_neither_from_clients_nor_from_upstreams(deployment):
    sent = {"X-Bluegreen-Colour": "green", "X-Bluegreen-Route": "forged", PREVIEW_HEADER: ENV}
    for base in (PROXY, INSIDE):
        response = requests.get(f"{base}/{ENV}/vizother/", timeout=5, headers=sent)
        assert response.status_code == 200, response.text[:300]
        # One value each, the proxy's: vizother's own (HOSTILE_EDITS) are dropped.
        assert response.headers["X-Bluegreen-Colour"] == "blue", response.headers
        assert response.headers["X-Bluegreen-Route"] == f"{ENV}/vizother", response.headers
        assert PREVIEW_HEADER not in response.headers, response.headers
        # From outside nothing reaches vizother; from inside only the preview header, which
        # callers pass on (green calls green).
        expected = {} if base == PROXY else {PREVIEW_HEADER: ENV}
        assert response.json()["received"] == expected, (base, response.json()["received"])


def seconds_until_served(url: str, since: float, bound_s: float = 10.0) -> float:
    """From `since` until `url` answers 200 (fresh connections every 10 ms, at most `bound_s`)."""
    while time.monotonic() - since < bound_s:
        try:
            if requests.get(url, timeout=1, headers={"Connection": "close"}).status_code == 200:
                return time.monotonic() - since
        except requests.RequestException:
            pass
        time.sleep(0.01)
    raise AssertionError(f"{url} did not answer 200 within {bound_s}s")


def container_state() -> dict:
    return docker_json("inspect", PROXY_CONTAINER)[0]["State"]


def test_k_nginx_killed_serves_again_within_a_second(deployment):
    times = []
    with RequestLoop(STABLE, rate=20, max_requests=600, max_seconds=60) as loop:
        for _ in range(5):
            killed = container_processes(PROXY_CONTAINER, "nginx")
            assert len(killed) >= 2, killed   # a master and its workers
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            times.append(seconds_until_served(STABLE, time.monotonic()))
            assert not set(container_processes(PROXY_CONTAINER, "nginx")) & set(killed)
            time.sleep(2)   # runsv waits a second before restarting what ran for less than one
    FIGURES["nginx_killed_to_serving_s"] = {"median": round(statistics.median(times), 3),
                                            "max": round(max(times), 3), "runs": len(times)}
    FIGURES["nginx_killed_requests"] = {"sent": len(loop.results), "failed": len(loop.failures)}
    assert max(times) < 1.0, times
    assert container_state()["Health"]["Status"] == "healthy"


def test_l_the_health_check_reports_what_a_client_sees(deployment):
    def health() -> str:
        return container_state()["Health"]["Status"]
    sv = ["docker", "exec", PROXY_CONTAINER, "sv", "-w", "5"]
    subprocess.run([*sv, "down", "/etc/bluegreen/sv/nginx"], check=True, capture_output=True)
    try:
        _, waited = wait_until(lambda: health() == "unhealthy", 10, what="the proxy reported unhealthy")
        FIGURES["nginx_down_to_unhealthy_s"] = round(waited, 2)
    finally:
        subprocess.run([*sv, "up", "/etc/bluegreen/sv/nginx"], check=True, capture_output=True)
    wait_until(lambda: health() == "healthy", 10, what="the proxy healthy again")


def test_m_the_supervisor_killed_ends_the_container_and_docker_restarts_it(deployment):
    restarts = docker_json("inspect", PROXY_CONTAINER)[0]["RestartCount"]
    [supervisor] = container_processes(PROXY_CONTAINER, "runsvdir")
    killed = time.monotonic()
    os.kill(supervisor, signal.SIGKILL)
    wait_until(lambda: docker_json("inspect", PROXY_CONTAINER)[0]["RestartCount"] == restarts + 1
               and container_state()["Running"], 10, interval_s=0.02, what="the proxy restarted by Docker")
    FIGURES["supervisor_killed_to_serving_s"] = round(seconds_until_served(STABLE, killed), 3)


def test_n_docker_stop_returns_within_two_seconds(deployment):
    times = []
    for _ in range(3):
        start = time.monotonic()
        subprocess.run(["docker", "stop", PROXY_CONTAINER], check=True, capture_output=True)
        times.append(time.monotonic() - start)
        subprocess.run(["docker", "start", PROXY_CONTAINER], check=True, capture_output=True)
        seconds_until_served(STABLE, time.monotonic())
    FIGURES["docker_stop_s"] = {"median": round(statistics.median(times), 2),
                                "max": round(max(times), 2), "runs": len(times)}
    assert max(times) < 2.0, times


# -- service containers: what an image may claim, what a container may do ----------------------

def test_o_an_image_labelled_as_another_instance_moves_no_registration(deployment):
    """An image whose Dockerfile says LABEL bluegreen.instance=<vizconfig's live instance>, run
    as the isolation probe runs it and by hand: the host's registrator leaves that instance's
    registration where the platform put it."""
    victim = f"{ENV}-vizconfig-green-local-0"        # live since test_h
    session = consul(MANAGEMENT)

    def registered_port() -> int:
        return session.get(f"{CONSUL}/v1/agent/service/{victim}", timeout=3).json()["Port"]

    before = registered_port()
    image, tag = docker_json("inspect", f"bluegreen-{victim}")[0]["Config"]["Image"], f"bluegreen-{STACK}-impostor"
    dockerfile = f"FROM {image}\nLABEL bluegreen.instance={victim} bluegreen.role=service\n"
    subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile, text=True,
                   check=True, capture_output=True, timeout=120)
    runs = {f"bluegreen-probe-vizother-{uuid.uuid4().hex[:8]}-vizother": ["--label", "bluegreen.role=probe"],
            f"bluegreen-{STACK}-impostor": []}
    try:
        for name, labels in runs.items():
            subprocess.run(["docker", "run", "-d", "--name", name, *labels, "-p", "127.0.0.1::8000",
                            tag], check=True, capture_output=True, timeout=60)
            deadline = time.monotonic() + 5   # the registrator acts within ms of the start event
            while time.monotonic() < deadline:
                assert registered_port() == before, f"{name} moved {victim}'s registration"
                time.sleep(0.2)
    finally:
        subprocess.run(["docker", "rm", "-f", *runs], capture_output=True, timeout=60)
        subprocess.run(["docker", "rmi", tag], capture_output=True, timeout=60)
    assert get_json(STABLE)["colour"] == "green"


def test_o_a_restarted_platform_container_is_registered_again_at_its_new_port(deployment):
    """What the registrator is for: the offline colour's container restarted outside Pulumi gets
    another host port, and its registration follows it (Docker's SDK sees the start event)."""
    instance = f"{ENV}-vizconfig-blue-local-0"
    session = consul(MANAGEMENT)

    def ports() -> tuple[int, int]:
        [container] = docker_json("inspect", f"bluegreen-{instance}")
        published = int(next(iter(container["NetworkSettings"]["Ports"].values()))[0]["HostPort"])
        return published, session.get(f"{CONSUL}/v1/agent/service/{instance}", timeout=3).json()["Port"]

    def followed() -> int | None:
        published, registered = ports()
        return published if published == registered else None

    before, _ = ports()
    subprocess.run(["docker", "restart", "-t", "1", f"bluegreen-{instance}"], check=True,
                   capture_output=True, timeout=60)
    published, waited = wait_until(followed, 10, what=f"{instance} registered at its new port")
    assert published != before, "Docker gave the restarted container its old port: nothing proven"
    FIGURES["registrator_follows_restart_s"] = round(waited, 2)


def test_p_service_containers_keep_no_capability_and_gain_no_privilege(deployment):
    for colour in ("blue", "green"):
        for host in (None, HOST2_DOCKER):
            command = ["docker", *(["-H", host] if host else []), "inspect",
                       f"bluegreen-{ENV}-vizconfig-{colour}-{'host2' if host else 'local'}-0"]
            [container] = json.loads(subprocess.run(command, capture_output=True, text=True,
                                                    check=True).stdout)
            assert container["HostConfig"]["CapDrop"] == ["ALL"], container["Name"]
            assert not container["HostConfig"]["CapAdd"], container["Name"]
            assert "no-new-privileges:true" in container["HostConfig"]["SecurityOpt"], container["Name"]
            assert container["State"]["Running"] and container["RestartCount"] == 0, container["Name"]


def test_z_destroy_leaves_nothing(deployment):
    deployment.destroy()
    for host in (None, HOST2_DOCKER):
        for kind in ("container", "network", "volume"):
            assert docker_names(kind, f"bluegreen-{STACK}-", host=host) == [], (host, kind)
